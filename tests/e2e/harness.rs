//! Real peers for the end-to-end tests: the `jitca` binary, OpenSSH's `ssh` and `ssh-keygen`,
//! and `sshd` on loopback ports. Nothing here is mocked.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const JITCA: &str = env!("CARGO_BIN_EXE_jitca");

/// What a finished command gave.
#[derive(Debug, Clone)]
pub struct Out {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(output: std::process::Output) -> Self {
        Out {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.status, 0, "expected success, got {self:#?}");
        self
    }

    /// A refusal: exit 1 and one `jitca:` line on stderr containing `needle`.
    #[track_caller]
    pub fn refused(&self, needle: &str) -> &Self {
        assert_eq!(
            self.status, 1,
            "expected exit 1 containing {needle:?}, got {self:#?}"
        );
        self.one_line(needle)
    }

    /// A usage error: exit 2 and one `jitca:` line on stderr containing `needle`.
    #[track_caller]
    pub fn usage(&self, needle: &str) -> &Self {
        assert_eq!(
            self.status, 2,
            "expected exit 2 containing {needle:?}, got {self:#?}"
        );
        self.one_line(needle)
    }

    #[track_caller]
    fn one_line(&self, needle: &str) -> &Self {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("jitca: "))
            .collect();
        assert_eq!(lines.len(), 1, "expected one jitca: line, got {self:#?}");
        assert!(
            lines[0].contains(needle),
            "expected {needle:?} in {self:#?}"
        );
        assert!(
            self.stdout.is_empty(),
            "a refusal printed on stdout: {self:#?}"
        );
        self
    }
}

pub fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Out {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        // Written from a thread: a large input must not deadlock against our reads.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    Out::from(child.wait_with_output().expect("wait"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A person with an SSH key pair made by `ssh-keygen`.
#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub key: PathBuf,
}

impl Person {
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = dir.join(format!("{name}_ed25519"));
        keygen(&key, name);
        Person {
            name: name.to_string(),
            key,
        }
    }

    pub fn public_key(&self) -> String {
        std::fs::read_to_string(pub_path(&self.key))
            .unwrap()
            .trim()
            .to_string()
    }
}

pub fn pub_path(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

pub fn keygen(path: &Path, comment: &str) {
    let out = run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
        None,
    );
    assert_eq!(out.status, 0, "ssh-keygen: {out:?}");
}

/// Options that keep the OpenSSH client to exactly the key given, non-interactive.
fn client_options(cmd: &mut Command, key: &Path) {
    client_options_for(cmd, key, false);
}

/// The same, or (`interactive`) answering one keyboard-interactive prompt through
/// `SSH_ASKPASS`, as a script does for jitca's one-time code. OpenSSH keeps the first value
/// given for an option, so the two sets cannot be layered.
pub fn client_options_for(cmd: &mut Command, key: &Path, interactive: bool) {
    cmd.arg("-i")
        .arg(key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]);
    if interactive {
        cmd.args([
            "-o",
            "BatchMode=no",
            "-o",
            "KbdInteractiveAuthentication=yes",
            "-o",
            "PreferredAuthentications=publickey,keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
        ]);
    } else {
        cmd.args(["-o", "BatchMode=yes"]);
    }
    cmd.args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-F",
        "/dev/null",
    ]);
}

/// `ssh` with the tests' client options and `key` as its only identity.
pub fn ssh_client(key: &Path) -> Command {
    let mut cmd = Command::new("ssh");
    client_options(&mut cmd, key);
    cmd
}

/// A running `jitca serve` with its own folder, config and store.
pub struct Ca {
    pub dir: TempDir,
    pub config: PathBuf,
    pub port: u16,
    child: Option<Child>,
    pub log: Arc<Mutex<String>>,
}

impl Ca {
    /// `jitca init` in a fresh folder, then `config` written as jitca.yaml, then `serve`.
    pub fn start(config: &str) -> Ca {
        let dir = tempfile::tempdir().unwrap();
        let init = run(
            Command::new(JITCA).arg("init").arg("--dir").arg(dir.path()),
            None,
        );
        assert_eq!(init.status, 0, "init: {init:?}");
        let path = dir.path().join("jitca.yaml");
        std::fs::write(&path, config).unwrap();
        let mut ca = Ca {
            dir,
            config: path,
            // Fixed across restarts, so clients can keep connecting to the same address.
            port: free_port(),
            child: None,
            log: Arc::default(),
        };
        ca.spawn();
        ca
    }

    fn spawn(&mut self) {
        let mut child = Command::new(JITCA)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("JITCA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jitca");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(port) = line
                    .split("listening on 127.0.0.1:")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|p| p.parse::<u16>().ok())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        self.port = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("jitca did not start:\n{}", self.log.lock().unwrap()));
        self.child = Some(child);
    }

    /// Stops the daemon with SIGTERM, as systemd would, and waits for it to exit.
    pub fn stop(&mut self) -> i32 {
        let Some(mut child) = self.child.take() else {
            return -1;
        };
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        child.wait().unwrap().code().unwrap_or(-1)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (`HUP`, `TERM`...) to the running daemon.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Stops the daemon (SIGKILL: nothing gets a chance to flush) and starts it again.
    pub fn restart_hard(&mut self) {
        self.stop_hard();
        self.spawn();
    }

    pub fn stop_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `ssh -p PORT jitca@127.0.0.1 COMMAND` as `who`, with `stdin` piped in if given.
    pub fn ssh(&self, who: &Person, command: &str, stdin: Option<&[u8]>) -> Out {
        self.ssh_with(who, &[], command, stdin)
    }

    pub fn ssh_with(
        &self,
        who: &Person,
        extra: &[&str],
        command: &str,
        stdin: Option<&[u8]>,
    ) -> Out {
        let mut cmd = Command::new("ssh");
        client_options(&mut cmd, &who.key);
        cmd.args(["-p", &self.port.to_string()])
            .args(extra)
            .arg("jitca@127.0.0.1")
            .arg(command);
        run(&mut cmd, stdin)
    }

    /// `request` with `who`'s own public key on stdin.
    pub fn request(&self, who: &Person, args: &str) -> Out {
        let key = who.public_key();
        self.ssh(who, &format!("request {args}"), Some(key.as_bytes()))
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The audit log as JSON objects, read over the control channel by `who`.
    pub fn audit_json(&self, who: &Person, filters: &str) -> Vec<serde_json::Value> {
        let out = self.ssh(who, &format!("audit --json {filters}"), None);
        out.ok();
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
            .collect()
    }

    pub fn ca_pub(&self) -> PathBuf {
        self.dir.path().join("ca.pub")
    }

    /// Every request the auditor-ish `who` may see, as JSON objects.
    pub fn list_json(&self, who: &Person) -> Vec<serde_json::Value> {
        let out = self.ssh(who, "list --json", None);
        out.ok();
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
            .collect()
    }

    /// The id of `who`'s request made with `reason`.
    pub fn id_by_reason(&self, who: &Person, reason: &str) -> String {
        self.list_json(who)
            .into_iter()
            .find(|r| r["reason"] == reason)
            .unwrap_or_else(|| panic!("no request with reason {reason:?}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn show_json(&self, who: &Person, id: &str) -> serde_json::Value {
        let out = self.ssh(who, &format!("show {id} --json"), None);
        out.ok();
        serde_json::from_str(out.stdout.trim()).unwrap()
    }
}

/// `ssh -p PORT jitca@127.0.0.1 COMMAND` as `who`.
pub fn ssh_at(port: u16, who: &Person, extra: &[&str], command: &str, stdin: Option<&[u8]>) -> Out {
    let mut cmd = Command::new("ssh");
    client_options(&mut cmd, &who.key);
    cmd.args(["-p", &port.to_string()])
        .args(extra)
        .arg("jitca@127.0.0.1")
        .arg(command);
    run(&mut cmd, stdin)
}

/// `request ARGS` as `who`, with their own public key on stdin.
pub fn request_at(port: u16, who: &Person, args: &str) -> Out {
    let key = who.public_key();
    ssh_at(
        port,
        who,
        &[],
        &format!("request {args}"),
        Some(key.as_bytes()),
    )
}

impl Drop for Ca {
    fn drop(&mut self) {
        self.stop_hard();
    }
}

/// A real `sshd` on a loopback port, standing for one host: it trusts the CA and reads
/// principals from `principals/%u`, holding `LOGIN@HOST` for each login.
pub struct Sshd {
    pub dir: TempDir,
    pub port: u16,
    child: Child,
}

impl Sshd {
    pub fn start(host: &str, ca_pub: &Path, logins: &[&str], extra_config: &str) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd (are the tests running as root?)");
        keygen(&d.join("host_key"), "sshd-host");
        std::fs::create_dir(d.join("principals")).unwrap();
        for login in logins {
            std::fs::write(
                d.join("principals").join(login),
                format!("{login}@{host}\n"),
            )
            .unwrap();
        }
        std::fs::copy(ca_pub, d.join("ca.pub")).unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile none\nTrustedUserCAKeys {d}/ca.pub\n\
             AuthorizedPrincipalsFile {d}/principals/%u\nLogLevel VERBOSE\n{extra_config}\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/sshd (is openssh-server installed? scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { dir, port, child }
    }

    /// Logs in as `login` with `key` and `cert`, runs `echo jitca-ok-$(id -un)`.
    pub fn login(&self, login: &str, key: &Path, cert: &Path) -> Out {
        let mut cmd = Command::new("ssh");
        client_options(&mut cmd, key);
        cmd.arg("-o")
            .arg(format!("CertificateFile={}", cert.display()))
            .args(["-p", &self.port.to_string()])
            .arg(format!("{login}@127.0.0.1"))
            .arg("echo jitca-ok-$(id -un)");
        run(&mut cmd, None)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Sshd {
    /// The lines every test `sshd` needs (loopback port, its own host key and pid file, no PAM,
    /// public keys only), without any certificate settings: for a caller's own config file.
    /// The host key is `d/host_key`, made by `keygen` if absent.
    pub fn base_config(d: &Path, port: u16) -> String {
        if !d.join("host_key").exists() {
            keygen(&d.join("host_key"), "sshd-host");
        }
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile none\nLogLevel VERBOSE\n",
            d = d.display()
        )
    }

    /// Starts `sshd -D -e -f CONFIG` with a config the caller wrote, listening on `port`;
    /// `dir` is kept for the sshd's life and gets its log, `dir/sshd.log`.
    pub fn start_with_config(dir: TempDir, port: u16, config: &Path) -> Sshd {
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd (are the tests running as root?)");
        let d = dir.path();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/sshd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { dir, port, child }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A team for the tests: alice requests; bob, carol and frank approve web; dave approves db;
/// ivy audits; `web1` is a host's own key (no groups) for fetching the KRL; mallory has a key
/// nobody registered.
pub struct Team {
    pub dir: TempDir,
    pub alice: Person,
    pub bob: Person,
    pub carol: Person,
    pub frank: Person,
    pub dave: Person,
    pub ivy: Person,
    pub web1: Person,
    pub mallory: Person,
}

impl Team {
    pub fn new() -> Team {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| Person::new(dir.path(), n);
        Team {
            alice: p("alice"),
            bob: p("bob"),
            carol: p("carol"),
            frank: p("frank"),
            dave: p("dave"),
            ivy: p("ivy"),
            web1: p("web1"),
            mallory: p("mallory"),
            dir,
        }
    }

    /// The standard config: `web` needs one approval from sre, `pair` two, `db` one from dba,
    /// `lab` none.
    pub fn config(&self, pending_ttl: &str) -> String {
        let user = |p: &Person, groups: &str| {
            format!(
                "  {}:\n    keys: [\"{}\"]\n    groups: [{groups}]\n",
                p.name,
                p.public_key()
            )
        };
        format!(
            "listen: \"127.0.0.1:0\"\nca_key: ca\nhost_key: host_ed25519\ndata_dir: data\n\
             pending_ttl: {pending_ttl}\nusers:\n{}{}{}{}{}{}{}\
             hosts:\n  web: [web1, web2]\n  pairs: [pair1]\n  db: [db1]\n  lab: [lab1]\n\
             rules:\n\
             \x20 - name: dev-web\n    requesters: [dev]\n    hosts: [web]\n    logins: [root, nobody]\n    max_duration: 2h\n    approvals: 1\n    approvers: [sre]\n\
             \x20 - name: dev-pair\n    requesters: [dev]\n    hosts: [pairs]\n    logins: [root]\n    max_duration: 1h\n    approvals: 2\n    approvers: [sre]\n\
             \x20 - name: dev-db\n    requesters: [dev]\n    hosts: [db]\n    logins: [root]\n    max_duration: 1h\n    approvals: 1\n    approvers: [dba]\n\
             \x20 - name: dev-lab\n    requesters: [dev]\n    hosts: [lab]\n    logins: [root]\n    max_duration: 30m\n    approvals: 0\n    extensions: [permit-pty, permit-port-forwarding]\n    force_command: \"echo forced\"\n\
             auditors: [audit]\n",
            user(&self.alice, "dev"),
            user(&self.bob, "sre"),
            user(&self.carol, "sre"),
            user(&self.frank, "sre, dev"),
            user(&self.dave, "dba"),
            user(&self.ivy, "audit"),
            user(&self.web1, ""),
        )
    }
}

/// `jitca serve --dev --dir DIR` on a free port with `HOME` (and `TMPDIR`) = `home`, read
/// until its stderr has a line containing `until`: the child, what it printed up to there,
/// and the port it listens on.
pub fn serve_dev(dir: &Path, home: &Path, until: &'static str) -> (Child, String, u16) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(JITCA)
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .env("HOME", home)
        .env("USER", "root")
        .env("TMPDIR", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(until) {
                let _ = tx.send(seen.clone());
            }
        }
    });
    let printed = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("dev mode printed its banner");
    let port: u16 = printed
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    (child, printed, port)
}

/// A copy of a stopped daemon's store (`data`), with `change` done to its sled trees.
pub fn copy_store(data: &Path, change: impl FnOnce(&sled::Db)) -> TempDir {
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(data)
        .arg(copy.path().join("data"))
        .status()
        .unwrap();
    assert!(status.success());
    {
        let db = sled::open(copy.path().join("data")).unwrap();
        change(&db);
        db.flush().unwrap();
    }
    copy
}

/// Runs `jitca ARGS` offline, retrying for up to 10 s while sled's background thread still
/// holds a just-closed copy's lock.
pub fn jitca_offline<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = run(Command::new(JITCA).args(args), None);
        if !out.stderr.contains("holds its lock") || std::time::Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Polls `done` every 100 ms, for at most 20 s.
#[track_caller]
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Requests a `lab1` certificate for alice (no approval needed) and saves it under `name`
/// (also the reason): the request id and the certificate's path.
pub fn lab_cert(ca: &Ca, team: &Team, name: &str) -> (String, PathBuf) {
    let out = ca.request(
        &team.alice,
        &format!("lab1 --as root --for 30m --reason {name}"),
    );
    out.ok();
    let id = ca.id_by_reason(&team.alice, name);
    (id, save_cert(team.dir.path(), name, &out.stdout))
}

/// `ssh-keygen -Q -f KRL CERT`: true when the KRL revokes the certificate.
pub fn revoked_by(krl: &Path, cert: &Path) -> bool {
    let out = run(
        Command::new("ssh-keygen")
            .arg("-Q")
            .arg("-f")
            .arg(krl)
            .arg(cert),
        None,
    );
    match out.status {
        0 => false,
        1 => true,
        _ => panic!("ssh-keygen -Q failed: {out:?}"),
    }
}

/// `ssh -p PORT jitca@127.0.0.1 COMMAND` as `who`, answering the one-time-code prompt with
/// the askpass `script`, as a script would.
pub fn ssh_answering(
    port: u16,
    who: &Person,
    script: &Path,
    command: &str,
    stdin: Option<&[u8]>,
) -> Out {
    let mut cmd = Command::new("ssh");
    client_options_for(&mut cmd, &who.key, true);
    cmd.args(["-p", &port.to_string(), "jitca@127.0.0.1", command]);
    cmd.env("SSH_ASKPASS", script)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0");
    run(&mut cmd, stdin)
}

/// A known_hosts file in `dir` that pins the CA's host key, as a host keeps it.
pub fn pin_ca_host_key(ca: &Ca, dir: &Path) -> PathBuf {
    let host_pub = std::fs::read_to_string(ca.dir.path().join("host_ed25519.pub")).unwrap();
    let path = dir.join("known_hosts");
    std::fs::write(&path, format!("[127.0.0.1]:{} {host_pub}", ca.port)).unwrap();
    path
}

/// The request id a `request --no-wait` printed.
pub fn id_of(out: &Out) -> String {
    out.ok();
    let id = out.stdout.trim().to_string();
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()),
        "{out:?}"
    );
    id
}

/// Writes a certificate next to a copy of the person's key, as `ssh` expects it.
pub fn save_cert(dir: &Path, name: &str, cert: &str) -> PathBuf {
    let path = dir.join(format!("{name}-cert.pub"));
    std::fs::write(&path, cert).unwrap();
    path
}

pub fn keygen_l(cert: &Path) -> String {
    let out = run(
        Command::new("ssh-keygen").arg("-L").arg("-f").arg(cert),
        None,
    );
    assert_eq!(out.status, 0, "{out:?}");
    out.stdout
}

/// A real `ssh-agent` on its own socket, killed on drop.
pub struct Agent {
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Child,
}

impl Agent {
    pub fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent {
            _dir: dir,
            socket,
            child,
        }
    }

    /// `ssh-add KEY`.
    pub fn add(&self, key: &Path) {
        let out = run(
            Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.socket),
            None,
        );
        assert_eq!(out.status, 0, "{out:?}");
    }

    /// `ssh-add -l`: what the agent holds.
    pub fn list(&self) -> String {
        run(
            Command::new("ssh-add")
                .arg("-l")
                .env("SSH_AUTH_SOCK", &self.socket),
            None,
        )
        .stdout
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files `jitca init` makes that every daemon of one CA must share: the CA key (clients
/// and hosts see one CA), the control channel's host key (clients see one host), the key
/// signing audit checkpoints and the key sealing second-factor secrets.
const SHARED_KEY_FILES: &[&str] = &[
    "ca",
    "ca.pub",
    "host_ed25519",
    "host_ed25519.pub",
    "audit_ed25519",
    "audit_ed25519.pub",
    "mfa.key",
];

impl Ca {
    /// Another daemon of the same CA as `first`: its own folder holding copies of `first`'s
    /// keys (modes kept), the same config text, its own listen port.
    pub fn start_sharing(first: &Ca) -> Ca {
        let config = std::fs::read_to_string(&first.config).unwrap();
        Ca::start_sharing_with(first, &config)
    }

    /// Like [`Ca::start_sharing`] with `config` as its jitca.yaml (for example `first`'s config
    /// with a `store:` added). `first` may be stopped.
    pub fn start_sharing_with(first: &Ca, config: &str) -> Ca {
        let dir = tempfile::tempdir().unwrap();
        for name in SHARED_KEY_FILES {
            let from = first.dir.path().join(name);
            // std::fs::copy keeps the permission bits (0600, mfa.key's 0400).
            std::fs::copy(&from, dir.path().join(name))
                .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        }
        let path = dir.path().join("jitca.yaml");
        std::fs::write(&path, config).unwrap();
        let mut ca = Ca {
            dir,
            config: path,
            port: free_port(),
            child: None,
            log: Arc::default(),
        };
        ca.spawn();
        ca
    }
}

impl Team {
    /// The standard config ([`Team::config`]) keeping everything in the PostgreSQL database
    /// at `url`.
    pub fn config_with_store(&self, pending_ttl: &str, url: &str) -> String {
        format!("{}store: {url}\n", self.config(pending_ttl))
    }
}

/// `config` with `limits.store_timeout` set (the config must have no `limits:` yet).
pub fn with_store_timeout(config: &str, timeout: &str) -> String {
    assert!(!config.contains("\nlimits:"), "{config}");
    format!("{config}limits:\n  store_timeout: {timeout}\n")
}
