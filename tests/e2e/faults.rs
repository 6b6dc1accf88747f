//! Access ends when it must, also when something fails: a `krl_path` that cannot be written,
//! a key on stdin that is not the requester's own, `audit verify` while requests land, and the
//! wrong-code limit across a restart and racing connections.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use jitca_mfa::{Secret, step_of};

use crate::harness::*;

/// The `krl      ...` line of an operator's `whoami`.
fn krl_line(ca: &Ca, operator: &Person) -> String {
    let out = ca.ssh(operator, "whoami", None);
    out.ok();
    out.stdout
        .lines()
        .find(|l| l.starts_with("krl "))
        .unwrap_or_else(|| panic!("no krl line in an operator's whoami: {out:?}"))
        .to_string()
}

#[test]
fn krl_path_unwritable_still_serves_the_revocation() {
    let team = Team::new();
    // krl_path's parent is a regular file: every write fails (ENOTDIR).
    let hosts = tempfile::tempdir().unwrap();
    let blocker = hosts.path().join("blocker");
    std::fs::write(&blocker, "not a folder\n").unwrap();
    let krl_path = blocker.join("krl");
    let config = team.config("1h").replace(
        "data_dir: data\n",
        &format!("data_dir: data\nkrl_path: \"{}\"\n", krl_path.display()),
    ) + "operators: [sre]\n";
    assert!(config.contains("krl_path: "));
    // The failed write at start does not stop the daemon.
    let ca = Ca::start(&config);
    ca.ssh(&team.alice, "whoami", None).ok();
    assert!(!krl_path.exists());

    // The KRL served over the control channel, as a host's refresh fetches it.
    let fetch_krl = |to: &Path| {
        let out = ssh_client(&team.web1.key)
            .args(["-p", &ca.port.to_string(), "jitca@127.0.0.1", "krl"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.starts_with(b"SSHKRL\n\0"), "{out:?}");
        std::fs::write(to, &out.stdout).unwrap();
    };
    let served = team.dir.path().join("served.krl");
    fetch_krl(&served);
    let lab = Sshd::start(
        "lab1",
        &ca.ca_pub(),
        &["root"],
        &format!("RevokedKeys {}", served.display()),
    );
    let (id, cert) = lab_cert(&ca, &team, "blocked");
    lab.login("root", &team.alice.key, &cert).ok();

    let done = ca.ssh(&team.alice, &format!("done {id}"), None);
    done.ok();
    assert!(done.stderr.contains("next KRL refresh"), "{done:?}");
    assert_eq!(ca.show_json(&team.ivy, &id)["state"], "revoked");

    // The served KRL has the revocation all the same, and sshd enforces it.
    fetch_krl(&served);
    assert!(revoked_by(&served, &cert), "the served KRL revokes it");
    let refused = lab.login("root", &team.alice.key, &cert);
    assert_eq!(refused.status, 255, "{refused:?}");
    assert!(lab.log().contains("revoked"), "{}", lab.log());
    assert!(!krl_path.exists());

    // Loud: in the log at error level, and in an operator's whoami.
    wait_for("the failed write in the log", || {
        ca.log.lock().unwrap().contains("cannot write krl_path")
    });
    let log = ca.log.lock().unwrap().clone();
    assert!(
        log.lines()
            .any(|l| l.contains("cannot write krl_path") && l.contains("ERROR")),
        "{log}"
    );
    let line = krl_line(&ca, &team.bob);
    assert!(line.contains("NOT WRITTEN since "), "{line}");
    assert!(
        line.contains(&krl_path.display().to_string()),
        "{line} names the path"
    );
    // Not for non-operators.
    let alice = ca.ssh(&team.alice, "whoami", None);
    alice.ok();
    assert!(!alice.stdout.contains("NOT WRITTEN"), "{alice:?}");

    // The folder appears: the sweeper writes the file within a few seconds.
    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    wait_for("krl_path to be written again", || {
        krl_path.exists()
            && ca.log.lock().unwrap().contains("krl_path written again")
            && krl_line(&ca, &team.bob).contains("written")
    });
    assert!(revoked_by(&krl_path, &cert), "the file revokes it");
    let line = krl_line(&ca, &team.bob);
    assert!(
        line.ends_with(&format!("; krl_path {} written", krl_path.display())),
        "{line}"
    );
    assert!(!line.contains("NOT WRITTEN"), "{line}");
    // The file is what `krl` serves.
    fetch_krl(&served);
    assert_eq!(
        std::fs::read(&served).unwrap(),
        std::fs::read(&krl_path).unwrap()
    );
}

#[test]
fn the_key_on_stdin_must_be_the_requesters_own() {
    let team = Team::new();
    let mut ca = Ca::start(&team.config("1h"));
    let lab = "request lab1 --as root --for 30m --reason not-mine";
    let count = |ca: &Ca| ca.list_json(&team.ivy).len();
    let sent_by = |ca: &Ca, who: &Person, key: &str| ca.ssh(who, lab, Some(key.as_bytes()));
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();

    let ca_key = read(ca.ca_pub());
    let host_key = read(ca.dir.path().join("host_ed25519.pub"));
    sent_by(&ca, &team.alice, &ca_key).refused("the CA's key");
    sent_by(&ca, &team.alice, &host_key).refused("host key");
    sent_by(&ca, &team.alice, &team.bob.public_key()).refused("registered to another person");
    sent_by(&ca, &team.alice, &team.web1.public_key()).refused("registered to another person");
    sent_by(&ca, &team.frank, &team.alice.public_key()).refused("registered to another person");
    assert_eq!(count(&ca), 0, "nothing was created");
    let refused_records = ca
        .audit_json(&team.ivy, "")
        .into_iter()
        .filter(|e| e["event"] == "requested" || e["event"] == "issued")
        .count();
    assert_eq!(refused_records, 0);

    // Their own key: issued.
    let own = ca.request(&team.alice, "lab1 --as root --for 30m --reason mine");
    own.ok();
    let cert = save_cert(team.dir.path(), "own", &own.stdout);
    assert!(keygen_l(&cert).contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"));
    assert_eq!(count(&ca), 1);

    // During a CA key rotation the earlier key is the CA's too.
    ca.stop();
    keygen(&ca.dir.path().join("ca2"), "jitca-ca-2");
    let config = read(ca.config.clone())
        .replace("ca_key: ca\n", "ca_key: ca2\nprevious_ca_keys: [ca.pub]\n");
    std::fs::write(&ca.config, config).unwrap();
    ca.start_again();
    sent_by(&ca, &team.alice, &ca_key).refused("the CA's key");
    sent_by(&ca, &team.alice, &read(ca.dir.path().join("ca2.pub"))).refused("the CA's key");
    sent_by(&ca, &team.alice, &host_key).refused("host key");
    assert_eq!(count(&ca), 1, "nothing more was created");
    ca.request(&team.alice, "lab1 --as root --for 30m --reason mine-again")
        .ok();
    assert_eq!(count(&ca), 2);
}

#[test]
fn audit_verify_never_reports_a_break_while_requests_land() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let port = ca.port;
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let requester = {
        let (stop, made, alice) = (stop.clone(), made.clone(), team.alice.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut failures = Vec::new();
            for n in 0..200 {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let out = request_at(
                    port,
                    &alice,
                    &format!("lab1 --as root --for 30m --reason load-{n}"),
                );
                if out.status == 0 {
                    made.fetch_add(1, Ordering::SeqCst);
                } else {
                    failures.push(out);
                }
            }
            failures
        })
    };
    // Let the first requests land, so the verifies overlap them.
    wait_for("the first request", || made.load(Ordering::SeqCst) > 0);
    let before = made.load(Ordering::SeqCst);
    let mut broken = Vec::new();
    for _ in 0..40 {
        let out = ca.ssh(&team.ivy, "audit verify", None);
        if out.status != 0 || !out.stdout.starts_with("audit log intact: ") {
            broken.push(out);
        }
    }
    let during = made.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    let failures = requester.join().unwrap();
    assert!(failures.is_empty(), "requests failed: {failures:#?}");
    assert!(broken.is_empty(), "audit verify reported: {broken:#?}");
    assert!(
        during > 0,
        "no request landed while audit verify ran; the test proved nothing"
    );
    let last = ca.ssh(&team.ivy, "audit verify", None);
    last.ok();
    assert!(last.stdout.starts_with("audit log intact: "), "{last:?}");
    eprintln!(
        "{} requests, {during} of them during 40 verifies",
        made.load(Ordering::SeqCst)
    );
}

/// The team's config with `dev-web` needing a requester's one-time code.
fn mfa_config(team: &Team) -> String {
    let config = team.config("1h");
    let web = "  - name: dev-web\n    requesters: [dev]\n";
    assert!(config.contains(web));
    config.replace(web, &format!("{web}    requester_mfa: totp\n")) + "operators: [sre]\n"
}

/// A script printing `answer`, for `SSH_ASKPASS`.
fn askpass(dir: &Path, name: &str, answer: &str) -> PathBuf {
    let path = dir.join(format!("askpass-{name}.sh"));
    std::fs::write(&path, format!("#!/bin/sh\nprintf '%s\\n' '{answer}'\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

/// `ssh` as `who` on `port`, answering the code prompt through `script`.
fn ssh_code(port: u16, who: &Person, script: &Path, command: &str, stdin: Option<&[u8]>) -> Out {
    ssh_answering(port, who, script, command, stdin)
}

/// Enrols `who` and confirms with the current code: their secret and the step confirmed.
fn enrol(ca: &Ca, who: &Person) -> (Secret, u64) {
    let out = ca.ssh(who, "mfa enroll", None);
    out.ok();
    let secret = jitca_mfa::secret_of_uri(out.stdout.trim()).expect("a secret in the URI");
    let step = step_of(jitca_mfa::now());
    ca.ssh(who, &format!("mfa confirm {}", secret.code(step)), None)
        .ok();
    (secret, step)
}

/// A six-digit code no step near now has.
fn wrong_code(secret: &Secret) -> String {
    let step = step_of(jitca_mfa::now());
    let near: Vec<String> = (step - 3..=step + 3).map(|s| secret.code(s)).collect();
    (0..)
        .map(|n: u32| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// A code that is right now and fresh after `confirmed` was used.
fn right_code(secret: &Secret, confirmed: u64) -> String {
    secret.code(step_of(jitca_mfa::now()).max(confirmed + 1))
}

/// The `why` of each `mfa_failed` record of `user`.
fn mfa_failures(ca: &Ca, team: &Team, user: &str) -> Vec<String> {
    ca.audit_json(&team.ivy, &format!("--user {user}"))
        .into_iter()
        .filter(|r| r["event"] == "mfa_failed")
        .map(|r| r["details"]["why"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_wrong_code_limit_survives_a_restart() {
    let team = Team::new();
    let mut ca = Ca::start(&mfa_config(&team));
    let scripts = tempfile::tempdir().unwrap();
    let web = "request web1 --as root --for 1h --reason INC-11 --no-wait";

    // alice: five wrong codes one after the other.
    let (alice, alice_step) = enrol(&ca, &team.alice);
    let alice_key = team.alice.public_key();
    let wrong = askpass(scripts.path(), "alice-wrong", &wrong_code(&alice));
    for _ in 0..5 {
        ssh_code(
            ca.port,
            &team.alice,
            &wrong,
            web,
            Some(alice_key.as_bytes()),
        )
        .refused("the one-time code was wrong");
    }
    assert_eq!(mfa_failures(&ca, &team, "alice"), ["wrong code"; 5]);

    // frank: eight connections at once, each with a wrong code. Any code opens the
    // connection; the stored limit lets five be checked, whatever the order.
    let (frank, frank_step) = enrol(&ca, &team.frank);
    let frank_wrong = askpass(scripts.path(), "frank-wrong", &wrong_code(&frank));
    let port = ca.port;
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let (frank, script) = (team.frank.clone(), frank_wrong.clone());
            thread::spawn(move || ssh_code(port, &frank, &script, "whoami", None))
        })
        .collect();
    for out in racing {
        out.join().unwrap().ok();
    }
    let mut whys = mfa_failures(&ca, &team, "frank");
    whys.sort();
    assert_eq!(
        whys,
        [
            vec!["too many wrong codes: not checked"; 3],
            vec!["wrong code"; 5]
        ]
        .concat(),
        "eight racing wrong codes: five checked, three not"
    );

    // SIGKILL: the wrong codes were durable before the connections went on.
    ca.restart_hard();

    // The right code is not even looked at.
    let right = askpass(
        scripts.path(),
        "alice-right",
        &right_code(&alice, alice_step),
    );
    ssh_code(
        ca.port,
        &team.alice,
        &right,
        web,
        Some(alice_key.as_bytes()),
    )
    .refused("too many wrong codes; try again in 5 minutes");
    let frank_key = team.frank.public_key();
    let right = askpass(
        scripts.path(),
        "frank-right",
        &right_code(&frank, frank_step),
    );
    ssh_code(
        ca.port,
        &team.frank,
        &right,
        web,
        Some(frank_key.as_bytes()),
    )
    .refused("too many wrong codes");
    assert_eq!(
        mfa_failures(&ca, &team, "alice").last().unwrap(),
        "too many wrong codes: not checked"
    );
    assert!(ca.list_json(&team.ivy).is_empty(), "nothing was requested");
}
