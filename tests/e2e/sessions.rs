//! The host side ends open sessions when their access ends: `deploy/jitca-krl-refresh`, run
//! as the timer runs it, against a real `sshd` whose log it reads, and the `status` command it
//! asks about expiry.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;

/// A CA, a host `lab1` whose `sshd` logs to a file and reads the KRL the refresh installs,
/// and the host's pinned copy of the CA's host key. The `sshd` also trusts a second, foreign
/// CA (`foreign_ca` in `dir`), and listens on `::1` too when this machine has IPv6.
struct Host {
    team: Team,
    ca: Ca,
    sshd: Sshd,
    dir: tempfile::TempDir,
    /// `::1` when the `sshd` listens there, else `127.0.0.1`.
    v6: &'static str,
}

impl Host {
    fn start() -> Host {
        let team = Team::new();
        let ca = Ca::start(&team.config("1h"));
        let dir = tempfile::tempdir().unwrap();
        pin_ca_host_key(&ca, dir.path());
        let krl = dir.path().join("jitca.krl");
        let foreign = dir.path().join("foreign_ca");
        keygen(&foreign, "another-ca");
        let cas = dir.path().join("cas.pub");
        std::fs::write(
            &cas,
            std::fs::read_to_string(ca.ca_pub()).unwrap()
                + &std::fs::read_to_string(pub_path(&foreign)).unwrap(),
        )
        .unwrap();
        let v6 = if std::net::TcpListener::bind("[::1]:0").is_ok() {
            "::1"
        } else {
            "127.0.0.1"
        };
        let listen_v6 = if v6 == "::1" { "ListenAddress ::1" } else { "" };
        let sshd = Sshd::start(
            "lab1",
            &cas,
            &["root"],
            &format!("RevokedKeys {}\n{listen_v6}", krl.display()),
        );
        let host = Host {
            team,
            ca,
            sshd,
            dir,
            v6,
        };
        // The KRL is in place before anyone logs in, as on a real host.
        let first = host.refresh(&[]);
        first.ok();
        assert!(!first.stderr.contains("ended session"), "{first:?}");
        host
    }

    /// `deploy/jitca-krl-refresh` with the settings the timer's environment file gives it,
    /// plus `extra`.
    fn refresh(&self, extra: &[(&str, &str)]) -> Out {
        let mut cmd = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/jitca-krl-refresh"
        ));
        cmd.env("JITCA_CA", "127.0.0.1")
            .env("JITCA_PORT", self.ca.port.to_string())
            .env("JITCA_IDENTITY", &self.team.web1.key)
            .env("JITCA_KNOWN_HOSTS", self.dir.path().join("known_hosts"))
            .env("JITCA_KRL", self.dir.path().join("jitca.krl"))
            .env("JITCA_SSHD_LOG", self.sshd.dir.path().join("sshd.log"));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        run(&mut cmd, None)
    }

    /// A `lab1` certificate for alice (no approval needed), valid `duration`, saved as `name`.
    fn cert(&self, name: &str, duration: &str) -> Cert {
        let out = self.ca.request(
            &self.team.alice,
            &format!("lab1 --as root --for {duration} --reason {name}"),
        );
        out.ok();
        let path = save_cert(self.team.dir.path(), name, &out.stdout);
        let listing = keygen_l(&path);
        let field = |label: &str| {
            listing
                .lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .unwrap_or_else(|| panic!("no {label} in {listing}"))
                .trim()
                .to_string()
        };
        let id = self.ca.id_by_reason(&self.team.alice, name);
        Cert {
            path,
            id,
            serial: field("Serial:").parse().unwrap(),
            key_id: field("Key ID:").trim_matches('"').to_string(),
        }
    }

    /// A certificate for alice's key signed by the foreign CA, with `serial`.
    fn foreign_cert(&self, serial: u64) -> Cert {
        let key = self.dir.path().join("alice_foreign");
        std::fs::copy(&self.team.alice.key, &key).unwrap();
        std::fs::copy(pub_path(&self.team.alice.key), pub_path(&key)).unwrap();
        let out = run(
            Command::new("ssh-keygen")
                .arg("-q")
                .arg("-s")
                .arg(self.dir.path().join("foreign_ca"))
                .args(["-I", "foreign-alice", "-n", "root@lab1", "-V", "+30m", "-z"])
                .arg(serial.to_string())
                .arg(pub_path(&key)),
            None,
        );
        out.ok();
        Cert {
            path: self.dir.path().join("alice_foreign-cert.pub"),
            id: String::new(),
            serial,
            key_id: "foreign-alice".into(),
        }
    }

    /// An SSH connection to `lab1` as root with `cert`, held open (`ssh -N`) as a multiplexing
    /// master, so commands can be run over that very connection later.
    fn hold(&self, cert: &Cert) -> Session {
        self.hold_at(cert, "127.0.0.1")
    }

    /// The same, to the `sshd` at `addr`.
    fn hold_at(&self, cert: &Cert, addr: &str) -> Session {
        let control = self
            .dir
            .path()
            .join(format!("mux-{}-{}", cert.serial, cert.key_id.len()));
        let mut cmd = ssh_client(&self.team.alice.key);
        cmd.arg("-o")
            .arg(format!("CertificateFile={}", cert.path.display()))
            .args(["-o", "ControlMaster=yes", "-o"])
            .arg(format!("ControlPath={}", control.display()))
            .args(["-N", "-p", &self.sshd.port.to_string()])
            .arg(format!("root@{addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("ssh -N");
        let mut session = Session {
            child,
            control,
            port: self.sshd.port,
            key: self.team.alice.key.clone(),
            addr: addr.to_string(),
        };
        let logged = format!("ID {} (serial {}) CA ", cert.key_id, cert.serial);
        wait_for("the session to log in", || {
            assert!(session.running(), "ssh exited before logging in");
            self.sshd.log().contains(&logged) && session.control.exists()
        });
        session
    }

    /// The processes the test `sshd` forked, one per open connection.
    fn sshd_children(&self) -> Vec<u32> {
        let pid_file = self.sshd.dir.path().join("sshd.pid");
        let listener: u32 = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        children_of(listener)
    }
}

struct Cert {
    path: PathBuf,
    id: String,
    serial: u64,
    key_id: String,
}

/// An `ssh -N` multiplexing master holding one connection.
struct Session {
    child: Child,
    control: PathBuf,
    port: u16,
    key: PathBuf,
    addr: String,
}

impl Session {
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (bounded) for the ssh client to exit: its connection was closed by the server.
    #[track_caller]
    fn wait_ended(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.running() {
            assert!(
                Instant::now() < deadline,
                "the session is still open 20 s after the refresh"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a command over the held connection (no new authentication): proves it still works.
    fn command(&self) -> Out {
        let mut cmd = ssh_client(&self.key);
        cmd.arg("-o")
            .arg(format!("ControlPath={}", self.control.display()))
            .args(["-o", "ControlMaster=no", "-p", &self.port.to_string()])
            .arg(format!("root@{}", self.addr))
            .arg("echo open");
        run(&mut cmd, None)
    }

    /// Asserts the session is open and usable: the client runs and a command goes through it.
    #[track_caller]
    fn assert_open(&mut self) {
        assert!(self.running(), "the session was ended");
        let out = self.command();
        out.ok();
        // The lab rule's forced command, or ours, answers on the same connection.
        assert!(["forced", "open"].contains(&out.stdout.trim()), "{out:?}");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Processes whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        let ppid: u32 = after.split_whitespace().nth(1).unwrap().parse().unwrap();
        if ppid == parent {
            found.push(pid);
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The refresh's lines about ended sessions.
fn ended_lines(out: &Out) -> Vec<String> {
    out.stderr
        .lines()
        .filter(|l| l.contains("ended session"))
        .map(String::from)
        .collect()
}

/// The pid(s) an ended-session line names.
fn pids_in(line: &str) -> Vec<u32> {
    let rest = line.split(", pid ").nth(1).expect("a pid");
    let pids = rest.split(')').next().unwrap();
    pids.split(',').map(|p| p.parse().unwrap()).collect()
}

#[test]
fn a_revoked_certificates_session_is_ended_and_a_live_ones_stays() {
    let host = Host::start();
    let doomed = host.cert("doomed", "30m");
    let kept = host.cert("kept", "30m");
    // Over IPv6 when the machine has it: ss writes [::1]:PORT, sshd's log ::1.
    let mut doomed_session = host.hold_at(&doomed, host.v6);
    let mut kept_session = host.hold(&kept);
    // Another CA's certificate with the same serial is none of jitca's business.
    let foreign = host.foreign_cert(doomed.serial);
    let mut foreign_session = host.hold(&foreign);
    let children = host.sshd_children();
    assert!(children.len() >= 3, "{children:?}");

    // Nothing revoked yet: the refresh ends nothing.
    let out = host.refresh(&[]);
    out.ok();
    assert!(ended_lines(&out).is_empty(), "{out:?}");
    doomed_session.assert_open();

    host.ca
        .ssh(&host.team.alice, &format!("done {}", doomed.id), None)
        .ok();
    let out = host.refresh(&[]);
    out.ok();
    let lines = ended_lines(&out);
    assert_eq!(lines.len(), 1, "one session ended: {out:?}");
    let line = &lines[0];
    assert!(
        line.starts_with(&format!(
            "jitca-krl-refresh: ended session of root (serial {}, key id {}, pid ",
            doomed.serial, doomed.key_id
        )),
        "{line}"
    );
    assert!(line.ends_with("): revoked"), "{line}");
    doomed_session.wait_ended();
    for pid in pids_in(line) {
        assert!(
            children.contains(&pid),
            "{pid} is not one of sshd's: {children:?}"
        );
        wait_for("the ended session's sshd to exit", || !alive(pid));
    }
    assert_ne!(doomed_session.command().status, 0);

    kept_session.assert_open();
    foreign_session.assert_open();
    // And they stay so on the next run.
    let again = host.refresh(&[]);
    again.ok();
    assert!(ended_lines(&again).is_empty(), "{again:?}");
    kept_session.assert_open();
    foreign_session.assert_open();
}

#[test]
fn an_expired_certificates_session_is_ended_and_a_live_ones_stays() {
    let host = Host::start();
    let short = host.cert("short", "4s");
    let long = host.cert("long", "30m");
    let mut short_session = host.hold(&short);
    let mut long_session = host.hold(&long);

    // Past expiry, sshd lets the open connection go on: only the refresh ends it.
    wait_for("the short certificate to expire", || {
        let out = host
            .ca
            .ssh(&host.team.web1, &format!("status {}", short.serial), None);
        out.ok();
        out.stdout.split_whitespace().nth(1) == Some("expired")
    });
    short_session.assert_open();

    let out = host.refresh(&[]);
    out.ok();
    let lines = ended_lines(&out);
    assert_eq!(lines.len(), 1, "one session ended: {out:?}");
    assert!(
        lines[0].starts_with(&format!(
            "jitca-krl-refresh: ended session of root (serial {}, key id {}, pid ",
            short.serial, short.key_id
        )),
        "{out:?}"
    );
    assert!(lines[0].ends_with("): expired"), "{out:?}");
    short_session.wait_ended();
    long_session.assert_open();
}

#[test]
fn with_end_sessions_no_a_revoked_certificates_session_stays() {
    let host = Host::start();
    let cert = host.cert("stays", "30m");
    let mut session = host.hold(&cert);
    host.ca
        .ssh(&host.team.alice, &format!("done {}", cert.id), None)
        .ok();

    let out = host.refresh(&[("JITCA_END_SESSIONS", "no")]);
    out.ok();
    assert!(ended_lines(&out).is_empty(), "{out:?}");
    let krl = host.dir.path().join("jitca.krl");
    let revoked = run(
        Command::new("ssh-keygen")
            .arg("-Q")
            .arg("-f")
            .arg(&krl)
            .arg(&cert.path),
        None,
    );
    assert_eq!(revoked.status, 1, "the KRL was installed: {revoked:?}");
    session.assert_open();

    // The same run without the setting ends it.
    let out = host.refresh(&[]);
    out.ok();
    assert_eq!(ended_lines(&out).len(), 1, "{out:?}");
    session.wait_ended();
}

#[test]
fn status_tells_hosts_where_each_serial_stands() {
    let host = Host::start();
    let (ca, team) = (&host.ca, &host.team);
    let live = host.cert("live", "30m");
    let revoked = host.cert("revoked", "30m");
    ca.ssh(&team.alice, &format!("done {}", revoked.id), None)
        .ok();

    let now = chrono::Utc::now().timestamp();
    let out = ca.ssh(
        &team.web1,
        &format!("status {} {} 987654 0", live.serial, revoked.serial),
        None,
    );
    out.ok();
    let lines: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    for (line, (serial, state)) in lines.iter().zip([
        (live.serial.to_string(), "live"),
        (revoked.serial.to_string(), "revoked"),
        ("987654".to_string(), "unknown"),
        ("0".to_string(), "unknown"),
    ]) {
        assert_eq!(line.len(), 3, "{out:?}");
        assert_eq!((line[0], line[1]), (serial.as_str(), state), "{out:?}");
        if state == "unknown" {
            assert_eq!(line[2], "-", "{out:?}");
        } else {
            let valid_before: i64 = line[2].parse().unwrap();
            assert!(
                valid_before > now && valid_before <= now + 31 * 60,
                "{out:?}"
            );
        }
    }

    // Anyone registered may ask; the grammar is strict.
    ca.ssh(&team.alice, &format!("status {}", live.serial), None)
        .ok();
    ca.ssh(&team.web1, "status", None).usage("missing SERIAL");
    ca.ssh(&team.web1, "status 1 abc", None)
        .usage("\"abc\" is not a certificate serial");
    ca.ssh(&team.web1, "status -1", None)
        .usage("is not a certificate serial");
    ca.ssh(&team.web1, "status 1 --json", None)
        .usage("is not a certificate serial");
    ca.ssh(&team.web1, "status 18446744073709551616", None)
        .usage("is not a certificate serial");
    let many = vec!["1"; 1001].join(" ");
    ca.ssh(&team.web1, &format!("status {many}"), None)
        .usage("at most 1000");
    assert_eq!(
        ca.ssh(&team.mallory, &format!("status {}", live.serial), None)
            .status,
        255,
        "an unregistered key is not let in"
    );
}
