//! `jitca init`, `jitca check` and `jitca serve --dev`, run as an operator would.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::*;

#[test]
fn init_creates_keys_and_a_valid_config_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ca");
    run(
        Command::new(JITCA).arg("init").arg("--dir").arg(&target),
        None,
    )
    .ok();
    for (file, mode) in [
        ("ca", 0o600),
        ("ca.pub", 0o644),
        ("host_ed25519", 0o600),
        ("host_ed25519.pub", 0o644),
    ] {
        let meta = std::fs::metadata(target.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
    let ca_pub = std::fs::read_to_string(target.join("ca.pub")).unwrap();
    assert!(ca_pub.starts_with("ssh-ed25519 "));
    let before = std::fs::read(target.join("ca")).unwrap();
    let again = run(
        Command::new(JITCA).arg("init").arg("--dir").arg(&target),
        None,
    );
    assert_eq!(again.status, 1, "{again:?}");
    assert!(again.stderr.contains("exists already"), "{again:?}");
    assert_eq!(
        std::fs::read(target.join("ca")).unwrap(),
        before,
        "the CA key is untouched"
    );
    let check = run(
        Command::new(JITCA)
            .arg("check")
            .arg("--config")
            .arg(target.join("jitca.yaml")),
        None,
    );
    check.ok();
}

/// Writes `config` as DIR/jitca.yaml next to a fresh CA, runs `jitca check`.
fn check(config: &str) -> Out {
    let dir = tempfile::tempdir().unwrap();
    run(
        Command::new(JITCA).arg("init").arg("--dir").arg(dir.path()),
        None,
    )
    .ok();
    let path = dir.path().join("jitca.yaml");
    std::fs::write(&path, config).unwrap();
    run(
        Command::new(JITCA).arg("check").arg("--config").arg(&path),
        None,
    )
}

#[track_caller]
fn invalid(config: &str, line: usize, needle: &str) {
    let out = check(config);
    assert_eq!(out.status, 1, "{out:?}");
    let wanted = format!("jitca.yaml:{line}: ");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains(&wanted) && l.contains(needle)),
        "expected {wanted}...{needle} in {out:#?}"
    );
}

/// Accepted (exit 0), with one warning line on stderr at `line` containing `needle`.
#[track_caller]
fn warned(config: &str, line: usize, needle: &str) {
    let out = check(config);
    assert_eq!(out.status, 0, "{out:?}");
    let warnings: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{out:#?}");
    let wanted = format!("jitca.yaml:{line}: warning: ");
    assert!(
        warnings[0].contains(&wanted) && warnings[0].contains(needle),
        "expected {wanted}...{needle} in {out:#?}"
    );
}

#[test]
fn check_names_the_line_and_the_problem() {
    let team = Team::new();
    let good = team.config("1h");
    check(&good).ok();
    let line_of = |needle: &str| good.lines().position(|l| l.contains(needle)).unwrap() + 1;

    // An unknown key.
    let c = good.replace("pending_ttl: 1h", "pending_ttl: 1h\nmax_everything: 3");
    invalid(&c, line_of("pending_ttl") + 1, "max_everything");
    // A rule naming a group nobody is in: a warning (its last member may have left), exit 0.
    let c = good.replace("approvers: [dba]", "approvers: [dbadmins]");
    warned(
        &c,
        line_of("approvers: [dba]"),
        "group dbadmins has no members",
    );
    // A rule naming a host group that does not exist.
    let c = good.replace("hosts: [db]", "hosts: [database]");
    invalid(&c, line_of("hosts: [db]"), "database");
    // A key that does not parse.
    let bob_key = team.bob.public_key();
    let c = good.replace(&bob_key, "ssh-ed25519 AAAAnotakey");
    invalid(&c, line_of(&bob_key), "bob");
    // The same key under two users.
    let c = good.replace(&bob_key, &team.alice.public_key());
    invalid(&c, line_of(&bob_key), "alice");
    // Durations zero or absurd.
    let c = good.replace("max_duration: 30m", "max_duration: 0s");
    invalid(&c, line_of("max_duration: 30m"), "max_duration");
    let c = good.replace("max_duration: 30m", "max_duration: 400d");
    invalid(&c, line_of("max_duration: 30m"), "max_duration");
    let c = good.replace("pending_ttl: 1h", "pending_ttl: soon");
    invalid(&c, line_of("pending_ttl"), "soon");
    // An unknown extension.
    let c = good.replace("permit-port-forwarding", "permit-everything");
    invalid(&c, line_of("permit-port-forwarding"), "permit-everything");
    // A principal format without {host}.
    let c = good.replace(
        "data_dir: data",
        "data_dir: data\nprincipal_format: \"{login}\"",
    );
    invalid(&c, line_of("data_dir") + 1, "{host}");
    // Several problems: each is named.
    let c = good
        .replace("hosts: [db]", "hosts: [database]")
        .replace("permit-port-forwarding", "permit-everything");
    let out = check(&c);
    assert!(
        out.stderr.contains("database") && out.stderr.contains("permit-everything"),
        "{out:?}"
    );
}

#[test]
fn serve_dev_registers_the_users_keys_and_issues() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    let me = Person::new(&home.path().join(".ssh"), "id");
    let dir = home.path().join("jitca-dev");
    let (mut child, printed, port) = serve_dev(&dir, home.path(), " help");
    assert!(
        printed.contains(&format!("ssh -p {port} jitca@127.0.0.1 whoami")),
        "{printed}"
    );
    let mut ssh = ssh_client(&me.key);
    ssh.args([
        "-p",
        &port.to_string(),
        "jitca@127.0.0.1",
        "request",
        "localhost",
        "--as",
        "root",
        "--for",
        "15m",
        "--reason",
        "trying",
        "jitca",
    ]);
    let out = run(&mut ssh, Some(me.public_key().as_bytes()));
    let _ = child.kill();
    let _ = child.wait();
    out.ok();
    assert!(
        out.stdout.starts_with("ssh-ed25519-cert-v01@openssh.com"),
        "{out:?}"
    );
    assert!(
        dir.join("jitca.yaml").exists() && dir.join("ca").exists() && dir.join("data").exists()
    );
}

#[test]
fn the_example_config_in_deploy_passes_check() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/jitca.example.yaml"
    ))
    .unwrap();
    let local = example
        .replace("/etc/jitca/", "")
        .replace("/var/lib/jitca", "data");
    check(&local).ok();
}
