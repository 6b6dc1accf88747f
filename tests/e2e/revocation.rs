//! Revocation that stock `sshd` enforces: `done`, `revoke`, users removed from the config, the
//! KRL file and the host-side refresh.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

fn with_krl_path(config: &str) -> String {
    config.replace("data_dir: data\n", "data_dir: data\nkrl_path: krl\n")
}

/// An sshd for `host` that trusts the CA and reads the daemon's KRL file.
fn sshd_with_krl(ca: &Ca, host: &str) -> Sshd {
    let krl = ca.dir.path().join("krl");
    assert!(krl.exists(), "the daemon publishes a KRL at start");
    Sshd::start(
        host,
        &ca.ca_pub(),
        &["root"],
        &format!("RevokedKeys {}", krl.display()),
    )
}

fn krl_version(krl: &Path) -> u64 {
    let out = run(
        Command::new("ssh-keygen").args(["-Q", "-l", "-f"]).arg(krl),
        None,
    );
    out.ok();
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("# KRL version "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no version in {out:?}"))
}

#[test]
fn done_and_revoke_are_enforced_by_sshd() {
    let team = Team::new();
    let ca = Ca::start(&with_krl_path(&team.config("1h")));
    let krl = ca.dir.path().join("krl");
    let lab = sshd_with_krl(&ca, "lab1");
    let v0 = krl_version(&krl);

    let (a, cert_a) = lab_cert(&ca, &team, "first");
    let (b, cert_b) = lab_cert(&ca, &team, "second");
    lab.login("root", &team.alice.key, &cert_a).ok();
    lab.login("root", &team.alice.key, &cert_b).ok();

    // Only the requester ends their own access.
    ca.ssh(&team.bob, &format!("done {a}"), None)
        .refused("no request");
    ca.ssh(&team.ivy, &format!("done {a}"), None)
        .refused("only alice");
    let done = ca.ssh(&team.alice, &format!("done {a}"), None);
    done.ok();
    assert!(done.stderr.contains("access ended"), "{done:?}");
    assert!(revoked_by(&krl, &cert_a));
    assert!(!revoked_by(&krl, &cert_b));
    let refused = lab.login("root", &team.alice.key, &cert_a);
    assert_eq!(refused.status, 255, "{refused:?}");
    assert!(lab.log().contains("revoked"), "{}", lab.log());
    lab.login("root", &team.alice.key, &cert_b).ok();
    assert!(
        krl_version(&krl) > v0,
        "the version grows with every change"
    );
    ca.ssh(&team.alice, &format!("get {a}"), None)
        .refused("revoked");
    ca.ssh(&team.alice, &format!("done {a}"), None)
        .refused("revoked already");
    assert_eq!(ca.show_json(&team.alice, &a)["state"], "revoked");

    // A host fetches the same KRL over the control channel with its own key.
    let fetched = ssh_client(&team.web1.key)
        .args(["-p", &ca.port.to_string(), "jitca@127.0.0.1", "krl"])
        .output()
        .unwrap();
    assert!(fetched.status.success());
    assert_eq!(
        fetched.stdout,
        std::fs::read(&krl).unwrap(),
        "krl over SSH is the published file"
    );

    // Approvers of the rule and auditors revoke; others may not.
    let web = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 1h --reason web work --no-wait",
    ));
    ca.ssh(
        &team.carol,
        &format!("revoke {web} --reason too early"),
        None,
    )
    .refused("no certificate to revoke");
    ca.ssh(&team.bob, &format!("approve {web}"), None).ok();
    let web_cert = save_cert(
        team.dir.path(),
        "web",
        &ca.ssh(&team.alice, &format!("get {web}"), None).stdout,
    );
    ca.ssh(&team.dave, &format!("revoke {web} --reason mine now"), None)
        .refused("no request");
    ca.ssh(&team.carol, &format!("revoke {web}"), None)
        .usage("missing --reason");
    ca.ssh(
        &team.carol,
        &format!("revoke {web} --reason left the incident"),
        None,
    )
    .ok();
    assert!(revoked_by(&krl, &web_cert));
    ca.ssh(
        &team.ivy,
        &format!("revoke {b} --reason audit finding"),
        None,
    )
    .ok();
    assert!(revoked_by(&krl, &cert_b));
    assert_eq!(lab.login("root", &team.alice.key, &cert_b).status, 255);

    let revocations: Vec<serde_json::Value> = ca
        .audit_json(&team.ivy, "")
        .into_iter()
        .filter(|e| e["event"] == "revoked" || e["event"] == "done")
        .collect();
    let seen: Vec<(&str, &str, &str)> = revocations
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("done", "alice", "done by the requester"),
            ("revoked", "carol", "left the incident"),
            ("revoked", "ivy", "audit finding")
        ]
    );
    for e in &revocations {
        assert_eq!(e["details"]["serials"], serde_json::json!([e["serial"]]));
    }
}

#[test]
fn removing_a_user_from_the_config_revokes_their_access() {
    let team = Team::new();
    let mut ca = Ca::start(&with_krl_path(&team.config("1h")));
    let krl = ca.dir.path().join("krl");
    let lab = sshd_with_krl(&ca, "lab1");
    let (live, cert) = lab_cert(&ca, &team, "before");
    let pending = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 1h --reason pending --no-wait",
    ));
    lab.login("root", &team.alice.key, &cert).ok();

    // A config that fails the checks is refused on reload; the one in force stays.
    let good = std::fs::read_to_string(&ca.config).unwrap();
    std::fs::write(
        &ca.config,
        good.replace("hosts: [db]", "hosts: [nowhere-here]"),
    )
    .unwrap();
    ca.signal("HUP");
    wait_for("the refused reload in the log", || {
        ca.log.lock().unwrap().contains("config reload refused")
    });
    assert!(ca.log.lock().unwrap().contains("nowhere-here"));
    ca.ssh(&team.alice, "whoami", None).ok();
    lab.login("root", &team.alice.key, &cert).ok();

    // Alice leaves: her config entry goes, then SIGHUP.
    let alice_entry = format!(
        "  alice:\n    keys: [\"{}\"]\n    groups: [dev]\n",
        team.alice.public_key()
    );
    assert!(good.contains(&alice_entry));
    std::fs::write(&ca.config, good.replace(&alice_entry, "")).unwrap();
    ca.signal("HUP");
    wait_for("alice's certificate to be revoked", || {
        ca.show_json(&team.ivy, &live)["state"] == "revoked"
    });
    assert!(revoked_by(&krl, &cert));
    assert_eq!(
        lab.login("root", &team.alice.key, &cert).status,
        255,
        "sshd refuses it now"
    );
    let ended = ca.show_json(&team.ivy, &pending);
    assert_eq!(ended["state"], "denied");
    assert_eq!(ended["denied_by"], "jitca");
    assert_eq!(
        ca.ssh(&team.alice, "whoami", None).status,
        255,
        "her key is unknown now"
    );
    let reload = ca
        .audit_json(&team.ivy, "")
        .into_iter()
        .filter(|e| e["event"] == "config_reloaded")
        .collect::<Vec<_>>();
    assert_eq!(reload.len(), 2);
    assert!(
        reload[0]["details"]["result"]
            .as_str()
            .unwrap()
            .starts_with("refused")
    );
    assert_eq!(
        reload[1]["details"]["users_removed"],
        serde_json::json!(["alice"])
    );

    // Removed while the daemon was down: ended at start.
    std::fs::write(&ca.config, &good).unwrap();
    ca.signal("HUP");
    wait_for("alice to be back", || {
        ca.ssh(&team.alice, "whoami", None).status == 0
    });
    let (second, cert2) = lab_cert(&ca, &team, "again");
    ca.stop();
    std::fs::write(&ca.config, good.replace(&alice_entry, "")).unwrap();
    ca.start_again();
    assert_eq!(ca.show_json(&team.ivy, &second)["state"], "revoked");
    assert!(revoked_by(&krl, &cert2));
}

#[test]
fn the_host_refresh_installs_the_krl_and_keeps_the_last_good_one() {
    let team = Team::new();
    let mut ca = Ca::start(&team.config("1h"));
    let host = tempfile::tempdir().unwrap();
    let known_hosts = pin_ca_host_key(&ca, host.path());
    let dest = host.path().join("jitca.krl");
    let port = ca.port;
    let refresh = |known: &Path| {
        run(
            Command::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/jitca-krl-refresh"
            ))
            .env("JITCA_CA", "127.0.0.1")
            .env("JITCA_PORT", port.to_string())
            .env("JITCA_IDENTITY", &team.web1.key)
            .env("JITCA_KNOWN_HOSTS", known)
            .env("JITCA_KRL", &dest),
            None,
        )
    };
    refresh(&known_hosts).ok();
    let first = std::fs::read(&dest).unwrap();
    assert!(first.starts_with(b"SSHKRL\n\0"));

    let (id, cert) = lab_cert(&ca, &team, "refresh");
    assert!(!revoked_by(&dest, &cert));
    ca.ssh(&team.alice, &format!("done {id}"), None).ok();
    refresh(&known_hosts).ok();
    assert!(revoked_by(&dest, &cert), "the refreshed KRL revokes it");
    let good = std::fs::read(&dest).unwrap();

    // A CA we cannot verify, or cannot reach: the last good KRL stays in place.
    let wrong = host.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!("[127.0.0.1]:{} {}", ca.port, team.mallory.public_key()),
    )
    .unwrap();
    assert_ne!(refresh(&wrong).status, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), good);
    ca.stop();
    assert_ne!(refresh(&known_hosts).status, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), good);
    let leftovers: Vec<_> = std::fs::read_dir(host.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        3,
        "no temp files left behind: {leftovers:?}"
    );
}

#[test]
fn during_a_ca_key_rotation_revocation_covers_the_earlier_key_too() {
    let team = Team::new();
    let mut ca = Ca::start(&with_krl_path(&team.config("1h")));
    let krl = ca.dir.path().join("krl");
    let (old_id, old_cert) = lab_cert(&ca, &team, "old-key");
    // Hosts trust both keys during the change.
    let both = ca.dir.path().join("both.pub");
    keygen(&ca.dir.path().join("ca2"), "jitca-ca-2");
    let trusted = format!(
        "{}{}",
        std::fs::read_to_string(ca.ca_pub()).unwrap(),
        std::fs::read_to_string(ca.dir.path().join("ca2.pub")).unwrap()
    );
    std::fs::write(&both, trusted).unwrap();
    let lab = Sshd::start(
        "lab1",
        &both,
        &["root"],
        &format!("RevokedKeys {}", krl.display()),
    );

    // Switch the daemon to the new key, naming the old one as earlier.
    ca.stop();
    let config = std::fs::read_to_string(&ca.config)
        .unwrap()
        .replace("ca_key: ca\n", "ca_key: ca2\nprevious_ca_keys: [ca.pub]\n");
    std::fs::write(&ca.config, config).unwrap();
    ca.start_again();
    let (_, new_cert) = lab_cert(&ca, &team, "new-key");
    lab.login("root", &team.alice.key, &old_cert).ok();
    lab.login("root", &team.alice.key, &new_cert).ok();

    // A certificate of the earlier key is revoked on the hosts too.
    ca.ssh(&team.alice, &format!("done {old_id}"), None).ok();
    assert!(revoked_by(&krl, &old_cert));
    assert!(!revoked_by(&krl, &new_cert));
    assert_eq!(lab.login("root", &team.alice.key, &old_cert).status, 255);
    lab.login("root", &team.alice.key, &new_cert).ok();

    // host-setup trusts both keys while the rotation lasts.
    let text = run(
        Command::new(JITCA)
            .args([
                "host-setup",
                "--format",
                "text",
                "--host",
                "lab1",
                "--ca",
                "127.0.0.1:2222",
                "--config",
            ])
            .arg(&ca.config),
        None,
    );
    text.ok();
    let key_of = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert!(
        text.stdout.contains(&key_of(&ca.ca_pub()))
            && text
                .stdout
                .contains(&key_of(&ca.dir.path().join("ca2.pub"))),
        "{}",
        text.stdout
    );
}
