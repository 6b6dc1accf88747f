//! What a newcomer meets on a first run (issue 16): the dev banner's lines work as printed,
//! without a terminal; messages say what is true (counts, `--no-wait`, a held store); a
//! PuTTYgen public key is read.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

/// Runs one line the way a user pastes it into a shell: `sh -c LINE` with HOME and an `ssh`
/// on the PATH that reads ~/.ssh as HOME says (OpenSSH itself takes ~ from the passwd
/// database), strictly checking host keys and never prompting.
fn paste(home: &Path, line: &str) -> Out {
    let shim = home.join("bin");
    if !shim.exists() {
        std::fs::create_dir(&shim).unwrap();
        std::fs::write(
            shim.join("ssh"),
            "#!/bin/sh\nexec /usr/bin/ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes \
             -o UserKnownHostsFile=\"$HOME/.ssh/known_hosts\" -o IdentityFile=\"$HOME/.ssh/id_ed25519\" \
             -o IdentitiesOnly=yes -o IdentityAgent=none \"$@\"\n",
        )
        .unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(shim.join("ssh"))
            .status()
            .unwrap();
    }
    run(
        Command::new("sh")
            .arg("-c")
            .arg(line)
            .env("HOME", home)
            .env("PATH", format!("{}:/usr/bin:/bin", shim.display()))
            .env("TMPDIR", home),
        None,
    )
}

#[test]
fn the_dev_banner_pins_the_host_key_and_its_request_keeps_the_old_certificate() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    std::fs::create_dir(home.join(".ssh")).unwrap();
    let me = Person::new(&home.join(".ssh"), "id");
    let dir = home.join("jitca-dev");
    let (mut child, banner, port) = serve_dev(&dir, home, "keeps the certificate you have");
    let line = |start: &str| -> String {
        banner
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{banner}"))
            .to_string()
    };

    // The fingerprint is the host key's, as ssh-keygen shows it.
    let shown = run(
        Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(dir.join("host_ed25519.pub")),
        None,
    );
    let fingerprint = shown.stdout.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        banner.contains(&format!("Its host key is {fingerprint}")),
        "{banner}"
    );

    // An earlier CA on this address (another --dev folder, `jitca init`) left its key.
    std::fs::write(
        home.join(".ssh/known_hosts"),
        format!(
            "[127.0.0.1]:{port} {}\n",
            std::fs::read_to_string(pub_path(&me.key)).unwrap().trim()
        ),
    )
    .unwrap();
    let whoami = line("ssh -p");
    let refused = paste(home, &whoami);
    assert_ne!(refused.status, 0, "a stale known_hosts key is refused");
    assert!(
        refused
            .stderr
            .contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{refused:?}"
    );

    // The pin line, then the commands as printed: no prompt, no terminal.
    paste(home, &line("ssh-keygen -R")).ok();
    let who = paste(home, &whoami);
    who.ok();
    assert!(who.stdout.contains("user     root"), "{who:?}");

    let request = line(&format!("ssh -p {port} jitca@127.0.0.1 request"));
    assert!(request.contains(".new && mv "), "{request}");
    paste(home, &request).ok();
    let cert = home.join("jitca-dev-cert.pub");
    let first = std::fs::read_to_string(&cert).unwrap();
    assert!(
        first.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{first}"
    );

    // A request that is refused (longer than the rule allows) leaves the certificate as it was.
    let refused = paste(home, &request.replace("--for 15m", "--for 2h"));
    assert_eq!(refused.status, 1, "{refused:?}");
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), first);

    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn no_wait_says_what_the_request_needs_and_not_that_it_waits() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let out = ca.request(
        &team.alice,
        "web1 --as root --for 1h --reason INC-7 --no-wait",
    );
    let id = id_of(&out);
    assert!(!out.stderr.contains("waiting"), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("request {id} made; it needs 1 approval"))
            && out.stderr.contains(&format!("`get {id}`")),
        "{out:?}"
    );
    let lab = ca.request(
        &team.alice,
        "lab1 --as root --for 5m --reason lab --no-wait",
    );
    let lab_id = id_of(&lab);
    assert!(
        lab.stderr.contains("no approval needed")
            && lab.stderr.contains(&format!("`get {lab_id}`")),
        "{lab:?}"
    );
}

#[test]
fn an_rfc4716_public_key_from_puttygen_is_certified() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    // PuTTYgen's default "Save public key" form is RFC 4716, as `ssh-keygen -e` writes it.
    let exported = run(
        Command::new("ssh-keygen")
            .arg("-e")
            .arg("-f")
            .arg(pub_path(&team.alice.key)),
        None,
    );
    exported.ok();
    assert!(
        exported
            .stdout
            .starts_with("---- BEGIN SSH2 PUBLIC KEY ----"),
        "{exported:?}"
    );
    let out = ca.ssh(
        &team.alice,
        "request lab1 --as root --for 5m --reason from putty",
        Some(exported.stdout.as_bytes()),
    );
    out.ok();
    let cert = save_cert(team.dir.path(), "alice_ed25519", &out.stdout);
    let listing = keygen_l(&cert);
    let fingerprint = run(
        Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(pub_path(&team.alice.key)),
        None,
    );
    let fingerprint = fingerprint
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        listing.contains(&format!("Public key: ED25519-CERT {fingerprint}")),
        "{listing}"
    );
}

#[test]
fn offline_audit_while_the_daemon_runs_says_another_process_holds_the_store() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    for args in [vec!["audit", "--data"], vec!["audit", "verify", "--data"]] {
        let out = run(Command::new(JITCA).args(&args).arg(ca.data()), None);
        out.refused("another process (a running jitca?) holds its lock");
        assert!(
            !out.stderr.contains("Os {") && !out.stderr.contains("WouldBlock"),
            "{out:?}"
        );
    }
}

#[test]
fn check_counts_in_the_singular_and_the_plural() {
    let team = Team::new();
    let dir = tempfile::tempdir().unwrap();
    run(
        Command::new(JITCA).arg("init").arg("--dir").arg(dir.path()),
        None,
    )
    .ok();
    let config = dir.path().join("jitca.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:0\"\nca_key: ca\nhost_key: host_ed25519\ndata_dir: data\n\
             users:\n  alice:\n    keys: [\"{}\"]\n    groups: [dev]\n\
             hosts:\n  lab: [lab1]\n\
             rules:\n  - name: lab\n    requesters: [dev]\n    hosts: [lab]\n    logins: [root]\n    max_duration: 1h\n    approvals: 0\n",
            team.alice.public_key()
        ),
    )
    .unwrap();
    let out = run(
        Command::new(JITCA)
            .arg("check")
            .arg("--config")
            .arg(&config),
        None,
    );
    out.ok();
    assert!(out.stdout.ends_with("OK (1 user, 1 rule)\n"), "{out:?}");
    std::fs::write(&config, team.config("1h")).unwrap();
    let out = run(
        Command::new(JITCA)
            .arg("check")
            .arg("--config")
            .arg(&config),
        None,
    );
    out.ok();
    assert!(out.stdout.ends_with("OK (7 users, 4 rules)\n"), "{out:?}");
}
