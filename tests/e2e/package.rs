//! The Debian package `scripts/package` builds: what it holds, and what installing it on this
//! machine gives (the binary on the PATH, `man jitca`, the `jitca` user), then purged again.
//! The build takes a release compile, so the test takes the built package from `JITCA_DEB`
//! and is ignored otherwise; `scripts/test` builds the package and runs it.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::*;

/// Puts the machine back as it was, even when an assertion fails: the package purged, and
/// the `jitca` user and group removed if installing made them.
struct Installed {
    user_existed: bool,
    group_existed: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run(Command::new("dpkg").args(["--purge", "jitca"]), None);
        if !self.user_existed {
            let _ = run(Command::new("userdel").arg("jitca"), None);
        }
        if !self.group_existed {
            let _ = run(Command::new("groupdel").arg("jitca"), None);
        }
    }
}

fn exists(database: &str, name: &str) -> bool {
    run(Command::new("getent").args([database, name]), None).status == 0
}

#[test]
#[ignore = "needs the package: scripts/test builds it and runs this with JITCA_DEB set"]
fn the_package_installs_the_binary_man_page_units_and_user_and_purges_clean() {
    let deb = PathBuf::from(
        std::env::var("JITCA_DEB").expect("JITCA_DEB: the .deb scripts/package built"),
    );
    assert!(deb.is_file(), "no package at {}", deb.display());

    // What it holds.
    let listed = run(Command::new("dpkg-deb").arg("-c").arg(&deb), None);
    listed.ok();
    let files: Vec<&str> = listed
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let has = |suffix: &str| files.iter().any(|f| f.ends_with(suffix));
    for wanted in [
        "./usr/bin/jitca",
        "./usr/sbin/jitca-krl-refresh",
        "./usr/share/man/man1/jitca.1.gz",
        "./usr/share/man/man1/jitca-serve.1.gz",
        "./usr/share/man/man1/jitca-host-setup.1.gz",
        "./usr/share/bash-completion/completions/jitca",
        "./usr/share/zsh/vendor-completions/_jitca",
        "./usr/share/fish/vendor_completions.d/jitca.fish",
        "/systemd/system/jitca.service",
        "/systemd/system/jitca-krl-refresh.service",
        "/systemd/system/jitca-krl-refresh.timer",
        "./usr/lib/sysusers.d/jitca.conf",
        "./usr/share/doc/jitca/examples/jitca.yaml",
        "./usr/share/doc/jitca/copyright",
        "./usr/share/doc/jitca/changelog.Debian.gz",
    ] {
        assert!(
            has(wanted),
            "{wanted} missing from the package:\n{}",
            listed.stdout
        );
    }
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("./usr/local") || f.starts_with("./etc/jitca")),
        "nothing in /usr/local, no config in /etc/jitca: {}",
        listed.stdout
    );
    let mode = listed
        .stdout
        .lines()
        .find(|l| l.ends_with(" ./usr/bin/jitca"))
        .unwrap();
    assert!(mode.starts_with("-rwxr-xr-x root/root"), "{mode}");

    // Installed here: never over an installation that is already there.
    let before = run(Command::new("dpkg-query").args(["-W", "jitca"]), None);
    assert_ne!(
        before.status, 0,
        "a jitca package is installed on this machine already; this test would remove it"
    );
    let _installed = Installed {
        user_existed: exists("passwd", "jitca"),
        group_existed: exists("group", "jitca"),
    };
    run(Command::new("dpkg").arg("-i").arg(&deb), None).ok();

    let version = run(Command::new("/usr/bin/jitca").arg("--version"), None);
    version.ok();
    assert_eq!(
        version.stdout.trim(),
        format!("jitca {}", env!("CARGO_PKG_VERSION"))
    );
    let found = run(Command::new("man").args(["-w", "jitca"]), None);
    found.ok();
    assert_eq!(found.stdout.trim(), "/usr/share/man/man1/jitca.1.gz");
    let page = run(
        Command::new("man")
            .arg("jitca")
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"),
        None,
    );
    page.ok();
    for section in [
        "NAME",
        "SYNOPSIS",
        "COMMANDS",
        "jitca serve",
        "jitca host-setup",
    ] {
        assert!(
            page.stdout.contains(section),
            "{section} in:\n{}",
            page.stdout
        );
    }
    run(Command::new("man").args(["-w", "jitca-serve"]), None).ok();

    let user = run(Command::new("getent").args(["passwd", "jitca"]), None);
    user.ok();
    let fields: Vec<&str> = user.stdout.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {}", user.stdout);
    assert_eq!(fields[6], "/usr/sbin/nologin", "{}", user.stdout);
    assert!(exists("group", "jitca"));

    // The units run the packaged paths, and none is enabled.
    let unit = std::fs::read_to_string(
        [
            "/usr/lib/systemd/system/jitca.service",
            "/lib/systemd/system/jitca.service",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("jitca.service installed"),
    )
    .unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/bin/jitca serve --config /etc/jitca/jitca.yaml\n"),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local"), "{unit}");
    assert!(
        !std::path::Path::new("/etc/systemd/system/multi-user.target.wants/jitca.service").exists()
    );

    // Purged: nothing of it left but what we remove ourselves (the user, by Installed).
    run(Command::new("dpkg").args(["--purge", "jitca"]), None).ok();
    assert!(!std::path::Path::new("/usr/bin/jitca").exists());
    assert!(!std::path::Path::new("/usr/share/man/man1/jitca.1.gz").exists());
}
