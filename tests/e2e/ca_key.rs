//! The CA key under careless operators and failing signers: key files others may read stop
//! start-up, an encrypted CA key opens with its passphrase from a file or a systemd credential,
//! and a CA key held by a real `ssh-agent` signs certificates a real `sshd` accepts, until the
//! agent goes away, when issuance fails closed and the daemon keeps serving.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `jitca serve --config CONFIG` that must exit by itself, refusing to start.
fn serve_refused(config: &Path, env: &[(&str, &Path)]) -> Out {
    let mut cmd = Command::new(JITCA);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "jitca serve started when it must not: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Out {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check(config: &Path, env: &[(&str, &Path)]) -> Out {
    let mut cmd = Command::new(JITCA);
    cmd.arg("check")
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)));
    run(&mut cmd, None)
}

/// A folder made by `jitca init`, with `config` written as its jitca.yaml.
fn init(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    run(
        Command::new(JITCA).arg("init").arg("--dir").arg(dir.path()),
        None,
    )
    .ok();
    let path = dir.path().join("jitca.yaml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

#[test]
fn a_key_file_others_may_read_stops_start_up() {
    let team = Team::new();
    let (dir, config) = init(&team.config("1h"));
    let ca = dir.path().join("ca");
    check(&config, &[]).ok();

    set_mode(&ca, 0o644);
    let expected = format!(
        "{}:2: ca_key: UNPROTECTED PRIVATE KEY FILE! {ca} has mode 0644, so group or others may \
         read or change it; jitca refuses to use it. Fix: chmod 600 {ca}",
        config.display(),
        ca = ca.display()
    );
    let out = serve_refused(&config, &[]);
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stderr.contains(&expected), "{out:?}");
    assert!(!out.stderr.contains("listening on"), "{out:?}");
    assert!(!out.stderr.contains("PRIVATE KEY-----"), "{out:?}");
    let checked = check(&config, &[]);
    assert_eq!(checked.status, 1, "{checked:?}");
    assert_eq!(checked.stderr.trim(), expected);

    // The host key too.
    set_mode(&ca, 0o600);
    set_mode(&dir.path().join("host_ed25519"), 0o640);
    let out = serve_refused(&config, &[]);
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            ":3: host_key: UNPROTECTED PRIVATE KEY FILE! {} has mode 0640",
            dir.path().join("host_ed25519").display()
        )),
        "{out:?}"
    );

    // Owned by another user (root can make one): refused, naming the owner and the fix.
    set_mode(&dir.path().join("host_ed25519"), 0o600);
    std::os::unix::fs::chown(&ca, Some(65534), None).unwrap();
    let out = serve_refused(&config, &[]);
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "ca_key: UNPROTECTED PRIVATE KEY FILE! {} is owned by uid 65534",
            ca.display()
        )) && out.stderr.contains("while jitca runs as uid 0 (root)")
            && out
                .stderr
                .contains(&format!("Fix: chown root {}", ca.display())),
        "{out:?}"
    );
    std::os::unix::fs::chown(&ca, Some(0), None).unwrap();
    check(&config, &[]).ok();
}

/// `ssh-keygen -t ed25519 -N PASSPHRASE`: an encrypted CA key in `dir`.
fn encrypted_key(dir: &Path, passphrase: &str) -> PathBuf {
    let key = dir.join("ca_encrypted");
    let out = run(
        Command::new("ssh-keygen")
            .args([
                "-q", "-t", "ed25519", "-C", "jitca-ca", "-N", passphrase, "-f",
            ])
            .arg(&key),
        None,
    );
    assert_eq!(out.status, 0, "{out:?}");
    key
}

/// Request web1 as alice, approve as bob, fetch the certificate, log in to a real sshd.
fn issue_and_log_in(ca: &Ca, team: &Team, ca_pub: &Path) {
    let web1 = Sshd::start("web1", ca_pub, &["root"], "");
    let id = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 10m --reason INC-7 --no-wait",
    ));
    ca.ssh(&team.bob, &format!("approve {id}"), None).ok();
    let got = ca.ssh(&team.alice, &format!("get {id}"), None);
    got.ok();
    let cert = save_cert(team.dir.path(), "alice_ed25519", &got.stdout);
    let login = web1.login("root", &team.alice.key, &cert);
    login.ok();
    assert_eq!(login.stdout.trim(), "jitca-ok-root");
}

#[test]
fn an_encrypted_ca_key_opens_with_its_passphrase() {
    const SECRET: &str = "tr0ub4dor&3 horse";
    let team = Team::new();
    let keys = tempfile::tempdir().unwrap();
    let key = encrypted_key(keys.path(), SECRET);
    let pass = keys.path().join("ca.pass");
    std::fs::write(&pass, format!("{SECRET}\n")).unwrap();
    set_mode(&pass, 0o600);
    let config = team.config("1h").replace(
        "ca_key: ca\n",
        &format!(
            "ca_key: {}\nca_key_passphrase_file: {}\n",
            key.display(),
            pass.display()
        ),
    );

    // From a file: the daemon starts and signs; the passphrase is nowhere in its log.
    let ca = Ca::start(&config);
    issue_and_log_in(&ca, &team, &pub_path(&key));
    let log = ca.log.lock().unwrap().clone();
    assert!(
        log.contains(&format!(
            "encrypted key file {}, passphrase from file {}",
            key.display(),
            pass.display()
        )),
        "{log}"
    );
    assert!(
        !log.contains(SECRET) && !log.contains("PRIVATE KEY-----"),
        "{log}"
    );
    drop(ca);

    // The wrong passphrase: one clear message, no start, no passphrase shown.
    std::fs::write(&pass, "not the passphrase\n").unwrap();
    let (_dir, path) = init(&config);
    let out = serve_refused(&path, &[]);
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            ":3: ca_key_passphrase_file: the passphrase from file {} does not decrypt {} \
             (wrong passphrase)",
            pass.display(),
            key.display()
        )),
        "{out:?}"
    );
    assert!(!out.stderr.contains("not the passphrase"), "{out:?}");
    // A passphrase file others may read is refused like a key file.
    std::fs::write(&pass, format!("{SECRET}\n")).unwrap();
    set_mode(&pass, 0o644);
    let out = serve_refused(&path, &[]);
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            ":3: ca_key_passphrase_file: UNPROTECTED PASSPHRASE FILE! {} has mode 0644",
            pass.display()
        )) && out
            .stderr
            .contains(&format!("Fix: chmod 600 {}", pass.display())),
        "{out:?}"
    );

    // From a systemd credential: $CREDENTIALS_DIRECTORY/NAME, as LoadCredential= makes it.
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("jitca-ca-pass"), SECRET).unwrap();
    set_mode(&credentials.path().join("jitca-ca-pass"), 0o400);
    let with_credential = config.replace(
        &format!("ca_key_passphrase_file: {}\n", pass.display()),
        "ca_key_passphrase_credential: jitca-ca-pass\n",
    );
    std::fs::write(&path, &with_credential).unwrap();
    let env = [("CREDENTIALS_DIRECTORY", credentials.path())];
    check(&path, &env).ok();
    let outside = check(&path, &[]);
    assert_eq!(outside.status, 1, "{outside:?}");
    assert!(
        outside.stderr.contains(
            ":3: ca_key_passphrase_credential: the passphrase is the systemd credential \
             jitca-ca-pass, but $CREDENTIALS_DIRECTORY is not set"
        ),
        "{outside:?}"
    );
    let mut daemon = Command::new(JITCA)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("CREDENTIALS_DIRECTORY", credentials.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = wait_for_line(&mut daemon, "listening on");
    assert!(
        log.contains("passphrase from systemd credential jitca-ca-pass"),
        "{log}"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// Reads the daemon's stderr until a line contains `needle`; returns what was read.
fn wait_for_line(child: &mut Child, needle: &str) -> String {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_string();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(&needle) {
                let _ = tx.send(seen.clone());
            }
        }
        let _ = tx.send(seen);
    });
    let seen = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(seen.contains("listening on"), "did not start: {seen}");
    seen
}

/// A real `ssh-agent -D -a SOCKET`.
struct Agent {
    socket: PathBuf,
    child: Option<Child>,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent {
            socket,
            child: Some(child),
        }
    }

    fn ssh_add(&self, args: &[&str]) {
        let out = run(
            Command::new("ssh-add")
                .args(args)
                .env("SSH_AUTH_SOCK", &self.socket),
            None,
        );
        assert_eq!(out.status, 0, "ssh-add {args:?}: {out:?}");
    }

    /// SIGKILL: the agent dies without removing its socket.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pending(ca: &Ca, who: &Person, id: &str) {
    let shown = ca.show_json(who, id);
    assert_eq!(shown["state"], "pending", "{shown}");
    assert_eq!(shown["approvals"], serde_json::json!([]), "{shown}");
}

fn events_about(ca: &Ca, auditor: &Person, id: &str) -> Vec<String> {
    ca.audit_json(auditor, "")
        .iter()
        .filter(|e| e["request"] == id)
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_ca_key_in_ssh_agent_signs_until_the_agent_goes_away() {
    let team = Team::new();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("ca_in_agent");
    keygen(&key, "jitca-ca");
    let mut agent = Agent::start(keys.path());
    agent.ssh_add(&[key.to_str().unwrap()]);
    // The private key is not where jitca could read it: only the agent has it.
    let ca_pub = pub_path(&key);
    std::fs::rename(&key, keys.path().join("elsewhere")).unwrap();

    let config = team.config("1h").replace(
        "ca_key: ca\n",
        &format!(
            "ca_agent: {}\nca_public_key: {}\n",
            agent.socket.display(),
            ca_pub.display()
        ),
    );
    let ca = Ca::start(&config);
    assert!(
        ca.log.lock().unwrap().contains(&format!(
            "ssh-agent {} (public key {})",
            agent.socket.display(),
            ca_pub.display()
        )),
        "{}",
        ca.log.lock().unwrap()
    );
    // The CA key served is the agent's key.
    let served = ca.ssh(&team.alice, "ca-key", None);
    served.ok();
    let expected = std::fs::read_to_string(&ca_pub).unwrap();
    assert_eq!(
        served.stdout.split_whitespace().nth(1),
        expected.split_whitespace().nth(1)
    );

    // Signed through the agent; a real sshd that trusts the .pub accepts the certificate.
    issue_and_log_in(&ca, &team, &ca_pub);

    // The key taken out of the agent: the approval fails closed, the request stays pending.
    agent.ssh_add(&["-D"]);
    let id = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 10m --reason key gone --no-wait",
    ));
    ca.ssh(&team.bob, &format!("approve {id}"), None)
        .refused(&format!(
            "signing failed, nothing was issued: the ssh-agent holding the CA key ({}) refused to \
         sign with the CA key SHA256:",
            agent.socket.display()
        ));
    pending(&ca, &team.bob, &id);
    // Back in the agent: the same approval now issues, without a restart.
    agent.ssh_add(&[keys.path().join("elsewhere").to_str().unwrap()]);
    ca.ssh(&team.bob, &format!("approve {id}"), None).ok();
    ca.ssh(&team.alice, &format!("get {id}"), None).ok();

    // The agent killed.
    agent.kill();
    let id = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 10m --reason agent dead --no-wait",
    ));
    let message = format!(
        "signing failed, nothing was issued: the ssh-agent holding the CA key ({}) cannot be \
         reached: Connection refused (os error 111)",
        agent.socket.display()
    );
    ca.ssh(&team.bob, &format!("approve {id}"), None)
        .refused(&message);
    // Nothing stored: still pending, no approval, no issued (nor approved) record.
    pending(&ca, &team.bob, &id);
    assert_eq!(events_about(&ca, &team.ivy, &id), ["requested"]);
    // A rule with no approvals signs at submission: the request is not created at all.
    let before = ca.list_json(&team.ivy).len();
    ca.request(&team.alice, "lab1 --as root --for 5m --reason lab")
        .refused(&message);
    assert_eq!(ca.list_json(&team.ivy).len(), before);
    // The daemon logged it, and keeps serving.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ca.log.lock().unwrap().contains(&message) {
        assert!(Instant::now() < deadline, "{}", ca.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    ca.ssh(&team.alice, "whoami", None).ok();
    ca.ssh(&team.bob, "list --pending", None).ok();

    // A restart with the agent dead: refused, naming the setting and the agent.
    let out = serve_refused(&ca.config, &[]);
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            ":2: ca_agent: the ssh-agent holding the CA key ({}) cannot be reached",
            agent.socket.display()
        )),
        "{out:?}"
    );
    // An agent running without the CA key: refused too, with the fix.
    let _agent = Agent::start(keys.path());
    let out = serve_refused(&ca.config, &[]);
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains("does not hold the CA key SHA256:") && out.stderr.contains("ssh-add"),
        "{out:?}"
    );
    let checked = check(&ca.config, &[]);
    assert_eq!(checked.status, 1, "{checked:?}");
    assert!(checked.stderr.contains(":2: ca_agent: "), "{checked:?}");
}
