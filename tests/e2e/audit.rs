//! The audit trail: every event recorded with its fields, readable by auditors only, verified
//! end to end; tampering named; certificates never delivered without their record.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn with_audit_log(config: &str) -> String {
    config.replace(
        "data_dir: data\n",
        "data_dir: data\naudit_log: audit.jsonl\n",
    )
}

fn events<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["event"] == kind).collect()
}

#[test]
fn auditors_see_every_event_of_a_request_cycle() {
    let team = Team::new();
    // Whole seconds: a record's time is compared with this window.
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut ca = Ca::start(&with_audit_log(&team.config("1h")));
    let id = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 1h --reason INC-7 disk full --no-wait",
    ));
    ca.ssh(&team.bob, &format!("approve {id}"), None).ok();
    ca.ssh(&team.alice, &format!("get {id}"), None).ok();
    let denied = id_of(&ca.request(
        &team.alice,
        "web2 --as nobody --for 10m --reason look --no-wait",
    ));
    ca.ssh(
        &team.carol,
        &format!("deny {denied} --reason not now"),
        None,
    )
    .ok();
    ca.ssh(&team.alice, "frobnicate \u{1b}[2Jfake\nSEQ forged", None)
        .usage("unknown command");
    let failed = ca.ssh(&team.mallory, "whoami", None);
    assert_eq!(failed.status, 255);
    // A non-auditor is refused, and that refusal is itself recorded.
    ca.ssh(&team.alice, "audit", None).refused("auditor");
    ca.ssh(&team.alice, "audit verify", None).refused("auditor");

    // The failed connection is recorded when it closes; give it a moment.
    let mut all = Vec::new();
    for _ in 0..50 {
        all = ca.audit_json(&team.ivy, "");
        if !events(&all, "auth_failed").is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "dense, in order"
    );
    // Every record's time is RFC 3339 in UTC, within this test, never going backwards.
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = all
        .iter()
        .map(|e| {
            let text = e["time"].as_str().unwrap_or_else(|| panic!("no time: {e}"));
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap_or_else(|err| panic!("time {text:?} is not RFC 3339 ({err}): {e}"))
        })
        .collect();
    let now = chrono::Utc::now() + chrono::Duration::seconds(1);
    for (t, e) in times.iter().zip(&all) {
        assert_eq!(t.offset().local_minus_utc(), 0, "not UTC: {e}");
        assert!(started <= *t && *t <= now, "outside {started}..{now}: {e}");
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{all:#?}");

    // The start names the version, the address and the CA key that every record after it
    // was made under.
    let start = events(&all, "daemon_started");
    assert_eq!(start.len(), 1);
    assert_eq!(start[0]["seq"], 1, "the first record");
    assert_eq!(start[0]["actor"], "jitca");
    assert_eq!(
        start[0]["details"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{}",
        start[0]
    );
    assert_eq!(
        start[0]["details"]["listen"],
        format!("127.0.0.1:{}", ca.port),
        "{}",
        start[0]
    );
    let fingerprint = run(
        Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(ca.ca_pub()),
        None,
    );
    fingerprint.ok();
    let fingerprint = fingerprint.stdout.split_whitespace().nth(1).unwrap();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    assert_eq!(
        start[0]["details"]["ca_fingerprint"], fingerprint,
        "{}",
        start[0]
    );

    let requested = events(&all, "requested");
    assert_eq!(requested.len(), 2);
    let r = requested[0];
    assert_eq!(r["actor"], "alice");
    assert_eq!(r["request"], id.as_str());
    assert_eq!(r["reason"], "INC-7 disk full");
    assert_eq!(r["hosts"], serde_json::json!(["web1"]));
    assert_eq!(r["logins"], serde_json::json!(["root"]));
    assert_eq!(r["details"]["duration_secs"], 3600);
    assert!(
        r["details"]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert!(r["source"].as_str().unwrap().starts_with("127.0.0.1:"));

    let approved = events(&all, "approved");
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["actor"], "bob");
    assert_eq!(approved[0]["requester"], "alice");

    let issued = events(&all, "issued");
    assert_eq!(issued.len(), 1);
    let i = issued[0];
    let shown = ca.show_json(&team.alice, &id);
    assert_eq!(i["serial"], shown["serial"]);
    assert_eq!(i["details"]["key_id"], shown["key_id"]);
    assert_eq!(i["principals"], serde_json::json!(["root@web1"]));
    assert_eq!(i["details"]["approvers"], serde_json::json!(["bob"]));
    assert_eq!(
        i["details"]["extensions"],
        serde_json::json!(["permit-pty"])
    );
    assert_eq!(i["details"]["critical_options"], serde_json::json!({}));
    assert!(i["details"]["valid_before"].is_string() && i["details"]["valid_after"].is_string());

    let fetched = events(&all, "certificate_fetched");
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0]["serial"], shown["serial"]);

    let d = events(&all, "denied");
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0]["actor"].as_str(), d[0]["reason"].as_str()),
        (Some("carol"), Some("not now"))
    );

    let refused = events(&all, "refused");
    assert_eq!(refused.len(), 3, "{refused:#?}");
    assert_eq!(
        refused[0]["details"]["command"], "frobnicate \u{1b}[2Jfake\nSEQ forged",
        "stored faithfully"
    );
    assert!(refused[1]["reason"].as_str().unwrap().contains("auditor"));

    let auth = events(&all, "auth_failed");
    assert_eq!(auth.len(), 1, "{all:#?}");
    assert_eq!(auth[0]["actor"], "-");
    assert!(
        auth[0]["details"]["keys"][0]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert!(
        !events(&all, "audit_read").is_empty(),
        "reads of the log are recorded"
    );

    // Filters.
    let by_bob = ca.audit_json(&team.ivy, "--user bob");
    assert!(
        by_bob
            .iter()
            .all(|e| e["actor"] == "bob" || e["requester"] == "bob")
    );
    let kinds: Vec<&str> = by_bob
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["approved", "issued"], "the last approver issues");
    let by_request = ca.audit_json(&team.ivy, &format!("--request {id}"));
    let kinds: Vec<&str> = by_request
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["requested", "approved", "issued", "certificate_fetched"]
    );
    let by_serial = ca.audit_json(&team.ivy, &format!("--serial {}", shown["serial"]));
    assert_eq!(by_serial.len(), 2);
    let by_host = ca.audit_json(&team.ivy, "--host web2 --user alice");
    assert_eq!(by_host.len(), 2, "{by_host:#?}");
    assert!(ca.audit_json(&team.ivy, "--since 2999-01-01").is_empty());
    assert!(ca.audit_json(&team.ivy, "--until 2000-01-01").is_empty());
    assert!(
        !ca.audit_json(&team.ivy, "--since 1h --until 2999-01-01T00:00:00Z")
            .is_empty()
    );
    ca.ssh(&team.ivy, "audit --since yesterday", None)
        .refused("not a time");
    ca.ssh(&team.ivy, "audit --serial x", None)
        .refused("not a serial");

    // The table escapes what users typed: one line per record, nothing forged.
    let table = ca.ssh(&team.ivy, "audit", None);
    table.ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("SEQ"));
    assert!(
        lines
            .iter()
            .skip(1)
            .all(|l| l.split_whitespace().next().unwrap().parse::<u64>().is_ok()),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("\\u{1b}[2Jfake\\u{a}SEQ forged"),
        "{}",
        table.stdout
    );
    assert!(!table.stdout.contains('\u{1b}'));

    let verify = ca.ssh(&team.ivy, "audit verify", None);
    verify.ok();
    assert!(
        verify.stdout.starts_with("audit log intact: "),
        "{verify:?}"
    );
    // The verification is itself recorded, with its outcome; alice's refused one is not.
    let checked: u64 = verify
        .stdout
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count in {verify:?}"));
    let online = ca.ssh(&team.ivy, "audit --json", None);
    online.ok();
    let after: Vec<Value> = online
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let verified = events(&after, "audit_verified");
    assert_eq!(verified.len(), 1, "{after:#?}");
    assert_eq!(verified[0]["actor"], "ivy");
    assert_eq!(verified[0]["details"]["result"], "intact");
    assert_eq!(verified[0]["details"]["records"], checked);
    assert_eq!(
        verified[0]["seq"],
        checked + 1,
        "recorded after what it checked"
    );
    assert!(
        verified[0]["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // The JSON-lines file holds the same records, byte for byte: once the daemon is stopped,
    // it is exactly what the store exports, and `audit --json` over SSH printed the same bytes.
    assert_eq!(ca.stop(), 0, "SIGTERM stops the daemon cleanly");
    let file = std::fs::read_to_string(ca.dir.path().join("audit.jsonl")).unwrap();
    let data = ca.data();
    let export = jitca_offline(&[
        std::ffi::OsStr::new("audit"),
        "--json".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    export.ok();
    assert_eq!(file, export.stdout, "the file is the store's log");
    assert!(
        file.starts_with(&online.stdout),
        "the file holds what `audit --json` printed, byte for byte:\n{file}\n---\n{}",
        online.stdout
    );
    let last: Value = serde_json::from_str(file.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "daemon_stopped", "{last}");
}

/// `jitca audit verify --data DIR` on a copy of the store after `change` was done to it.
fn verify_copy(data: &std::path::Path, change: impl FnOnce(&sled::Tree)) -> Out {
    let copy = copy_store(data, |db| change(&db.open_tree("audit").unwrap()));
    let dir = copy.path().join("data");
    jitca_offline(&[
        std::ffi::OsStr::new("audit"),
        "verify".as_ref(),
        "--data".as_ref(),
        dir.as_os_str(),
    ])
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

#[test]
fn tampering_with_a_copy_of_the_store_is_named() {
    let team = Team::new();
    let mut ca = Ca::start(&team.config("1h"));
    for _ in 0..3 {
        ca.request(&team.alice, "lab1 --as root --for 5m --reason lab")
            .ok();
    }
    assert_eq!(ca.stop(), 0, "SIGTERM stops the daemon cleanly");
    let data = ca.data();
    let intact = verify_copy(&data, |_| {});
    intact.ok();
    let count: u64 = intact
        .stdout
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 8, "{intact:?}");

    let changed = verify_copy(&data, |t| {
        let line = t.get(key(3)).unwrap().unwrap();
        let text =
            String::from_utf8(line.to_vec())
                .unwrap()
                .replacen("\"actor\":\"", "\"actor\":\"z", 1);
        t.insert(key(3), text.as_bytes()).unwrap();
    });
    assert_eq!(changed.status, 1);
    assert!(
        changed
            .stderr
            .contains("audit log broken at record 3: its content does not match its hash"),
        "{changed:?}"
    );

    let deleted = verify_copy(&data, |t| {
        t.remove(key(4)).unwrap();
    });
    assert!(
        deleted.stderr.contains("record 4: is missing"),
        "{deleted:?}"
    );

    let reordered = verify_copy(&data, |t| {
        let (a, b) = (
            t.get(key(2)).unwrap().unwrap(),
            t.get(key(3)).unwrap().unwrap(),
        );
        t.insert(key(2), b).unwrap();
        t.insert(key(3), a).unwrap();
    });
    assert!(
        reordered.stderr.contains("record 2: is out of order"),
        "{reordered:?}"
    );

    let truncated = verify_copy(&data, |t| {
        t.remove(key(count)).unwrap();
        t.remove(key(count - 1)).unwrap();
    });
    assert!(
        truncated
            .stderr
            .contains(&format!("record {}: is missing", count - 1))
            && truncated.stderr.contains("cut off"),
        "{truncated:?}"
    );

    // Offline reading works on the stopped daemon's store, with filters.
    let offline = run(
        Command::new(JITCA)
            .args(["audit", "--json", "--user", "alice", "--data"])
            .arg(&data),
        None,
    );
    offline.ok();
    assert_eq!(
        offline
            .stdout
            .lines()
            .filter(|l| l.contains("\"event\":\"issued\""))
            .count(),
        3
    );
    let stopped = run(
        Command::new(JITCA).args(["audit", "--data"]).arg(&data),
        None,
    );
    stopped.ok();
    assert!(stopped.stdout.contains("daemon_stopped"), "{stopped:?}");
    // While the daemon runs, the store is locked: a clear refusal, not a second writer.
    ca.start_again();
    let locked = run(
        Command::new(JITCA).args(["audit", "--data"]).arg(&data),
        None,
    );
    assert_eq!(locked.status, 1);
    assert!(
        locked.stderr.contains("stop the daemon first"),
        "{locked:?}"
    );
}

#[test]
fn no_certificate_leaves_while_the_audit_log_file_cannot_be_written() {
    let team = Team::new();
    let ca = Ca::start(&with_audit_log(&team.config("1h")));
    let path = ca.dir.path().join("audit.jsonl");
    ca.request(&team.alice, "lab1 --as root --for 5m --reason first")
        .ok();
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let out = ca.request(&team.alice, "lab1 --as root --for 5m --reason second");
    out.refused("audit log file failed");
    assert!(out.stderr.contains("certificate is withheld"), "{out:?}");
    let id = out
        .stderr
        .split("request ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    ca.ssh(&team.alice, &format!("get {id}"), None)
        .refused("audit log file failed");
    assert!(
        ca.log.lock().unwrap().contains("audit log file failed"),
        "the daemon says so in its log"
    );
    std::fs::remove_dir(&path).unwrap();
    let got = ca.ssh(&team.alice, &format!("get {id}"), None);
    got.ok();
    assert!(got.stdout.starts_with("ssh-ed25519-cert-v01@openssh.com"));
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(
        file.lines()
            .any(|l| l.contains("\"event\":\"issued\"") && l.contains(&id)),
        "{file}"
    );
}

#[test]
fn certificates_survive_sigkill_at_random_moments() {
    let team = Team::new();
    let mut ca = Ca::start(&team.config("1h"));
    let port = ca.port;
    let stop = AtomicBool::new(false);
    let received: Vec<(String, u64)> = thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let stop = &stop;
                let alice = team.alice.clone();
                s.spawn(move || {
                    let mut got = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let out = request_at(
                            port,
                            &alice,
                            &format!("lab1 --as root --for 5m --reason crash test {w}"),
                        );
                        if out.status != 0 {
                            continue;
                        }
                        // Only a whole certificate counts as received.
                        if let Ok(cert) = ssh_key::Certificate::from_openssh(out.stdout.trim()) {
                            got.push((cert.key_id().to_string(), cert.serial()));
                        }
                    }
                    got
                })
            })
            .collect();
        let mut seed = u64::from(port) * 2_654_435_761;
        for _ in 0..12 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            thread::sleep(Duration::from_millis(150 + seed % 600));
            ca.restart_hard();
        }
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    eprintln!(
        "crash test: {} certificates received across 12 SIGKILLs",
        received.len()
    );
    assert!(
        received.len() >= 12,
        "too few certificates to mean anything: {}",
        received.len()
    );
    let serials: BTreeSet<u64> = received.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        serials.len(),
        received.len(),
        "no serial was handed out twice"
    );

    let issued: BTreeMap<u64, String> = ca
        .audit_json(&team.ivy, "")
        .into_iter()
        .filter(|e| e["event"] == "issued")
        .map(|e| {
            (
                e["serial"].as_u64().unwrap(),
                e["details"]["key_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (key_id, serial) in &received {
        assert_eq!(
            issued.get(serial),
            Some(key_id),
            "certificate {serial} left without its issuance record"
        );
    }
    let verify = ca.ssh(&team.ivy, "audit verify", None);
    verify.ok();
}

#[test]
fn a_rotated_audit_file_continues_where_the_old_one_ended() {
    let team = Team::new();
    let mut ca = Ca::start(&with_audit_log(&team.config("1h")));
    let path = ca.dir.path().join("audit.jsonl");
    ca.request(
        &team.alice,
        "lab1 --as root --for 5m --reason before rotation",
    )
    .ok();
    // logrotate's way: move the file away, then the daemon is restarted (or keeps going).
    let rotated = ca.dir.path().join("audit.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    ca.request(
        &team.alice,
        "lab1 --as root --for 5m --reason while rotated",
    )
    .ok();
    assert_eq!(ca.stop(), 0);
    std::fs::rename(&path, ca.dir.path().join("audit.jsonl.2")).unwrap();
    ca.start_again();
    ca.request(
        &team.alice,
        "lab1 --as root --for 5m --reason after restart",
    )
    .ok();
    let seqs = |p: &std::path::Path| -> Vec<u64> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let mut all = seqs(&rotated);
    all.extend(seqs(&ca.dir.path().join("audit.jsonl.2")));
    all.extend(seqs(&path));
    let store: Vec<u64> = ca
        .audit_json(&team.ivy, "")
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    // Each record once, in order, across the files: no gap, nothing written twice. (The last
    // records, the auditor's own read, may not have reached the file yet.)
    assert_eq!(
        all[..],
        store[..all.len()],
        "files {all:?} vs store {store:?}"
    );
    assert!(all.len() + 2 >= store.len());
}
