//! `jitca host-setup` applied to a real `sshd`, the KRL refresh it configures, and the
//! generated shell completions and man page.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

/// `jitca host-setup --config CA --host HOST --ssh-dir DIR --ca 127.0.0.1:PORT EXTRA...`.
fn host_setup(ca: &Ca, host: &str, ssh_dir: &Path, extra: &[&str]) -> Out {
    run(
        Command::new(JITCA)
            .arg("host-setup")
            .arg("--config")
            .arg(&ca.config)
            .args(["--host", host])
            .arg("--ssh-dir")
            .arg(ssh_dir)
            .args(["--ca", &format!("127.0.0.1:{}", ca.port)])
            .args(extra),
        None,
    )
}

/// Runs the bundle as `... | ssh root@host sh` would: the script on sh's stdin.
fn apply(script: &str) -> Out {
    run(&mut Command::new("sh"), Some(script.as_bytes()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// deploy/jitca-krl-refresh with the settings host-setup wrote, as its systemd unit runs it.
fn refresh(env_file: &Path) -> Out {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/jitca-krl-refresh");
    run(
        Command::new("sh").arg("-c").arg(format!(
            "set -a; . '{}'; set +a; exec sh '{script}'",
            env_file.display()
        )),
        None,
    )
}

#[test]
fn host_setup_output_passes_sshd_t_and_accepts_certificates_for_that_host_only() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    // The host's /etc/ssh, with an sshd_config as distributions ship it: the drop-in folder
    // included at the top, then the host's own settings.
    let etc = tempfile::tempdir().unwrap();
    let d = etc.path();
    let port = free_port();
    let sshd_config = d.join("sshd_config");
    std::fs::write(
        &sshd_config,
        format!(
            "Include {}/sshd_config.d/*.conf\n{}",
            d.display(),
            Sshd::base_config(d, port)
        ),
    )
    .unwrap();

    let bundle = host_setup(&ca, "web1", d, &[]);
    bundle.ok();
    assert!(bundle.stdout.starts_with("#!/bin/sh\n"), "{bundle:?}");

    // First run: the host's refresh key is new, so the CA refuses it the KRL; the script
    // stops before sshd's config, naming the key to register.
    let first = apply(&bundle.stdout);
    assert_eq!(first.status, 1, "{first:?}");
    assert!(
        first.stderr.contains("could not fetch the KRL"),
        "{first:?}"
    );
    assert!(!d.join("sshd_config.d/jitca.conf").exists());
    assert!(!d.join("jitca.krl").exists());
    let host_key = std::fs::read_to_string(d.join("jitca_refresh_ed25519.pub")).unwrap();
    let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
    let host_key = host_key.join(" ");
    assert!(first.stderr.contains(&host_key), "{first:?}");

    // The operator registers it as the config's `web1` (no groups) and reloads jitca.
    let config = team.config("1h").replace(
        &team.web1.public_key(),
        &format!("{host_key} jitca-krl@web1"),
    );
    std::fs::write(&ca.config, config).unwrap();
    ca.signal("HUP");
    std::fs::create_dir_all(d.join("jitca_principals")).unwrap();
    std::fs::write(d.join("jitca_principals/stale"), "stale@web1\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        let out = apply(&bundle.stdout);
        if out.status == 0 || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    second.ok();
    assert!(
        second.stderr.contains("installed a first KRL"),
        "{second:?}"
    );
    assert!(second.stderr.contains("web1 is set up"), "{second:?}");

    // The files, as the contract names them.
    let ca_pub = std::fs::read_to_string(ca.ca_pub()).unwrap();
    let installed = std::fs::read_to_string(d.join("jitca_ca.pub")).unwrap();
    assert_eq!(
        installed.split_whitespace().take(2).collect::<Vec<_>>(),
        ca_pub.split_whitespace().take(2).collect::<Vec<_>>()
    );
    assert_eq!(mode(&d.join("jitca_ca.pub")), 0o644);
    for login in ["root", "nobody"] {
        let file = d.join("jitca_principals").join(login);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{login}@web1\n")
        );
        assert_eq!(mode(&file), 0o644);
    }
    assert!(
        !d.join("jitca_principals/stale").exists(),
        "a login no rule allows is removed"
    );
    assert!(
        second.stderr.contains("jitca_principals/stale"),
        "{second:?}"
    );
    let dropin = std::fs::read_to_string(d.join("sshd_config.d/jitca.conf")).unwrap();
    for line in [
        format!("TrustedUserCAKeys {}/jitca_ca.pub", d.display()),
        format!(
            "AuthorizedPrincipalsFile {}/jitca_principals/%u",
            d.display()
        ),
        format!("RevokedKeys {}/jitca.krl", d.display()),
    ] {
        assert!(dropin.lines().any(|l| l == line), "{line} in {dropin}");
    }
    assert_eq!(mode(&d.join("jitca.krl")), 0o644);
    assert_eq!(mode(&d.join("jitca_refresh_ed25519")), 0o600);

    let check = run(
        Command::new("/usr/sbin/sshd")
            .arg("-t")
            .arg("-f")
            .arg(&sshd_config),
        None,
    );
    check.ok();

    let sshd_dir = tempfile::tempdir().unwrap();
    let web1 = Sshd::start_with_config(sshd_dir, port, &sshd_config);

    // alice asks for root on web1, bob approves: the certificate logs in.
    let id = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 1h --reason host-setup check --no-wait",
    ));
    ca.ssh(&team.bob, &format!("approve {id}"), None).ok();
    let got = ca.ssh(&team.alice, &format!("get {id}"), None);
    got.ok();
    let cert = save_cert(team.dir.path(), "alice_ed25519", &got.stdout);
    let ok = web1.login("root", &team.alice.key, &cert);
    ok.ok();
    assert_eq!(ok.stdout.trim(), "jitca-ok-root");
    let wrong_login = web1.login("nobody", &team.alice.key, &cert);
    assert_eq!(wrong_login.status, 255, "{wrong_login:?}");

    // A certificate for another host (lab1, approved on request) is refused here.
    let lab = ca.request(&team.alice, "lab1 --as root --for 10m --reason other host");
    lab.ok();
    let lab_cert = team.dir.path().join("lab-cert.pub");
    std::fs::write(&lab_cert, &lab.stdout).unwrap();
    let refused = web1.login("root", &team.alice.key, &lab_cert);
    assert_eq!(refused.status, 255, "{refused:?}");
    assert!(
        web1.log()
            .contains("Certificate does not contain an authorized principal"),
        "{}",
        web1.log()
    );

    // The refresh settings work with deploy/jitca-krl-refresh: once alice is done, the next
    // refresh revokes her certificate here.
    ca.ssh(&team.alice, &format!("done {id}"), None).ok();
    refresh(&d.join("jitca_refresh.env")).ok();
    let revoked = web1.login("root", &team.alice.key, &cert);
    assert_eq!(revoked.status, 255, "{revoked:?}");
    assert!(
        web1.log().contains("revoked"),
        "sshd names the KRL: {}",
        web1.log()
    );

    // Running it again keeps the installed KRL (now newer than a fresh start's) and checks out.
    let krl = std::fs::read(d.join("jitca.krl")).unwrap();
    let again = apply(&bundle.stdout);
    again.ok();
    assert!(
        again.stderr.contains("keeping the installed KRL"),
        "{again:?}"
    );
    assert_eq!(std::fs::read(d.join("jitca.krl")).unwrap(), krl);
}

#[test]
fn host_setup_backs_out_when_sshd_would_not_use_its_lines() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let etc = tempfile::tempdir().unwrap();
    let d = etc.path();
    // A host whose sshd_config sets TrustedUserCAKeys before the drop-ins: sshd keeps the
    // first value, so jitca's line would be ignored.
    std::fs::write(d.join("other_ca.pub"), ca_pub_line(&ca)).unwrap();
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "TrustedUserCAKeys {}/other_ca.pub\nInclude {}/sshd_config.d/*.conf\n{}",
            d.display(),
            d.display(),
            Sshd::base_config(d, free_port())
        ),
    )
    .unwrap();
    // A KRL already there (an empty one revokes nothing): no fetch needed.
    std::fs::write(d.join("jitca.krl"), b"").unwrap();

    let bundle = host_setup(&ca, "web1", d, &[]);
    bundle.ok();
    let out = apply(&bundle.stdout);
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains("sshd does not use 'trustedusercakeys"),
        "{out:?}"
    );
    assert!(
        !d.join("sshd_config.d/jitca.conf").exists(),
        "the drop-in is backed out"
    );
}

fn ca_pub_line(ca: &Ca) -> String {
    std::fs::read_to_string(ca.ca_pub()).unwrap()
}

#[test]
fn host_setup_refuses_unknown_hosts_and_bad_configs() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let dir = tempfile::tempdir().unwrap();
    host_setup(&ca, "web9", dir.path(), &[]).refused("host web9 is not in any host group");
    host_setup(&ca, "web1", Path::new("etc/ssh"), &[])
        .refused("--ssh-dir must be an absolute path");

    // Without --ca and with `listen` on port 0, there is no address to give the host.
    let no_ca = run(
        Command::new(JITCA)
            .arg("host-setup")
            .arg("--config")
            .arg(&ca.config)
            .args(["--host", "web1"]),
        None,
    );
    no_ca.refused("--ca HOST:PORT");

    let broken = ca.dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        team.config("1h")
            .replace("max_duration: 2h", "max_duration: 9d"),
    )
    .unwrap();
    let out = run(
        Command::new(JITCA)
            .arg("host-setup")
            .arg("--config")
            .arg(&broken)
            .args(["--host", "web1"]),
        None,
    );
    out.refused("fails jitca check");
    assert!(out.stderr.contains("broken.yaml:"), "{out:?}");
}

#[test]
fn host_setup_text_lists_the_same_files_and_extra_ca_keys() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let other = tempfile::tempdir().unwrap();
    keygen(&other.path().join("next_ca"), "next-ca");
    let next = pub_path(&other.path().join("next_ca"));
    let out = run(
        Command::new(JITCA)
            .arg("host-setup")
            .arg("--config")
            .arg(&ca.config)
            .args([
                "--host",
                "db1",
                "--format",
                "text",
                "--ca",
                "ca.example.com:2200",
            ])
            .arg("--extra-ca")
            .arg(&next),
        None,
    );
    out.ok();
    let text = &out.stdout;
    assert!(
        text.contains("## /etc/ssh/jitca_principals/root (mode 0644)\nroot@db1\n"),
        "{text}"
    );
    assert!(!text.contains("jitca_principals/nobody"), "{text}");
    assert!(
        text.contains("TrustedUserCAKeys /etc/ssh/jitca_ca.pub\n"),
        "{text}"
    );
    assert!(
        text.contains("AuthorizedPrincipalsFile /etc/ssh/jitca_principals/%u\n"),
        "{text}"
    );
    assert!(text.contains("RevokedKeys /etc/ssh/jitca.krl\n"), "{text}");
    let next_key: Vec<String> = std::fs::read_to_string(&next)
        .unwrap()
        .split_whitespace()
        .take(2)
        .map(String::from)
        .collect();
    let ca_key: Vec<String> = ca_pub_line(&ca)
        .split_whitespace()
        .take(2)
        .map(String::from)
        .collect();
    assert!(text.contains(&ca_key.join(" ")), "{text}");
    assert!(text.contains(&next_key.join(" ")), "{text}");
    assert!(
        text.contains("JITCA_CA=ca.example.com\nJITCA_PORT=2200\n"),
        "{text}"
    );
    assert!(
        text.contains("[ca.example.com]:2200 ssh-ed25519 "),
        "{text}"
    );
    assert!(text.contains("/usr/local/sbin/jitca-krl-refresh"), "{text}");
}

#[test]
fn completions_source_in_bash_and_the_man_page_renders() {
    let dir = tempfile::tempdir().unwrap();
    let bash = run(Command::new(JITCA).args(["completions", "bash"]), None);
    bash.ok();
    let file = dir.path().join("jitca.bash");
    std::fs::write(&file, &bash.stdout).unwrap();
    run(Command::new("bash").arg("-n").arg(&file), None).ok();
    let sourced = run(
        Command::new("bash")
            .arg("-c")
            .arg(format!("source '{}' && complete -p jitca", file.display())),
        None,
    );
    sourced.ok();
    assert!(sourced.stdout.contains("_jitca"), "{sourced:?}");
    for word in ["host-setup", "completions", "serve", "audit"] {
        assert!(bash.stdout.contains(word), "{word} in the bash completions");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(Command::new(JITCA).args(["completions", shell]), None);
        out.ok();
        assert!(out.stdout.contains("jitca"), "{shell}: {out:?}");
    }

    let man = run(Command::new(JITCA).arg("man"), None);
    man.ok();
    assert!(man.stdout.contains(".TH jitca 1"), "{}", man.stdout);
    for command in [
        "jitca serve",
        "jitca init",
        "jitca check",
        "jitca audit",
        "jitca host-setup",
        "jitca completions",
    ] {
        assert!(
            man.stdout.contains(&format!(".SS \"{command}\"")),
            "{command} in the man page"
        );
    }
    assert!(man.stdout.contains("\\-\\-ssh\\-dir"), "{}", man.stdout);
    if Path::new("/usr/bin/man").exists() {
        let page = dir.path().join("jitca.1");
        std::fs::write(&page, &man.stdout).unwrap();
        let rendered = run(
            Command::new("man")
                .args(["-P", "cat", "-l"])
                .arg(&page)
                .env("MANWIDTH", "100"),
            None,
        );
        rendered.ok();
        assert!(rendered.stdout.contains("jitca host-setup"), "{rendered:?}");
    }

    let pages = dir.path().join("man1");
    run(
        Command::new(JITCA).arg("man").arg("--dir").arg(&pages),
        None,
    )
    .ok();
    for page in [
        "jitca.1",
        "jitca-serve.1",
        "jitca-host-setup.1",
        "jitca-audit-verify.1",
    ] {
        assert!(pages.join(page).exists(), "{page}");
    }
}
