//! Several daemons behind one name: two `jitca serve` of one CA (same CA key, host key and
//! config, each its own port) keeping everything in one PostgreSQL database.
//!
//! The shared throwaway cluster of `jitca-pgtest` gives each test a fresh database; the test
//! that stops the database has a cluster of its own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Daemon A on a fresh database of the shared cluster with the standard config, and daemon B
/// of the same CA (copies of A's keys, the same config) on the same database.
fn two_daemons(team: &Team, pending_ttl: &str) -> (Ca, Ca) {
    let url = jitca_pgtest::shared().fresh_database();
    let a = Ca::start(&team.config_with_store(pending_ttl, &url));
    let b = Ca::start_sharing(&a);
    assert_ne!(a.port, b.port);
    (a, b)
}

/// What `audit verify` printed: the record count and the head.
fn verified(out: &Out) -> (u64, String) {
    out.ok();
    let line = out.stdout.trim();
    let rest = line
        .strip_prefix("audit log intact: ")
        .unwrap_or_else(|| panic!("not an intact chain: {out:?}"));
    let (count, head) = rest
        .split_once(" records, head ")
        .unwrap_or_else(|| panic!("no count and head in {out:?}"));
    (count.parse().unwrap(), head.to_string())
}

/// The serial `ssh-keygen -L` reads from a certificate.
fn serial_of(cert: &Path) -> u64 {
    let listing = keygen_l(cert);
    listing
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial: "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no serial in {listing}"))
}

/// The request id in a certificate's key id (`jitca:ID:USER:approvers=...`).
fn request_of(cert: &Path) -> String {
    let listing = keygen_l(cert);
    listing
        .lines()
        .find_map(|l| l.trim().strip_prefix("Key ID: \"jitca:"))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no jitca key id in {listing}"))
        .to_string()
}

/// `krl` over the control channel as the host `web1`, as a host's refresh fetches it.
fn fetch_krl(port: u16, team: &Team) -> Vec<u8> {
    let out = ssh_client(&team.web1.key)
        .args(["-p", &port.to_string(), "jitca@127.0.0.1", "krl"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "krl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Waits until `who` sees a pending request with `reason` on `ca`; its id.
fn wait_pending_reason(ca: &Ca, who: &Person, reason: &str) -> String {
    let mut id = None;
    wait_for(&format!("a pending request {reason:?}"), || {
        id = ca
            .list_json(who)
            .into_iter()
            .find(|r| r["state"] == "pending" && r["reason"] == reason)
            .map(|r| r["id"].as_str().unwrap().to_string());
        id.is_some()
    });
    id.unwrap()
}

/// A lab certificate for alice made on `ca` with `reason`: the request id, the certificate's
/// text and its serial.
fn lab_on(ca: &Ca, team: &Team, reason: &str) -> (String, String, u64) {
    let out = ca.request(
        &team.alice,
        &format!("lab1 --as root --for 30m --reason {reason}"),
    );
    out.ok();
    let cert = save_cert(team.dir.path(), reason, &out.stdout);
    (request_of(&cert), out.stdout, serial_of(&cert))
}

/// A request made on daemon A and approved on daemon B: alice, waiting on A, gets her
/// certificate as soon as bob approves on B (A is woken through the database, long before the
/// request would lapse), a real sshd lets her in with it, and `get` on B hands out the same
/// certificate.
#[test]
fn a_request_waiting_on_one_daemon_is_approved_on_the_other() {
    let team = Team::new();
    // A waiter that is never woken looks again only when the request lapses (after 1 min):
    // then it would find the certificate too, but a minute late.
    let (a, b) = two_daemons(&team, "1m");
    let web1 = Sshd::start("web1", &a.ca_pub(), &["root"], "");

    let (id, out, waited) = thread::scope(|s| {
        let waiting = s.spawn(|| {
            let out = a.request(&team.alice, "web1 --as root --for 1h --reason INC-7 via A");
            (out, Instant::now())
        });
        // B sees the request A made.
        let id = wait_pending_reason(&b, &team.bob, "INC-7 via A");
        assert!(!waiting.is_finished(), "the requester stopped waiting");
        let approved = Instant::now();
        let approve = b.ssh(&team.bob, &format!("approve {id}"), None);
        approve.ok();
        assert!(approve.stderr.contains("issued to alice"), "{approve:?}");
        let (out, returned) = waiting.join().unwrap();
        (id, out, returned.duration_since(approved))
    });
    out.ok();
    assert!(
        waited < Duration::from_secs(20),
        "the requester on A got the certificate {waited:?} after B approved"
    );
    assert!(
        out.stderr
            .contains(&format!("request {id} made; waiting for 1 approval")),
        "{out:?}"
    );
    assert!(out.stderr.contains("approved by bob"), "{out:?}");
    assert!(
        out.stdout.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{out:?}"
    );

    let cert = save_cert(team.dir.path(), "alice_ed25519", &out.stdout);
    let login = web1.login("root", &team.alice.key, &cert);
    login.ok();
    assert_eq!(login.stdout.trim(), "jitca-ok-root");

    let again = b.ssh(&team.alice, &format!("get {id}"), None);
    again.ok();
    assert_eq!(
        again.stdout, out.stdout,
        "B hands out the certificate A sent"
    );
    assert_eq!(
        b.show_json(&team.alice, &id)["serial"].as_u64(),
        Some(serial_of(&cert))
    );
}

/// An approver's `watch` on daemon A prints a request made on daemon B, and its issuance
/// when it is approved on B.
#[test]
fn watch_on_one_daemon_shows_requests_made_on_the_other() {
    let team = Team::new();
    let (a, b) = two_daemons(&team, "1h");
    let mut watch = ssh_client(&team.bob.key)
        .args(["-p", &a.port.to_string(), "jitca@127.0.0.1", "watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let started = Arc::new(Mutex::new(String::new()));
    {
        let started = started.clone();
        let mut stderr = watch.stderr.take().unwrap();
        thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                started
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    // Only once the watch is listening is the request made: it arrives as a change.
    wait_for("bob's watch on A to start", || {
        started.lock().unwrap().contains("watching requests")
    });

    let id = id_of(&b.request(
        &team.alice,
        "web1 --as root --for 1h --reason made on B --no-wait",
    ));
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the watch on A printed a line")
    };
    let arrived = next();
    assert!(
        arrived.contains(&format!(
            "pending  {id} alice wants root on web1 for 1h (0/1 approvals)"
        )),
        "{arrived}"
    );
    b.ssh(&team.carol, &format!("approve {id}"), None).ok();
    let issued = next();
    assert!(
        issued.contains(&format!("issued   {id}")) && issued.contains("(1/1 approvals)"),
        "{issued}"
    );
    let _ = watch.kill();
    let _ = watch.wait();
}

/// Requests issued at the same time on both daemons (two threads on each, ten `dev-lab`
/// certificates a thread, no approval) get distinct serials, none 0.
#[test]
fn parallel_requests_on_both_daemons_get_distinct_serials() {
    let team = Team::new();
    let (a, b) = two_daemons(&team, "1h");
    let certs: Vec<(String, String)> = thread::scope(|s| {
        let threads: Vec<_> = [(&a, "A", 1), (&a, "A", 2), (&b, "B", 1), (&b, "B", 2)]
            .into_iter()
            .map(|(ca, name, n)| {
                let team = &team;
                s.spawn(move || {
                    (0..10)
                        .map(|i| {
                            let reason = format!("parallel-{name}{n}-{i}");
                            let out = ca.request(
                                &team.alice,
                                &format!("lab1 --as root --for 30m --reason {reason}"),
                            );
                            out.ok();
                            (reason, out.stdout)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    assert_eq!(certs.len(), 40);
    let serials: Vec<u64> = certs
        .iter()
        .map(|(reason, text)| serial_of(&save_cert(team.dir.path(), reason, text)))
        .collect();
    assert!(!serials.contains(&0), "{serials:?}");
    let distinct: BTreeSet<u64> = serials.iter().copied().collect();
    assert_eq!(distinct.len(), 40, "a serial given twice: {serials:?}");
}

/// One audit chain: `audit verify` (auditor ivy) on A and on B agree. Each verification is
/// itself recorded, so the second one, on the other daemon, counts exactly one record more
/// (the first one's `audit_verified`), and each printed head is the hash of that record in
/// the chain as the other daemon reads it. `audit --json` on the second daemon lists the
/// first one's records byte for byte (then that listing's own `audit_read`). After more
/// activity the head moves on and the daemons still agree.
#[test]
fn audit_verify_on_both_daemons_sees_one_chain() {
    let team = Team::new();
    let (a, b) = two_daemons(&team, "1h");
    lab_on(&a, &team, "audit-on-A");
    lab_on(&b, &team, "audit-on-B");
    let web = id_of(&a.request(
        &team.alice,
        "web1 --as root --for 1h --reason web via A --no-wait",
    ));
    b.ssh(&team.bob, &format!("approve {web}"), None).ok();

    /// `audit verify` on `first`, then on `second`: the two agree on one chain.
    fn agree(first: &Ca, second: &Ca, team: &Team) -> (u64, String) {
        let (n1, h1) = verified(&first.ssh(&team.ivy, "audit verify", None));
        let (n2, h2) = verified(&second.ssh(&team.ivy, "audit verify", None));
        assert_eq!(
            n2,
            n1 + 1,
            "the second daemon counts the first one's audit_verified on top"
        );
        // Reading is recorded too (`audit_read`): the second daemon's listing is the first
        // one's, record for record and byte for byte, and then the first read's own record.
        let from_first = first.ssh(&team.ivy, "audit --json", None);
        let from_second = second.ssh(&team.ivy, "audit --json", None);
        from_first.ok();
        from_second.ok();
        let more = from_second
            .stdout
            .strip_prefix(&from_first.stdout)
            .unwrap_or_else(|| {
                panic!(
                    "the daemons list different chains:\n{}\n---\n{}",
                    from_first.stdout, from_second.stdout
                )
            });
        assert_eq!(more.lines().count(), 1, "{more}");
        assert!(more.contains(r#""event":"audit_read""#), "{more}");
        let records: Vec<serde_json::Value> = from_second
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let at = |seq: u64| {
            records
                .iter()
                .find(|r| r["seq"] == seq)
                .unwrap_or_else(|| panic!("no record {seq}"))
        };
        assert_eq!(at(n1)["hash"], h1.as_str(), "{:#}", at(n1));
        assert_eq!(at(n2)["hash"], h2.as_str(), "{:#}", at(n2));
        assert_eq!(at(n2)["event"], "audit_verified");
        assert_eq!(at(n2)["details"]["records"], n1, "{:#}", at(n2));
        assert_eq!(at(n2)["prev"], h1.as_str(), "{:#}", at(n2));
        (n2, h2)
    }

    let (n, head) = agree(&a, &b, &team);
    // More activity on both; then verified the other way round.
    lab_on(&b, &team, "audit-later-B");
    lab_on(&a, &team, "audit-later-A");
    let (later_n, later_head) = agree(&b, &a, &team);
    assert!(later_n > n + 2, "{later_n} after {n}");
    assert_ne!(later_head, head);
}

/// A revocation made on B is in A's `krl` at once (`ssh-keygen -Q` says the certificate is
/// revoked), and `krl` is byte-identical from A and B before and after.
#[test]
fn a_revocation_on_one_daemon_is_in_the_other_daemons_krl() {
    let team = Team::new();
    let (a, b) = two_daemons(&team, "1h");
    let (id, text, _) = lab_on(&a, &team, "to-revoke");
    let cert = save_cert(team.dir.path(), "to-revoke", &text);
    let (_, kept_text, _) = lab_on(&b, &team, "to-keep");
    let kept = save_cert(team.dir.path(), "to-keep", &kept_text);

    let krl = team.dir.path().join("krl-a");
    let before = fetch_krl(a.port, &team);
    assert_eq!(before, fetch_krl(b.port, &team), "krl differs before");
    std::fs::write(&krl, &before).unwrap();
    assert!(!revoked_by(&krl, &cert));

    b.ssh(
        &team.ivy,
        &format!("revoke {id} --reason key left on a shared laptop"),
        None,
    )
    .ok();
    let after = fetch_krl(a.port, &team);
    std::fs::write(&krl, &after).unwrap();
    assert!(revoked_by(&krl, &cert), "A's krl misses B's revocation");
    assert!(!revoked_by(&krl, &kept));
    assert_eq!(after, fetch_krl(b.port, &team), "krl differs after");
    assert_eq!(a.show_json(&team.alice, &id)["state"], "revoked");
}

/// SIGKILL of daemon A while a client issues certificates on it one after another loses no
/// certificate the client received: each is issued, with its serial, as seen from B, with
/// its issuance in the audit chain, and B keeps serving with the chain intact.
#[test]
fn killing_one_daemon_loses_no_certificate_it_handed_out() {
    let team = Team::new();
    let (mut a, b) = two_daemons(&team, "1h");
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let port_a = a.port;
    let last = thread::scope(|s| {
        let loop_on_a = s.spawn(|| {
            for i in 0..1000 {
                let out = request_at(
                    port_a,
                    &team.alice,
                    &format!("lab1 --as root --for 30m --reason loop-{i}"),
                );
                // A certificate that arrived counts, even if the connection broke after it.
                if out.stdout.starts_with("ssh-ed25519-cert-v01@openssh.com ") {
                    received.lock().unwrap().push(out.stdout.clone());
                }
                if out.status != 0 {
                    return out;
                }
            }
            panic!("1000 certificates and A still serving");
        });
        wait_for("a few certificates from A", || {
            received.lock().unwrap().len() >= 5
        });
        a.stop_hard();
        loop_on_a.join().unwrap()
    });
    assert_eq!(last.status, 255, "after the kill: {last:?}");
    let received = received.lock().unwrap().clone();
    assert!(received.len() >= 5);

    for (i, text) in received.iter().enumerate() {
        let cert = save_cert(team.dir.path(), &format!("loop-{i}"), text);
        let (id, serial) = (request_of(&cert), serial_of(&cert));
        let shown = b.show_json(&team.alice, &id);
        assert_eq!(shown["state"], "issued", "{shown:#}");
        assert_eq!(shown["serial"].as_u64(), Some(serial), "{shown:#}");
        let records = b.audit_json(&team.ivy, &format!("--serial {serial}"));
        assert!(
            records
                .iter()
                .any(|r| r["event"] == "issued" && r["request"] == id.as_str()),
            "no issuance of {serial} in B's audit: {records:#?}"
        );
    }
    lab_on(&b, &team, "after-the-kill");
    verified(&b.ssh(&team.ivy, "audit verify", None));
}

/// With the database stopped, a request on A is refused within `limits.store_timeout`
/// (3 s here) with one refusal line and exit 1, and nothing is issued; once the database is
/// back, both daemons serve again without a restart.
#[test]
fn a_stopped_database_refuses_at_once_and_the_daemons_recover() {
    let team = Team::new();
    let pg = jitca_pgtest::Cluster::start();
    let url = pg.fresh_database();
    let a = Ca::start(&with_store_timeout(
        &team.config_with_store("1h", &url),
        "3s",
    ));
    let b = Ca::start_sharing(&a);
    lab_on(&a, &team, "before-A");
    lab_on(&b, &team, "before-B");

    pg.stop();
    refused_in_time(&a, &team, "during-outage");
    pg.start_again();
    serve_again(&a, &b, &team);
    nothing_stored(&b, &team, "during-outage");
    verified(&a.ssh(&team.ivy, "audit verify", None));
}

/// A database that still accepts connections but answers nothing (its processes stopped
/// with SIGSTOP): a request on A is refused with one line and exit 1 within
/// `limits.store_timeout` (3 s) of the command, plus at most 2 s the login waits for the
/// second-factor lookup (the test allows 7 s in all; the refusal's own audit record is not
/// waited for), not after a TCP time-out or never; once the database runs again, both daemons
/// serve without a restart.
#[test]
fn a_database_that_stops_answering_is_refused_within_the_store_timeout() {
    let team = Team::new();
    let pg = jitca_pgtest::Cluster::start();
    let url = pg.fresh_database();
    let a = Ca::start(&with_store_timeout(
        &team.config_with_store("1h", &url),
        "3s",
    ));
    let b = Ca::start_sharing(&a);
    lab_on(&a, &team, "before-A");
    lab_on(&b, &team, "before-B");

    {
        let _frozen = Frozen::stop(&pg);
        refused_in_time(&a, &team, "while-frozen");
    }
    serve_again(&a, &b, &team);
    nothing_stored(&b, &team, "while-frozen");
    verified(&b.ssh(&team.ivy, "audit verify", None));
}

/// A lab request on `ca` with `reason` while the database is unavailable: refused with one
/// line naming it, exit 1, within 7 s (login's 2 s, the 3 s store time-out, slack). A command
/// that hangs fails the test after 30 s instead of hanging it.
fn refused_in_time(ca: &Ca, team: &Team, reason: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let port = ca.port;
    let alice = team.alice.clone();
    let args = format!("lab1 --as root --for 30m --reason {reason}");
    let started = Instant::now();
    thread::spawn(move || {
        let _ = tx.send(request_at(port, &alice, &args));
    });
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no answer within 30 s with the database unavailable (store_timeout 3s)");
    let took = started.elapsed();
    out.refused("the database is unavailable");
    assert!(
        took < Duration::from_secs(7),
        "refused after {took:?} (store_timeout 3s, login at most 2s)"
    );
}

/// Both daemons issue certificates again, without a restart, within `wait_for`'s 20 s.
fn serve_again(a: &Ca, b: &Ca, team: &Team) {
    for (ca, name) in [(a, "A"), (b, "B")] {
        let mut n = 0;
        wait_for(&format!("{name} to serve again"), || {
            n += 1;
            ca.request(
                &team.alice,
                &format!("lab1 --as root --for 30m --reason after-{name}-{n}"),
            )
            .status
                == 0
        });
    }
}

/// No request and no audit record with `reason`, as `ca` sees the database.
fn nothing_stored(ca: &Ca, team: &Team, reason: &str) {
    let all = ca.list_json(&team.ivy);
    assert!(
        all.iter().all(|r| r["reason"] != reason),
        "a request was stored while the database was unavailable: {all:#?}"
    );
    let records = ca.audit_json(&team.ivy, "");
    assert!(
        records.iter().all(|r| r["reason"] != reason),
        "the audit has a request made while the database was unavailable: {records:#?}"
    );
}

/// The PostgreSQL server's processes (the postmaster and its children, by pid) stopped with
/// SIGSTOP: connections are still accepted by the kernel, nothing answers. Continued on drop,
/// also when the test fails.
struct Frozen(Vec<String>);

impl Frozen {
    fn stop(pg: &jitca_pgtest::Cluster) -> Frozen {
        let pid_file = std::fs::read_to_string(pg.dir().join("data/postmaster.pid")).unwrap();
        let postmaster = pid_file.lines().next().unwrap().trim().to_string();
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: the fields after the last ')'.
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            if after.split_whitespace().nth(1) == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let frozen = Frozen(pids);
        frozen.signal("STOP");
        frozen
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .args(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {:?}", self.0);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.signal("CONT");
    }
}

/// `jitca store copy` moves a stopped sled daemon's history into an empty database: a daemon
/// started on it with the same keys has the same chain (the records and head `audit verify
/// --data` printed offline), lists the old requests in their states, and issues serials above
/// every copied one. A second copy into the now non-empty database is refused and changes
/// nothing.
#[test]
fn store_copy_moves_a_sled_daemons_history_into_the_database() {
    let team = Team::new();
    let mut sled = Ca::start(&team.config("1h"));
    let (issued, _, issued_serial) = lab_on(&sled, &team, "copied-issued");
    let (revoked, _, revoked_serial) = lab_on(&sled, &team, "copied-revoked");
    sled.ssh(
        &team.ivy,
        &format!("revoke {revoked} --reason copied revocation"),
        None,
    )
    .ok();
    let denied = id_of(&sled.request(
        &team.alice,
        "web1 --as root --for 1h --reason copied denial --no-wait",
    ));
    sled.ssh(
        &team.bob,
        &format!("deny {denied} --reason not today"),
        None,
    )
    .ok();
    let approved = id_of(&sled.request(
        &team.alice,
        "web1 --as root --for 1h --reason copied approval --no-wait",
    ));
    sled.ssh(&team.carol, &format!("approve {approved}"), None)
        .ok();
    let approved_serial = sled.show_json(&team.alice, &approved)["serial"]
        .as_u64()
        .unwrap();
    let listed_before = sled.list_json(&team.ivy);
    assert_eq!(sled.stop(), 0);

    let data = sled.data();
    let offline = jitca_offline(&[
        std::ffi::OsStr::new("audit"),
        "verify".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    let (count, head) = verified(&offline);
    let exported = jitca_offline(&[
        std::ffi::OsStr::new("audit"),
        "--json".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    exported.ok();
    assert_eq!(exported.stdout.lines().count() as u64, count);

    let url = jitca_pgtest::shared().fresh_database();
    let copy = || {
        run(
            Command::new(JITCA)
                .args(["store", "copy", "--config"])
                .arg(&sled.config)
                .args(["--to", &url]),
            None,
        )
    };
    let copied = copy();
    copied.ok();
    assert!(
        copied.stdout.starts_with(&format!(
            "copied {} requests, {count} audit records (head {head})",
            listed_before.len()
        )),
        "{copied:?}"
    );

    let pg = Ca::start_sharing_with(&sled, &team.config_with_store("1h", &url));
    let (now, _) = verified(&pg.ssh(&team.ivy, "audit verify", None));
    assert!(now > count, "{now} records after copying {count}");
    let records = pg.audit_json(&team.ivy, "");
    let old = records
        .iter()
        .find(|r| r["seq"] == count)
        .expect("the copied head record");
    assert_eq!(old["hash"], head.as_str(), "{old:#}");
    // Record for record, byte for byte: the copy's chain starts with the sled store's.
    let online = pg.ssh(&team.ivy, "audit --json", None);
    online.ok();
    assert!(
        online.stdout.starts_with(&exported.stdout),
        "the copied chain differs:\n{}\n---\n{}",
        exported.stdout,
        online.stdout
    );

    let listed = pg.list_json(&team.ivy);
    for before in &listed_before {
        let id = before["id"].as_str().unwrap();
        let after = listed
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} was not copied: {listed:#?}"));
        assert_eq!(after["state"], before["state"], "{after:#}");
        assert_eq!(after["serial"], before["serial"], "{after:#}");
        assert_eq!(after["reason"], before["reason"], "{after:#}");
    }
    assert_eq!(pg.show_json(&team.alice, &issued)["state"], "issued");
    assert_eq!(pg.show_json(&team.alice, &revoked)["state"], "revoked");
    assert_eq!(pg.show_json(&team.alice, &denied)["state"], "denied");
    assert_eq!(
        pg.show_json(&team.alice, &approved)["serial"].as_u64(),
        Some(approved_serial)
    );
    let (_, _, new_serial) = lab_on(&pg, &team, "after-the-copy");
    let highest = issued_serial.max(revoked_serial).max(approved_serial);
    assert!(new_serial > highest, "{new_serial} <= {highest}");

    // A second copy into the same database is refused and changes nothing.
    let audit_before = pg.ssh(&team.ivy, "audit --json", None);
    let list_before = pg.ssh(&team.ivy, "list --json", None);
    audit_before.ok();
    let again = copy();
    assert_eq!(again.status, 1, "{again:?}");
    let lines: Vec<&str> = again
        .stderr
        .lines()
        .filter(|l| l.starts_with("jitca: "))
        .collect();
    assert_eq!(lines.len(), 1, "{again:?}");
    assert!(lines[0].contains("nothing was copied"), "{again:?}");
    assert!(again.stdout.is_empty(), "{again:?}");
    // Reading is recorded (`audit_read`): the chain grew by that one record, nothing else.
    let audit_after = pg.ssh(&team.ivy, "audit --json", None);
    let more = audit_after
        .stdout
        .strip_prefix(&audit_before.stdout)
        .unwrap_or_else(|| panic!("the chain changed: {audit_after:?}"));
    assert_eq!(more.lines().count(), 1, "{more}");
    assert!(more.contains(r#""event":"audit_read""#), "{more}");
    assert_eq!(
        pg.ssh(&team.ivy, "list --json", None).stdout,
        list_before.stdout
    );
    // Nor did it set the serial sequence back (sequences ignore a rollback).
    let (_, _, later_serial) = lab_on(&pg, &team, "after-the-refused-copy");
    assert!(later_serial > new_serial, "{later_serial} <= {new_serial}");
}

/// `jitca check --config` with a PostgreSQL store connects: a fresh database passes with a
/// warning that no schema is there yet; a port where nothing listens fails with one line
/// naming the `store` setting; once a daemon has started on the database, it passes without
/// the warning.
#[test]
fn check_connects_to_the_database_the_config_names() {
    let team = Team::new();
    let dir = tempfile::tempdir().unwrap();
    run(
        Command::new(JITCA).arg("init").arg("--dir").arg(dir.path()),
        None,
    )
    .ok();
    let path: PathBuf = dir.path().join("jitca.yaml");
    let check = |config: &str| {
        std::fs::write(&path, config).unwrap();
        run(
            Command::new(JITCA).args(["check", "--config"]).arg(&path),
            None,
        )
    };

    let url = jitca_pgtest::shared().fresh_database();
    let fresh = check(&team.config_with_store("1h", &url));
    fresh.ok();
    assert!(
        fresh.stderr.contains("holds no jitca schema yet"),
        "{fresh:?}"
    );

    let nobody = format!("postgres://postgres@127.0.0.1:{}/jitca", free_port());
    let unreachable = check(&with_store_timeout(
        &team.config_with_store("1h", &nobody),
        "3s",
    ));
    assert_eq!(unreachable.status, 1, "{unreachable:?}");
    assert!(unreachable.stdout.is_empty(), "{unreachable:?}");
    let problems: Vec<&str> = unreachable.stderr.lines().collect();
    assert_eq!(problems.len(), 1, "{unreachable:?}");
    assert!(
        problems[0].contains(": store: cannot use the database"),
        "{unreachable:?}"
    );

    let daemon = Ca::start(&team.config_with_store("1h", &url));
    let after = check(&team.config_with_store("1h", &url));
    after.ok();
    assert!(!after.stderr.contains("schema"), "{after:?}");
    drop(daemon);
}
