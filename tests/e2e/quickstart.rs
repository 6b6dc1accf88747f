//! docs/quickstart.md, followed word for word: every block tagged with a person (or `host`,
//! run by the operator) is run by a shell of that person, in the order the people would act.
//! The only stand-ins are the machines: `ca.example` and `web1` are loopback ports (through an
//! ssh config the test writes), web1's `/etc/ssh` is a folder of the test's, and the example
//! request id is replaced by the real one.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::harness::*;

const DOC: &str = include_str!("../../docs/quickstart.md");
const EXAMPLE_ID: &str = "r7k2m9x4ab";

/// A fenced block: its info string and its text.
fn blocks() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            out.push((info.trim().to_string(), body.join("\n") + "\n"));
        }
    }
    out
}

fn block(tag: &str, nth: usize) -> String {
    blocks()
        .into_iter()
        .filter(|(info, _)| info == tag)
        .nth(nth)
        .unwrap_or_else(|| panic!("docs/quickstart.md has no block {nth} tagged {tag:?}"))
        .1
}

/// A person's long-lived shell: blocks are fed to it one after the other, so a job one
/// block starts in the background can be waited for by a later block. Commands come in on
/// a FIFO, so that the commands' own stdin stays empty, as in a terminal nobody types into.
struct Shell {
    child: Child,
    commands: std::fs::File,
    lines: Receiver<String>,
}

impl Shell {
    fn new(home: &Path, cwd: &Path, path: &str, ssh_config: &Path) -> Shell {
        let fifo = home.join("commands.fifo");
        assert!(
            Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let mut child = Command::new("bash")
            .arg("-c")
            .arg("exec 2>&1 3<\"$JITCA_QS_FIFO\"; while IFS= read -r -u 3 line; do eval \"$line\"; done")
            .current_dir(cwd)
            .env("HOME", home)
            .env("PATH", path)
            .env("JITCA_QS_SSH_CONFIG", ssh_config)
            .env("JITCA_QS_FIFO", &fifo)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let commands = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Shell {
            child,
            commands,
            lines,
        }
    }

    /// Runs each line of `text`, stopping at the first that fails. Returns what it printed.
    fn run(&mut self, text: &str) -> String {
        let mut printed = String::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            writeln!(self.commands, "{line}\necho \"__done__ $?\"").unwrap();
            self.commands.flush().unwrap();
            loop {
                let got = self
                    .lines
                    .recv_timeout(Duration::from_secs(60))
                    .unwrap_or_else(|_| panic!("`{line}` did not finish; so far:\n{printed}"));
                if let Some(status) = got.strip_prefix("__done__ ") {
                    assert_eq!(status, "0", "`{line}` failed:\n{printed}");
                    break;
                }
                printed.push_str(&got);
                printed.push('\n');
            }
        }
        printed
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // The whole process group: the shell and anything it left in the background.
        let _ = Command::new("kill")
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .status();
        let _ = self.child.wait();
    }
}

/// The `deploy` account the quick start logs in as: created when missing, usable by sshd
/// (not locked), without a password.
fn ensure_deploy_account() {
    if Command::new("id")
        .arg("deploy")
        .output()
        .unwrap()
        .status
        .success()
    {
        return;
    }
    let made = Command::new("useradd")
        .args(["--create-home", "--shell", "/bin/sh", "deploy"])
        .status()
        .unwrap();
    assert!(
        made.success(),
        "cannot create the deploy account (the tests run as root)"
    );
    assert!(
        Command::new("usermod")
            .args(["-p", "*", "deploy"])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn the_quick_start_works_as_written() {
    ensure_deploy_account();
    let team = Team::new();
    let work = tempfile::tempdir().unwrap();
    let bin = PathBuf::from(JITCA).parent().unwrap().to_path_buf();
    let shim = work.path().join("shim");
    std::fs::create_dir(&shim).unwrap();
    std::fs::write(
        shim.join("ssh"),
        "#!/bin/sh\nexec /usr/bin/ssh -F \"$JITCA_QS_SSH_CONFIG\" \"$@\"\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(shim.join("ssh"))
        .status()
        .unwrap();
    let path = format!(
        "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
        shim.display(),
        bin.display()
    );

    // Each person: a home with their key as ~/.ssh/id_ed25519, and the doc's ~/.ssh/config
    // alias with ca.example standing for this machine.
    let alias = blocks()
        .into_iter()
        .find(|(info, text)| info.is_empty() && text.starts_with("Host jitca"))
        .expect("the ~/.ssh/config alias block")
        .1
        .replace("ca.example", "127.0.0.1");
    let home_of = |p: &Person, sshd_port: u16| -> (PathBuf, PathBuf) {
        let home = work.path().join(format!("home-{}", p.name));
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::copy(&p.key, home.join(".ssh/id_ed25519")).unwrap();
        std::fs::copy(pub_path(&p.key), home.join(".ssh/id_ed25519.pub")).unwrap();
        let config = home.join("ssh_config");
        std::fs::write(
            &config,
            format!(
                "{alias}\nHost web1\n    HostName 127.0.0.1\n    Port {sshd_port}\n\nHost *\n    IdentityFile {}\n    IdentitiesOnly yes\n    IdentityAgent none\n    BatchMode yes\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n",
                home.join(".ssh/id_ed25519").display()
            ),
        )
        .unwrap();
        (home, config)
    };

    // web1: its /etc/ssh is a folder here, with an sshd_config as distributions ship it (the
    // drop-in folder included first). The operator reaches it as root@web1 through an admin
    // sshd whose forced command runs what was sent, command and stdin, with /etc/ssh moved
    // to that folder: the only stand-in for the machine.
    let etc = tempfile::tempdir().unwrap();
    let web1_port = free_port();
    let sshd_config = etc.path().join("sshd_config");
    std::fs::write(
        &sshd_config,
        format!(
            "Include {}/sshd_config.d/*.conf\n{}",
            etc.path().display(),
            Sshd::base_config(etc.path(), web1_port)
        ),
    )
    .unwrap();
    let admin_dir = tempfile::tempdir().unwrap();
    let a = admin_dir.path();
    let admin_port = free_port();
    std::fs::write(a.join("authorized_keys"), team.frank.public_key() + "\n").unwrap();
    let moved = format!("sed 's#/etc/ssh#{}#g'", etc.path().display());
    std::fs::write(
        a.join("web1"),
        format!(
            "#!/bin/sh\ncmd=$(printf '%s' \"$SSH_ORIGINAL_COMMAND\" | {moved})\n{moved} | sh -c \"$cmd\"\n"
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(a.join("web1"))
        .status()
        .unwrap();
    let admin_config = a.join("sshd_config");
    std::fs::write(
        &admin_config,
        Sshd::base_config(a, admin_port).replace(
            "AuthorizedKeysFile none",
            &format!(
                "AuthorizedKeysFile {0}/authorized_keys\nForceCommand {0}/web1",
                a.display()
            ),
        ),
    )
    .unwrap();
    let _admin = Sshd::start_with_config(admin_dir, admin_port, &admin_config);

    // Operator: a CA, web1's own key, the config with everyone in it.
    let (home, config) = home_of(&team.frank, admin_port);
    let mut operator = Shell::new(&home, work.path(), &path, &config);
    operator.run(&block("sh operator", 0));
    let host_key = operator.run(&block("sh host", 0));
    let host_key = host_key.trim();
    assert!(
        host_key.starts_with("ssh-ed25519 ") && host_key.ends_with(" jitca-krl@web1"),
        "{host_key}"
    );
    let yaml = blocks()
        .into_iter()
        .find(|(info, _)| info == "yaml ca/jitca.yaml")
        .unwrap()
        .1;
    let mut yaml = yaml.replace("ssh-ed25519 AAAA... jitca-krl@web1", host_key);
    for p in [&team.alice, &team.bob, &team.ivy] {
        yaml = yaml.replace(
            &format!("ssh-ed25519 AAAA... {}@laptop", p.name),
            &p.public_key(),
        );
    }
    assert!(!yaml.contains("AAAA..."), "{yaml}");
    std::fs::write(work.path().join("ca/jitca.yaml"), yaml).unwrap();
    let checked = operator.run(&block("sh operator", 1));
    assert!(
        checked.contains("ca/jitca.yaml: OK (4 users, 1 rule)"),
        "{checked}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect("127.0.0.1:2222").is_err() {
        assert!(
            Instant::now() < deadline,
            "the CA did not start listening on 2222"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The host step, first time: it works, and web1's sshd (started on the config it wrote,
    // as `systemctl reload ssh` would) takes jitca's certificates.
    let set_up = operator.run(&block("sh host", 1));
    assert!(
        set_up.contains("installed a first KRL") && set_up.contains("web1 is set up"),
        "{set_up}"
    );
    assert_eq!(
        std::fs::read_to_string(etc.path().join("jitca_principals/deploy")).unwrap(),
        "deploy@web1\n"
    );
    assert!(etc.path().join("jitca.krl").exists());
    assert!(etc.path().join("sshd_config.d/jitca.conf").exists());
    let sshd_dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_with_config(sshd_dir, web1_port, &sshd_config);

    // Engineer asks and waits; approver decides; engineer logs in and ends the access.
    let (home, config) = home_of(&team.alice, sshd.port);
    let mut engineer = Shell::new(&home, &home, &path, &config);
    let who = engineer.run(&block("sh engineer", 0));
    assert!(who.contains("user     alice"), "{who}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let out = ssh_at(2222, &team.bob, &[], "list --pending --json", None);
        if let Some(line) = out.stdout.lines().next() {
            break serde_json::from_str::<serde_json::Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
        }
        assert!(Instant::now() < deadline, "the request did not arrive");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (home, config) = home_of(&team.bob, sshd.port);
    let mut approver = Shell::new(&home, &home, &path, &config);
    let shown = approver.run(&block("sh approver", 0).replace(EXAMPLE_ID, &id));
    assert!(
        shown.contains("INC-42 disk full on web1") && shown.contains("deploy@web1"),
        "{shown}"
    );
    let used = engineer.run(&block("sh engineer", 1).replace(EXAMPLE_ID, &id));
    assert!(
        used.contains("Principals: \n                deploy@web1"),
        "{used}"
    );

    // Auditor.
    let (home, config) = home_of(&team.ivy, sshd.port);
    let mut auditor = Shell::new(&home, &home, &path, &config);
    let audit = auditor.run(&block("sh auditor", 0));
    for event in ["requested", "approved", "issued", "done"] {
        assert!(audit.contains(event), "{event} missing from:\n{audit}");
    }
    assert!(audit.contains("audit log intact"), "{audit}");
    assert!(
        std::fs::read_to_string(work.path().join("ca/audit.jsonl"))
            .unwrap()
            .contains("\"event\":\"done\"")
    );
    drop(operator);
}
