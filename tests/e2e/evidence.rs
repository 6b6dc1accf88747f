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
    assert!(
        lines[2].starts_with("head ") && lines[2].len() == 5 + 64,
        "{text}"
    );
    assert!(lines[3].starts_with("time 20"), "{text}");
    assert!(sig.trim_end().ends_with("-----END SSH SIGNATURE-----"));

    let dir = tempfile::tempdir().unwrap();
    let accepted = ssh_keygen_verify(dir.path(), &key_line, text.as_bytes(), &sig);
    assert_eq!(accepted.status, 0, "{accepted:?}");
    assert!(
        accepted.stdout.contains("Good \"jitca-audit\" signature"),
        "{accepted:?}"
    );
    // One byte changed: refused.
    let mut changed = text.clone().into_bytes();
    let at = changed.iter().position(|b| b.is_ascii_digit()).unwrap();
    changed[at] = if changed[at] == b'9' {
        b'1'
    } else {
        changed[at] + 1
    };
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
    // Where it cannot be made, the daemon still starts, says so, and checkpoints are off.
    assert_eq!(ca.stop(), 0);
    let config = std::fs::read_to_string(&ca.config).unwrap();
    std::fs::write(
        &ca.config,
        config.replace(
            "data_dir: data\n",
            "data_dir: data\naudit_key: nowhere/audit_ed25519\n",
        ),
    )
    .unwrap();
    ca.start_again();
    assert!(
        ca.log
            .lock()
            .unwrap()
            .contains("cannot make the audit signing key"),
        "{}",
        ca.log.lock().unwrap()
    );
    ca.ssh(&team.ivy, "audit checkpoint", None)
        .refused("no audit key");
    assert_eq!(ca.stop(), 0);
    std::fs::write(&ca.config, config).unwrap();
    ca.start_again();
    // A key others may read is refused by `jitca check`, like the CA key.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = run(
        Command::new(JITCA)
            .arg("check")
            .arg("--config")
            .arg(&ca.config),
        None,
    );
    assert_eq!(check.status, 1, "{check:?}");
    assert!(check.stderr.contains("audit_key"), "{check:?}");
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
    assert!(
        plain.stdout.contains(&format!("{keep} records")),
        "{plain:?}"
    );
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

/// The team's config with a break-glass rule, a 3 s pending_ttl (for a lapse) and a 1 h
/// checkpoint interval.
fn report_config(team: &Team) -> String {
    team.config("3s").replace(
        "auditors: [audit]\n",
        "\x20 - name: dev-glass\n    requesters: [dev]\n    hosts: [web]\n    logins: [root]\n    max_duration: 30m\n    break_glass: true\n    approvers: [sre]\n\
         auditors: [audit]\n",
    )
}

const HOSTILE: &str = "INC-1 <script>alert(\"x\")</script> & 'quoted' <img src=x onerror=alert(1)>";

/// Waits until the audit log holds an event of `kind` about `id`.
fn wait_event(ca: &Ca, who: &Person, id: &str, kind: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ca
        .audit_json(who, &format!("--request {id}"))
        .iter()
        .any(|e| e["event"] == kind)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} record for {id}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// A known history: A approved, used, done and reviewed (its reason hostile); B denied;
/// C lapsed; D break-glass (live); E issued then revoked; F issued and live; one failed
/// authentication. Returns the ids A..F.
fn known_history(team: &Team, ca: &Ca) -> Vec<String> {
    let a = id_of(&ca.request(
        &team.alice,
        &format!(
            "web1 --as root --for 1h --no-wait --reason {}",
            shlex_quote(HOSTILE)
        ),
    ));
    ca.ssh(&team.bob, &format!("approve {a}"), None).ok();
    let cert = ca.ssh(&team.alice, &format!("get {a}"), None);
    cert.ok();
    let sshd = Sshd::start("web1", &ca.ca_pub(), &["root"], "");
    let cert = save_cert(team.dir.path(), "alice-a", &cert.stdout);
    sshd.login("root", &team.alice.key, &cert).ok();
    ca.ssh(&team.ivy, "usage --sshd-log -", Some(sshd.log().as_bytes()))
        .ok();
    ca.ssh(&team.alice, &format!("done {a}"), None).ok();
    ca.ssh(
        &team.ivy,
        &format!("review {a} --outcome ok --note matches the ticket"),
        None,
    )
    .ok();

    let b = id_of(&ca.request(
        &team.alice,
        "web2 --as root --for 1h --no-wait --reason INC-2 deploy",
    ));
    ca.ssh(
        &team.carol,
        &format!("deny {b} --reason not during the freeze"),
        None,
    )
    .ok();
    let c = id_of(&ca.request(
        &team.alice,
        "web2 --as nobody --for 1h --no-wait --reason INC-3 anyone?",
    ));
    wait_event(ca, &team.ivy, &c, "lapsed");
    let d = ca.request(
        &team.alice,
        "web2 --as root --for 10m --reason INC-4 site down --break-glass",
    );
    d.ok();
    let d = d
        .stderr
        .split("request ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ';']).next())
        .unwrap_or_else(|| panic!("no request id in {d:#?}"))
        .to_string();
    let e = id_of(&ca.request(
        &team.alice,
        "lab1 --as root --for 20m --no-wait --reason INC-5 lab",
    ));
    ca.ssh(
        &team.ivy,
        &format!("revoke {e} --reason laptop stolen"),
        None,
    )
    .ok();
    let f = id_of(&ca.request(
        &team.alice,
        "lab1 --as root --for 30m --no-wait --reason INC-6 lab",
    ));
    // One connection that never authenticates.
    let stranger = ca.ssh(&team.mallory, "whoami", None);
    assert_ne!(stranger.status, 0);
    wait_until(|| {
        ca.audit_json(&team.ivy, "")
            .iter()
            .any(|e| e["event"] == "auth_failed")
    });
    vec![a, b, c, d, e, f]
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        thread::sleep(Duration::from_millis(200));
    }
}

/// Quotes `text` for the daemon's shell-like split of the command line.
fn shlex_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The JSON report's totals and grants, checked against the known history.
fn check_known_report(report: &Value, ids: &[String]) {
    let [a, b, c, d, e, f] = ids else {
        panic!("six ids")
    };
    assert_eq!(report["version"], 1);
    assert_eq!(report["chain"]["intact"], true);
    assert!(report["chain"]["records"].as_u64().unwrap() > 20);
    assert_eq!(report["chain"]["head"].as_str().unwrap().len(), 64);
    assert_eq!(
        report["totals"],
        serde_json::json!({
            "requested": 6, "issued": 4, "denied": 1, "lapsed": 1, "revoked": 2,
            "break_glass": 1, "unreviewed": 1, "unused": 1, "reviewed": 1,
            "failed_authentications": 1,
        }),
        "{report:#}"
    );
    let grants = report["grants"].as_array().unwrap();
    let ids_in: Vec<&str> = grants.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids_in, [a.as_str(), d, e, f]);
    let grant_a = &grants[0];
    assert_eq!(grant_a["requester"], "alice");
    assert_eq!(grant_a["approvers"], serde_json::json!(["bob"]));
    assert_eq!(grant_a["hosts"], serde_json::json!(["web1"]));
    assert_eq!(grant_a["logins"], serde_json::json!(["root"]));
    assert_eq!(grant_a["reason"], HOSTILE);
    assert_eq!(grant_a["rule"], "dev-web");
    assert!(grant_a["serial"].as_u64().unwrap() > 0);
    assert!(grant_a["issued_at"].is_string() && grant_a["valid_before"].is_string());
    assert_eq!(grant_a["ended"], "done");
    assert_eq!(grant_a["ended_by"], "alice");
    assert_eq!(grant_a["used"], true);
    assert_eq!(grant_a["logins_seen"], 1);
    assert_eq!(grant_a["review"]["by"], "ivy");
    assert_eq!(grant_a["review"]["outcome"], "ok");
    assert_eq!(grant_a["review"]["note"], "matches the ticket");
    let grant_d = &grants[1];
    assert_eq!(grant_d["break_glass"], true);
    assert_eq!(grant_d["approvers"], serde_json::json!([]));
    assert_eq!(grant_d["ended"], "live");
    let grant_e = &grants[2];
    assert_eq!(grant_e["ended"], "revoked");
    assert_eq!(grant_e["ended_by"], "ivy");
    assert_eq!(grant_e["end_reason"], "laptop stolen");
    assert_eq!(grant_e["used"], false);
    assert!(grant_e["review"].is_null());
    assert_eq!(grants[3]["ended"], "live");
    assert_eq!(report["break_glass"], serde_json::json!([d]));
    assert_eq!(report["unreviewed"], serde_json::json!([e]));
    assert_eq!(report["unused"], serde_json::json!([e]));
    assert_eq!(report["denials"][0]["id"], b.as_str());
    assert_eq!(report["denials"][0]["by"], "carol");
    assert_eq!(
        report["denials"][0]["decision_reason"],
        "not during the freeze"
    );
    assert_eq!(report["lapses"][0]["id"], c.as_str());
    let revocations: Vec<(&str, &str)> = report["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(revocations, [(a.as_str(), "done"), (e.as_str(), "revoked")]);
    let rules: Vec<&str> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        ["dev-web", "dev-pair", "dev-db", "dev-lab", "dev-glass"]
    );
}

/// Where the tests keep what a person may want to look at: target/evidence/.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/evidence");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_known_history_gives_the_same_exact_report_online_and_offline() {
    let team = Team::new();
    let mut ca = Ca::start(&report_config(&team));
    let ids = known_history(&team, &ca);

    // Auditors only: refused before anything is read, exit 1, one line.
    ca.ssh(&team.alice, "report", None).refused("only auditors");
    ca.ssh(&team.bob, "report --format json", None)
        .refused("only auditors");
    ca.ssh(&team.ivy, "report --format pdf", None)
        .refused("unknown format");

    let online = ca.ssh(&team.ivy, "report --since 1d --format json", None);
    online.ok();
    let online: Value = serde_json::from_str(&online.stdout).expect("one JSON object");
    check_known_report(&online, &ids);
    assert!(online["period"]["since"].is_string() && online["period"]["until"].is_string());
    // A period that ended before anything happened holds nothing.
    let empty = ca.ssh(&team.ivy, "report --until 2000-01-01 --format json", None);
    empty.ok();
    let empty: Value = serde_json::from_str(&empty.stdout).unwrap();
    assert_eq!(empty["totals"]["requested"], 0);
    assert_eq!(empty["grants"], serde_json::json!([]));
    let text = ca.ssh(&team.ivy, "report", None);
    text.ok();
    assert!(text.stdout.contains("grants (4):"), "{text:?}");
    assert!(text.stdout.contains("chain: intact"), "{text:?}");

    assert_eq!(ca.stop(), 0);
    let offline = run(
        Command::new(JITCA)
            .args(["report", "--format", "json", "--since", "1d", "--config"])
            .arg(&ca.config),
        None,
    );
    offline.ok();
    let offline: Value = serde_json::from_str(&offline.stdout).unwrap();
    check_known_report(&offline, &ids);
    assert_eq!(offline["totals"], online["totals"]);
    assert_eq!(offline["grants"], online["grants"]);
    assert_eq!(offline["rules"], online["rules"]);
    // From the store alone: the same evidence, the rules unknown.
    let data_only = run(
        Command::new(JITCA)
            .args(["report", "--format", "json", "--data"])
            .arg(ca.data()),
        None,
    );
    data_only.ok();
    let data_only: Value = serde_json::from_str(&data_only.stdout).unwrap();
    assert_eq!(data_only["grants"], online["grants"]);
    assert_eq!(data_only["rules_known"], false);
}

#[test]
fn the_html_report_renders_in_chromium_self_contained_and_escaped() {
    let team = Team::new();
    let mut ca = Ca::start(&report_config(&team));
    let ids = known_history(&team, &ca);
    let online = ca.ssh(&team.ivy, "report --format html", None);
    online.ok();
    assert_eq!(ca.stop(), 0);
    let offline = run(
        Command::new(JITCA)
            .args(["report", "--format", "html", "--config"])
            .arg(&ca.config),
        None,
    );
    offline.ok();
    let escaped = "INC-1 &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quoted&#39; \
                   &lt;img src=x onerror=alert(1)&gt;";
    for html in [&online.stdout, &offline.stdout] {
        // What users typed is text, not markup.
        assert!(html.contains(escaped));
        // Self-contained: apart from that text, nothing that could load from anywhere, and
        // no script at all.
        let lower = html.replace(escaped, "").to_lowercase();
        for remote in [
            "<script", "http://", "https://", "src=", "href=", "@import", "url(",
        ] {
            assert!(!lower.contains(remote), "{remote} in the HTML");
        }
    }
    let dir = artifacts();
    let page = dir.join("report.html");
    std::fs::write(&page, &offline.stdout).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let chromium = |extra: &[&str]| {
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()));
        run(&mut cmd, None)
    };
    let dom = chromium(&["--dump-dom"]);
    assert_eq!(dom.status, 0, "{dom:?}");
    let dom = dom.stdout;
    // The grants table, one row per grant, and the charts as SVG.
    assert!(dom.contains("<table class=\"grants\">"), "{dom}");
    let grants_section = dom
        .split("<section id=\"grants\">")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .unwrap();
    assert_eq!(
        grants_section.matches("<tr").count(),
        1 + 4,
        "a head row and 4 grants"
    );
    for id in [&ids[0], &ids[3], &ids[4], &ids[5]] {
        assert!(grants_section.contains(id.as_str()), "{id}");
    }
    assert_eq!(dom.matches("<svg").count(), 5, "five charts");
    assert!(dom.matches("<rect class=\"bar\"").count() >= 5);
    // The parsed page holds the hostile reason as text: no element came of it.
    assert!(!dom.contains("<script") && !dom.contains("<img"));
    assert!(
        dom.contains("&lt;script&gt;alert(\"x\")&lt;/script&gt;"),
        "{dom}"
    );
    assert!(dom.contains("id=\"chain-status\""));

    let shot = dir.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,1600",
    ]);
    assert_eq!(out.status, 0, "{out:?}");
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{}",
        png.len()
    );
}
