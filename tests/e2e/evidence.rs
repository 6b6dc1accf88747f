//! Evidence an auditor can open: signed checkpoints of the audit chain that `ssh-keygen -Y
//! verify` accepts and that catch a rewritten tail, and period reports (text, JSON, HTML).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn with_evidence(config: &str, interval: &str) -> String {
    config.replace(
        "data_dir: data\n",
        &format!("data_dir: data\naudit_log: audit.jsonl\ncheckpoint_interval: {interval}\n"),
    )
}

/// The checkpoint text and its armored signature, split where the armor begins.
fn split_checkpoint(signed: &str) -> (String, String) {
    let at = signed
        .find("-----BEGIN SSH SIGNATURE-----")
        .unwrap_or_else(|| panic!("no signature in {signed:?}"));
    (signed[..at].to_string(), signed[at..].to_string())
}

/// `ssh-keygen -Y verify` of `text` with `sig` against the allowed signer `key_line`.
fn ssh_keygen_verify(dir: &Path, key_line: &str, text: &[u8], sig: &str) -> Out {
    let allowed = dir.join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("jitca namespaces=\"jitca-audit\" {}\n", key_line.trim()),
    )
    .unwrap();
    let sig_path = dir.join("checkpoint.sig");
    std::fs::write(&sig_path, sig).unwrap();
    run(
        Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "jitca", "-n", "jitca-audit", "-s"])
            .arg(&sig_path),
        Some(text),
    )
}

#[test]
fn checkpoints_are_signed_with_an_audit_key_of_their_own_and_ssh_keygen_checks_them() {
    let team = Team::new();
    let ca = Ca::start(&with_evidence(&team.config("1h"), "2s"));
    let key_file = ca.dir.path().join("audit_ed25519");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = ca.ssh(&team.ivy, "audit key", None);
    key.ok();
    let key_line = key.stdout.trim().to_string();
    assert!(key_line.starts_with("ssh-ed25519 "), "{key:?}");
    let on_disk = std::fs::read_to_string(ca.dir.path().join("audit_ed25519.pub")).unwrap();
    assert_eq!(
        on_disk.split_whitespace().take(2).collect::<Vec<_>>(),
        key_line.split_whitespace().take(2).collect::<Vec<_>>()
    );
    let ca_key = std::fs::read_to_string(ca.ca_pub()).unwrap();
    assert_ne!(
        ca_key.split_whitespace().nth(1),
        key_line.split_whitespace().nth(1),
        "the audit key is never the CA key"
    );
    ca.ssh(&team.alice, "audit key", None).refused("auditor");
    ca.ssh(&team.alice, "audit checkpoint", None)
        .refused("auditor");

    ca.request(&team.alice, "lab1 --as root --for 5m --reason lab")
        .ok();
    let out = ca.ssh(&team.ivy, "audit checkpoint", None);
    out.ok();
    let (text, sig) = split_checkpoint(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "jitca audit checkpoint", "{text}");
    assert!(lines[1].starts_with("records "), "{text}");
    assert!(lines[2].starts_with("head ") && lines[2].len() == 5 + 64, "{text}");
    assert!(lines[3].starts_with("time 20"), "{text}");
    assert!(sig.trim_end().ends_with("-----END SSH SIGNATURE-----"));

    let dir = tempfile::tempdir().unwrap();
    let accepted = ssh_keygen_verify(dir.path(), &key_line, text.as_bytes(), &sig);
    assert_eq!(accepted.status, 0, "{accepted:?}");
    assert!(accepted.stdout.contains("Good \"jitca-audit\" signature"), "{accepted:?}");
    // One byte changed: refused.
    let mut changed = text.clone().into_bytes();
    let at = changed.iter().position(|b| b.is_ascii_digit()).unwrap();
    changed[at] = if changed[at] == b'9' { b'1' } else { changed[at] + 1 };
    let refused = ssh_keygen_verify(dir.path(), &key_line, &changed, &sig);
    assert_ne!(refused.status, 0, "{refused:?}");

    // Online, the checkpoint on stdin: held; with a changed byte: refused.
    let held = ca.ssh(
        &team.ivy,
        "audit verify --checkpoint -",
        Some(out.stdout.as_bytes()),
    );
    held.ok();
    assert!(held.stdout.contains("holds the checkpoint"), "{held:?}");
    let mut forged = changed.clone();
    forged.extend_from_slice(sig.as_bytes());
    ca.ssh(&team.ivy, "audit verify --checkpoint -", Some(&forged))
        .refused("signature does not verify");
    ca.ssh(&team.ivy, "audit verify --checkpoint /etc/passwd", None)
        .refused("stdin");

    // The daemon's own, every checkpoint_interval: in the log, and in the audit log file as
    // a record of the chain (a JSON line like every other).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let daemon_checkpoint = loop {
        let file = std::fs::read_to_string(ca.dir.path().join("audit.jsonl")).unwrap_or_default();
        let found = file
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("every line is JSON"))
            .find(|r| r["event"] == "checkpoint" && r["actor"] == "jitca");
        if let Some(record) = found {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "no daemon checkpoint");
        thread::sleep(Duration::from_millis(200));
    };
    assert!(ca.log.lock().unwrap().contains("audit checkpoint signed"));
    let signed = daemon_checkpoint["details"]["checkpoint"].as_str().unwrap();
    let (text, sig) = split_checkpoint(signed);
    assert_eq!(
        ssh_keygen_verify(dir.path(), &key_line, text.as_bytes(), &sig).status,
        0
    );
    assert!(text.contains(&format!(
        "records {}\n",
        daemon_checkpoint["seq"].as_u64().unwrap() - 1
    )));
}

#[test]
fn a_store_without_an_audit_key_gets_one() {
    let team = Team::new();
    let mut ca = Ca::start(&team.config("1h"));
    assert_eq!(ca.stop(), 0);
    let key = ca.dir.path().join("audit_ed25519");
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(ca.dir.path().join("audit_ed25519.pub")).unwrap();
    // jitca init --audit-key-only: the key alone, never overwriting.
    let made = run(
        Command::new(JITCA)
            .args(["init", "--audit-key-only", "--dir"])
            .arg(ca.dir.path()),
        None,
    );
    made.ok();
    assert!(made.stdout.contains("ssh-ed25519 "), "{made:?}");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = run(
        Command::new(JITCA)
            .args(["init", "--audit-key-only", "--dir"])
            .arg(ca.dir.path()),
        None,
    );
    assert_eq!(again.status, 1);
    assert!(again.stderr.contains("refusing to overwrite"), "{again:?}");
    // The daemon's first start without one makes it, and says so.
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(ca.dir.path().join("audit_ed25519.pub")).unwrap();
    ca.start_again();
    assert!(key.exists());
    assert!(
        ca.log
            .lock()
            .unwrap()
            .contains("created the audit signing key"),
        "{}",
        ca.log.lock().unwrap()
    );
    ca.ssh(&team.ivy, "audit key", None).ok();
    // A key others may read is refused by `jitca check`, like the CA key.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = run(
        Command::new(JITCA).arg("check").arg("--config").arg(&ca.config),
        None,
    );
    assert_eq!(check.status, 1, "{check:?}");
    assert!(check.stderr.contains("audit_key"), "{check:?}");
}

/// A copy of a stopped daemon's store, with `change` done to its sled trees.
fn copy_store(data: &Path, change: impl FnOnce(&sled::Db)) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(data)
        .arg(copy.path().join("data"))
        .status()
        .unwrap();
    assert!(status.success());
    {
        let db = sled::open(copy.path().join("data")).unwrap();
        change(&db);
        db.flush().unwrap();
    }
    copy
}

/// Runs `jitca ARGS`, retrying while sled's background thread still holds a copy's lock.
fn jitca_offline(args: &[&std::ffi::OsStr]) -> Out {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(Command::new(JITCA).args(args), None);
        if !out.stderr.contains("could not acquire lock") || std::time::Instant::now() > deadline {
            return out;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cut_tail_with_a_rewritten_head_passes_verify_but_not_an_earlier_checkpoint() {
    let team = Team::new();
    let mut ca = Ca::start(&team.config("1h"));
    for _ in 0..2 {
        ca.request(&team.alice, "lab1 --as root --for 5m --reason lab")
            .ok();
    }
    let out = ca.ssh(&team.ivy, "audit checkpoint", None);
    out.ok();
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint.txt");
    std::fs::write(&checkpoint, &out.stdout).unwrap();
    let key = ca.dir.path().join("audit_ed25519.pub");
    let records: u64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("records "))
        .unwrap()
        .parse()
        .unwrap();
    for _ in 0..2 {
        ca.request(&team.alice, "lab1 --as root --for 5m --reason lab")
            .ok();
    }
    assert_eq!(ca.stop(), 0);
    let data = ca.data();
    let verify = |data: &Path, with_checkpoint: bool| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["audit".as_ref(), "verify".as_ref()];
        args.extend(["--data".as_ref(), data.as_os_str()]);
        if with_checkpoint {
            args.extend([
                "--checkpoint".as_ref(),
                checkpoint.as_os_str(),
                "--key".as_ref(),
                key.as_os_str(),
            ]);
        }
        jitca_offline(&args)
    };
    verify(&data, true).ok();

    // Cut the chain back to two records before the checkpoint's count, and rewrite the head
    // to match: a plain verify cannot tell.
    let keep = records - 2;
    let copy = copy_store(&data, |db| {
        let audit = db.open_tree("audit").unwrap();
        let last = audit.last().unwrap().unwrap().0;
        let last = u64::from_be_bytes(last.as_ref().try_into().unwrap());
        for seq in keep + 1..=last {
            audit.remove(seq.to_be_bytes()).unwrap();
        }
        let line = audit.get(keep.to_be_bytes()).unwrap().unwrap();
        let record: Value = serde_json::from_slice(&line).unwrap();
        let head = serde_json::json!({
            "seq": keep, "hash": record["hash"], "time": record["time"],
        });
        db.open_tree("meta")
            .unwrap()
            .insert(b"audit_head", serde_json::to_vec(&head).unwrap())
            .unwrap();
    });
    let cut = copy.path().join("data");
    let plain = verify(&cut, false);
    plain.ok();
    assert!(plain.stdout.contains(&format!("{keep} records")), "{plain:?}");
    let anchored = verify(&cut, true);
    assert_eq!(anchored.status, 1, "{anchored:?}");
    assert!(
        anchored.stderr.contains(&format!(
            "does not hold the checkpoint: record {}: is missing",
            keep + 1
        )),
        "{anchored:?}"
    );

    // A rewritten record at the checkpoint's count (re-sealed: the chain itself is intact).
    let rewritten = copy_store(&data, |db| {
        let audit = db.open_tree("audit").unwrap();
        let line = audit.get(records.to_be_bytes()).unwrap().unwrap();
        let mut record: Value = serde_json::from_slice(&line).unwrap();
        record["hash"] = Value::String("f".repeat(64));
        audit
            .insert(records.to_be_bytes(), serde_json::to_vec(&record).unwrap())
            .unwrap();
    });
    let changed = verify(&rewritten.path().join("data"), true);
    assert_eq!(changed.status, 1, "{changed:?}");
    assert!(
        changed.stderr.contains(&format!("record {records}")),
        "{changed:?}"
    );
    // A checkpoint whose signature does not match the key: refused before the chain is read.
    let other: PathBuf = dir.path().join("other.pub");
    std::fs::write(&other, std::fs::read_to_string(ca.ca_pub()).unwrap()).unwrap();
    let wrong_key = jitca_offline(&[
        "audit".as_ref(),
        "verify".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--checkpoint".as_ref(),
        checkpoint.as_os_str(),
        "--key".as_ref(),
        other.as_os_str(),
    ]);
    assert_eq!(wrong_key.status, 1);
    assert!(
        wrong_key.stderr.contains("does not verify"),
        "{wrong_key:?}"
    );
}
