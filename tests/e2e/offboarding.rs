//! Access ends when it must: removing a group's last member, connections held across a
//! reload, approvals of people who left, and reloads racing issuance.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The config entry of `who` as `Team::config` writes it.
fn entry(who: &Person, groups: &str) -> String {
    format!(
        "  {}:\n    keys: [\"{}\"]\n    groups: [{groups}]\n",
        who.name,
        who.public_key()
    )
}

/// Writes `config` and reloads it (SIGHUP); returns once the daemon says it is in force.
fn reload(ca: &Ca, config: &str) {
    let count = |ca: &Ca| ca.log.lock().unwrap().matches("config reloaded").count();
    let before = count(ca);
    std::fs::write(&ca.config, config).unwrap();
    ca.signal("HUP");
    wait_for("the reload", || count(ca) > before);
}

/// `jitca check --config FILE`.
fn check(config: &Path) -> Out {
    run(
        Command::new(JITCA).arg("check").arg("--config").arg(config),
        None,
    )
}

/// The host side as the timer runs it: `deploy/jitca-krl-refresh` with the host's own key.
struct Host {
    dir: tempfile::TempDir,
    krl: PathBuf,
}

impl Host {
    fn new(ca: &Ca) -> Host {
        let dir = tempfile::tempdir().unwrap();
        pin_ca_host_key(ca, dir.path());
        let krl = dir.path().join("jitca.krl");
        Host { dir, krl }
    }

    fn refresh(&self, ca: &Ca, key: &Path) {
        run(
            Command::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/jitca-krl-refresh"
            ))
            .env("JITCA_CA", "127.0.0.1")
            .env("JITCA_PORT", ca.port.to_string())
            .env("JITCA_IDENTITY", key)
            .env("JITCA_KNOWN_HOSTS", self.dir.path().join("known_hosts"))
            .env("JITCA_KRL", &self.krl)
            .env("JITCA_END_SESSIONS", "no"),
            None,
        )
        .ok();
    }
}

#[test]
fn removing_the_last_member_of_a_group_revokes_their_certificate() {
    let team = Team::new();
    // Alice is dev's only member (frank is sre only here).
    let config = team
        .config("1h")
        .replace("groups: [sre, dev]", "groups: [sre]");
    let ca = Ca::start(&config);
    let host = Host::new(&ca);
    host.refresh(&ca, &team.web1.key);
    let lab = Sshd::start(
        "lab1",
        &ca.ca_pub(),
        &["root"],
        &format!("RevokedKeys {}", host.krl.display()),
    );
    let out = ca.request(&team.alice, "lab1 --as root --for 30m --reason last one");
    out.ok();
    let cert = save_cert(team.dir.path(), "alice_ed25519", &out.stdout);
    lab.login("root", &team.alice.key, &cert).ok();
    let id = ca.list_json(&team.alice)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 1h --reason pending --no-wait",
    ));

    // Alice leaves: dev is empty now. `check` warns, naming the group and its rules, and
    // passes; the reload goes through.
    let without = config.replace(&entry(&team.alice, "dev"), "");
    assert_ne!(without, config);
    let edited = ca.dir.path().join("edited.yaml");
    std::fs::write(&edited, &without).unwrap();
    let checked = check(&edited);
    assert_eq!(checked.status, 0, "{checked:?}");
    let warnings: Vec<&str> = checked.stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{checked:?}");
    assert!(
        warnings[0].contains("warning: group dev has no members"),
        "{checked:?}"
    );
    for rule in ["dev-web", "dev-pair", "dev-db", "dev-lab"] {
        assert!(warnings[0].contains(&format!("rule {rule}")), "{checked:?}");
    }
    reload(&ca, &without);
    assert!(!ca.log.lock().unwrap().contains("config reload refused"));
    assert!(ca.log.lock().unwrap().contains("group dev has no members"));
    assert_eq!(ca.show_json(&team.ivy, &id)["state"], "revoked");
    assert_eq!(ca.show_json(&team.ivy, &pending)["state"], "denied");

    // The host's next refresh makes sshd refuse it.
    lab.login("root", &team.alice.key, &cert).ok();
    host.refresh(&ca, &team.web1.key);
    assert_eq!(lab.login("root", &team.alice.key, &cert).status, 255);
    assert_eq!(ca.ssh(&team.alice, "whoami", None).status, 255);
}

/// `ssh -o ControlMaster=yes -N`: one authenticated connection, held.
fn control_master(ca: &Ca, who: &Person, socket: &Path) -> Child {
    let mut cmd = ssh_client(&who.key);
    cmd.args(["-p", &ca.port.to_string(), "-N", "-o", "ControlMaster=yes"])
        .arg("-o")
        .arg(format!("ControlPath={}", socket.display()))
        .arg("jitca@127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    wait_for("the control master", || socket.exists());
    child
}

/// A command over the held connection: no new authentication.
fn over(ca: &Ca, who: &Person, socket: &Path, command: &str) -> Out {
    ca.ssh_with(
        who,
        &["-o", &format!("ControlPath={}", socket.display())],
        command,
        None,
    )
}

#[test]
fn a_connection_held_across_a_reload_is_checked_again_on_every_command() {
    let team = Team::new();
    let config = team.config("1h");
    let ca = Ca::start(&config);
    let socket = team.dir.path().join("alice.sock");
    let mut master = control_master(&ca, &team.alice, &socket);
    over(&ca, &team.alice, &socket, "whoami").ok();

    // Bob watches for requests to approve.
    let mut watch = ssh_client(&team.bob.key);
    watch
        .args(["-p", &ca.port.to_string(), "jitca@127.0.0.1", "watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut watch = watch.spawn().unwrap();
    let mut watch_err = watch.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = watch_err.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(text.clone());
        }
    });
    let mut seen = String::new();
    wait_for("bob's watch to start", || {
        while let Ok(t) = rx.try_recv() {
            seen = t;
        }
        seen.contains("watching requests")
    });

    // Alice's key is replaced, bob leaves.
    let fresh = Person::new(team.dir.path(), "alice2");
    let changed = config
        .replace(
            &entry(&team.alice, "dev"),
            &entry(&fresh, "dev").replace("alice2:", "alice:"),
        )
        .replace(&entry(&team.bob, "sre"), "");
    reload(&ca, &changed);

    let refused = over(&ca, &team.alice, &socket, "whoami");
    assert_eq!(refused.status, 1, "{refused:?}");
    let lines: Vec<&str> = refused.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{refused:?}");
    assert!(
        lines[0].contains("no longer registered to alice"),
        "{refused:?}"
    );
    let request = over(
        &ca,
        &team.alice,
        &socket,
        "request lab1 --as root --for 5m --reason held --no-wait",
    );
    assert_eq!(request.status, 1, "{request:?}");
    assert!(ca.list_json(&team.ivy).is_empty(), "nothing was requested");
    // Her new key works; the old one is refused at the door.
    ca.ssh(&fresh, "whoami", None).ok();
    assert_eq!(ca.ssh(&team.alice, "whoami", None).status, 255);

    // Bob's watch ends, with one line saying why.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "bob's watch still runs");
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1));
    thread::sleep(Duration::from_millis(200));
    while let Ok(t) = rx.try_recv() {
        seen = t;
    }
    assert!(seen.contains("no longer registered to bob"), "{seen}");
    let _ = master.kill();
    let _ = master.wait();
}

#[test]
fn approvals_count_only_while_their_approvers_are_eligible() {
    let team = Team::new();
    let config = team.config("1h");
    let ca = Ca::start(&config);
    // dev-pair needs two approvals from sre (bob, carol, frank).
    let pair = id_of(&ca.request(
        &team.alice,
        "pair1 --as root --for 30m --reason INC-7 pair --no-wait",
    ));
    ca.ssh(&team.bob, &format!("approve {pair}"), None).ok();
    let web = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 30m --reason no ticket --no-wait",
    ));

    // Bob leaves; dev-web now asks for a ticket in the reason.
    let changed = config.replace(&entry(&team.bob, "sre"), "").replace(
        "    logins: [root, nobody]\n",
        "    logins: [root, nobody]\n    reason_pattern: \"^INC-[0-9]+\"\n",
    );
    assert!(changed.contains("reason_pattern"));
    reload(&ca, &changed);

    // Bob's approval no longer counts: carol's is the first of two.
    ca.ssh(&team.carol, &format!("approve {pair}"), None).ok();
    let shown = ca.show_json(&team.ivy, &pair);
    assert_eq!(shown["state"], "pending", "{shown}");
    assert_eq!(shown["approvals"], serde_json::json!(["carol"]));
    let approved = ca
        .audit_json(&team.ivy, "--user carol")
        .into_iter()
        .find(|e| e["event"] == "approved")
        .unwrap();
    assert_eq!(
        approved["details"]["dropped_approvals"],
        serde_json::json!(["bob"])
    );
    ca.ssh(&team.frank, &format!("approve {pair}"), None).ok();
    let issued = ca.show_json(&team.ivy, &pair);
    assert_eq!(issued["state"], "issued", "{issued}");
    let cert = save_cert(
        team.dir.path(),
        "pair",
        &ca.ssh(&team.alice, &format!("get {pair}"), None)
            .ok()
            .stdout,
    );
    let listed = keygen_l(&cert);
    assert!(
        listed.contains(&format!("jitca:{pair}:alice:approvers=carol,frank")),
        "{listed}"
    );

    // The pending web1 request no longer meets its rule: approving it is refused.
    let refused = ca.ssh(&team.carol, &format!("approve {web}"), None);
    refused.refused("no longer meets rule dev-web");
    assert_eq!(ca.show_json(&team.ivy, &web)["state"], "pending");
}

#[test]
fn a_reload_never_leaves_a_removed_person_an_issued_certificate() {
    let team = Team::new();
    let config = team.config("1h");
    let ca = Ca::start(&config);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Alice asks for lab certificates (issued at once) as fast as she can, while she is
    // removed from the config.
    let requester = {
        let stop = stop.clone();
        let port = ca.port;
        let alice = team.alice.clone();
        thread::spawn(move || {
            let mut issued = 0;
            for _ in 0..200 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let out = request_at(port, &alice, "lab1 --as root --for 30m --reason race");
                if out.status == 0 {
                    issued += 1;
                }
            }
            issued
        })
    };
    wait_for("a first certificate", || {
        !ca.list_json(&team.ivy).is_empty()
    });
    reload(&ca, &config.replace(&entry(&team.alice, "dev"), ""));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let issued = requester.join().unwrap();
    assert!(issued > 0);
    let all = ca.list_json(&team.ivy);
    assert!(all.len() >= issued, "{} < {issued}", all.len());
    for request in &all {
        assert_eq!(request["state"], "revoked", "{request}");
    }
}
