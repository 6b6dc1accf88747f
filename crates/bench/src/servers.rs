//! The two servers under test, each in a folder of its own: `jitca serve`, and a real `sshd`
//! whose forced command is the shell-script CA people build by hand. Plus the OpenSSH client
//! command lines that talk to them, fresh or through a ControlMaster.

use std::io::BufRead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// The key exchange both sides use (the default hybrid one costs the client far more CPU).
pub const KEX: &str = "curve25519-sha256";
/// What every issuance asks for; the shell CA ignores it (its forced command runs instead).
pub const REQUEST: &str = "request lab --as x --for 5m --reason bench";
/// The same on a rule that needs an approval, left pending.
pub const PENDING: &str = "request prod --as x --for 5m --reason bench --no-wait";
/// The local account the shell CA's forced command runs as (a login shell of /bin/sh and an
/// empty home: root's own ~/.bashrc here runs pyenv, which would slow the baseline unfairly).
pub const SHELL_CA_ACCOUNT: &str = "jitcabench";

/// Makes an ed25519 key pair with `ssh-keygen`.
pub fn keygen(path: &Path, comment: &str) -> Result<()> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("run ssh-keygen (is openssh-client installed?)")?;
    if !status.success() {
        bail!("ssh-keygen -f {} failed", path.display());
    }
    Ok(())
}

pub fn pub_path(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

/// A server the load runs against.
pub trait Target: Sync {
    fn name(&self) -> &'static str;
    fn port(&self) -> u16;
    fn login(&self) -> &str;
    /// The process whose tree is the server (CPU, memory).
    fn pid(&self) -> u32;
    /// Processes the server keeps for each open connection (beside the listener).
    fn processes_per_connection(&self) -> usize;
}

/// OpenSSH client options: exactly the key given, no config files, no prompts, no agent,
/// no known-hosts bookkeeping, the key exchange pinned.
pub fn client_base(cmd: &mut Command, key: &Path) {
    cmd.arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(key)
        .args(["-o", &format!("KexAlgorithms={KEX}")])
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "UpdateHostKeys=no",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
        ]);
}

/// `ssh ... LOGIN@127.0.0.1 COMMAND` over a fresh connection.
pub fn fresh_command(target: &dyn Target, key: &Path, command: &str) -> Command {
    let mut cmd = Command::new("ssh");
    client_base(&mut cmd, key);
    cmd.args(["-p", &target.port().to_string()])
        .arg(format!("{}@127.0.0.1", target.login()))
        .arg(command);
    cmd
}

/// `ssh -S CONTROL ... COMMAND`: the command over the master's connection.
pub fn mux_command(target: &dyn Target, control: &Path, command: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-S"])
        .arg(control)
        .args([
            "-o",
            "ControlMaster=no",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ])
        .args(["-p", &target.port().to_string()])
        .arg(format!("{}@127.0.0.1", target.login()))
        .arg(command);
    cmd
}

/// One OpenSSH ControlMaster (`ssh -M -N`), a child of this process until dropped.
pub struct Master {
    pub child: Child,
    pub control: PathBuf,
}

impl Master {
    /// Starts the master; `wait` says whether to block until it has authenticated (its control
    /// socket exists).
    pub fn start(target: &dyn Target, key: &Path, control: PathBuf, wait: bool) -> Result<Self> {
        let mut cmd = Command::new("ssh");
        client_base(&mut cmd, key);
        cmd.args(["-M", "-N", "-o", "ControlPersist=no", "-S"])
            .arg(&control)
            .args(["-p", &target.port().to_string()])
            .arg(format!("{}@127.0.0.1", target.login()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().context("start ssh -M")?;
        let mut master = Master { child, control };
        if wait {
            master.wait_ready(Duration::from_secs(60))?;
        }
        Ok(master)
    }

    pub fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while !self.control.exists() {
            if let Some(status) = self.child.try_wait()? {
                bail!("ssh -M exited ({status}) before authenticating");
            }
            if Instant::now() > deadline {
                bail!("ssh -M did not authenticate within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.control);
    }
}

/// Waits until something accepts TCP connections on `port`.
fn wait_listening(port: u16, child: &mut Child, what: &str, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if child.try_wait()?.is_some() || Instant::now() > deadline {
            bail!(
                "{what} did not start:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A running `jitca serve` with its own folder, keys, config and store.
pub struct Jitca {
    pub dir: TempDir,
    child: Child,
    port: u16,
}

/// `jitca init` in a new folder, plus an approver's key (someone must be able to approve
/// `prod`, or the config is refused; nobody does).
pub fn ca_folder(jitca: &Path) -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("jitca-bench-ca.")
        .tempdir()?;
    let d = dir.path();
    let init = Command::new(jitca)
        .arg("init")
        .arg("--dir")
        .arg(d)
        .stdout(Stdio::null())
        .output()
        .with_context(|| format!("run {} init", jitca.display()))?;
    if !init.status.success() {
        bail!("jitca init: {}", String::from_utf8_lossy(&init.stderr));
    }
    keygen(&d.join("approver_ed25519"), "approver")?;
    Ok(dir)
}

/// The bench's config for a folder made by [`ca_folder`]: `user_pub` registered as `bench`
/// (group dev) with the rules `lab` (no approval) and `prod` (one approval, from a group nobody
/// here is in), `limits` raised so the load is never refused, listening on `listen`, and the
/// store in `data_dir` or, with `store`, that PostgreSQL URL.
pub fn config_yaml(
    dir: &Path,
    user_pub: &Path,
    listen: &str,
    store: Option<&str>,
) -> Result<String> {
    let key = std::fs::read_to_string(user_pub)?;
    let approver = std::fs::read_to_string(dir.join("approver_ed25519.pub"))?;
    let store = store
        .map(|url| format!("store: \"{url}\"\n"))
        .unwrap_or_default();
    Ok(format!(
        "listen: \"{listen}\"\nca_key: ca\nhost_key: host_ed25519\ndata_dir: data\n{store}\
         pending_ttl: 2h\n\
         # The load holds up to 32 connections of one user, and the memory run 500.\n\
         limits:\n  max_startups: 2048\n  max_startups_per_source: 2048\n  max_sessions_per_user: 2048\n\
         users:\n  bench:\n    keys: [\"{}\"]\n    groups: [dev]\n\
         \x20 approver:\n    keys: [\"{}\"]\n    groups: [sre]\n\
         hosts:\n  lab: [lab]\n  prod: [prod]\n\
         rules:\n\
         \x20 - name: lab\n    requesters: [dev]\n    hosts: [lab]\n    logins: [x]\n    max_duration: 1h\n    approvals: 0\n\
         \x20 - name: prod\n    requesters: [dev]\n    hosts: [prod]\n    logins: [x]\n    max_duration: 1h\n    approvals: 1\n    approvers: [sre]\n",
        key.trim(),
        approver.trim()
    ))
}

/// Starts `jitca serve --config CONFIG` (with `--listen` when given), its log in `log_path`,
/// and waits until it listens: the child and its port (read from the log).
fn serve(
    jitca: &Path,
    config: &Path,
    listen: Option<&str>,
    log_path: &Path,
) -> Result<(Child, u16)> {
    let log = std::fs::File::create(log_path)?;
    let mut cmd = Command::new(jitca);
    cmd.arg("serve").arg("--config").arg(config);
    if let Some(listen) = listen {
        cmd.args(["--listen", listen]);
    }
    let mut child = cmd
        .env("JITCA_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("start jitca serve")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let found = std::fs::File::open(log_path).ok().and_then(|f| {
            std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .find_map(|l| {
                    let rest = l.split("listening on 127.0.0.1:").nth(1)?;
                    rest.split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse::<u16>()
                        .ok()
                })
        });
        if let Some(port) = found {
            break port;
        }
        if child.try_wait()?.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "jitca serve did not start:\n{}",
                std::fs::read_to_string(log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Err(e) = wait_listening(port, &mut child, "jitca serve", log_path) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok((child, port))
}

impl Jitca {
    /// `jitca init`, a config registering `user_pub` as `bench` (group dev) with the rules
    /// `lab` (no approval) and `prod` (one approval, from a group nobody here is in), and
    /// `limits` raised so the load is never refused; then `serve`.
    pub fn start(jitca: &Path, user_pub: &Path) -> Result<Self> {
        let dir = ca_folder(jitca)?;
        let d = dir.path();
        std::fs::write(
            d.join("jitca.yaml"),
            config_yaml(d, user_pub, "127.0.0.1:0", None)?,
        )?;
        let (child, port) = serve(
            jitca,
            &d.join("jitca.yaml"),
            Some("127.0.0.1:0"),
            &d.join("serve.log"),
        )?;
        Ok(Jitca { dir, child, port })
    }
}

/// One of possibly several `jitca serve` sharing a folder made by [`ca_folder`] (so the same
/// CA key, host key, audit key and mfa.key), each with a config of its own that differs only
/// in `listen:`, as daemons sharing one PostgreSQL database are set up.
pub struct Daemon {
    child: Child,
    port: u16,
    /// The daemon's log.
    pub log: PathBuf,
}

impl Daemon {
    /// Writes `jitca-NAME.yaml` in `dir` ([`config_yaml`] on a free loopback port, with
    /// `store`) and serves it, its log in `serve-NAME.log`.
    pub fn start(
        jitca: &Path,
        dir: &Path,
        name: &str,
        user_pub: &Path,
        store: Option<&str>,
    ) -> Result<Self> {
        let config = dir.join(format!("jitca-{name}.yaml"));
        let listen = format!("127.0.0.1:{}", free_port()?);
        std::fs::write(&config, config_yaml(dir, user_pub, &listen, store)?)?;
        let log = dir.join(format!("serve-{name}.log"));
        let (child, port) = serve(jitca, &config, None, &log)?;
        Ok(Daemon { child, port, log })
    }
}

impl Target for Daemon {
    fn name(&self) -> &'static str {
        "jitca"
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn login(&self) -> &str {
        "jitca"
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn processes_per_connection(&self) -> usize {
        0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target for Jitca {
    fn name(&self) -> &'static str {
        "jitca"
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn login(&self) -> &str {
        "jitca"
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn processes_per_connection(&self) -> usize {
        0
    }
}

impl Drop for Jitca {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shell-script CA: public key on stdin, certificate on stdout. Builtins only apart from
/// `ssh-keygen` itself and one `rm`. Serials: the time in microseconds and the process id
/// (unique: one pid cannot run twice within a microsecond).
const CA_SCRIPT: &str = r#"#!/bin/bash
# The shell-script CA: read the public key, sign it with ssh-keygen, print the certificate.
set -eu
umask 077
work=@WORK@
IFS= read -r key
printf '%s\n' "$key" > "$work/$$.pub"
serial=${EPOCHREALTIME/./}$(( $$ % 1000 ))
ssh-keygen -q -s @CA@ -I "bench-$serial" -n x@lab -V +5m -z "$serial" "$work/$$.pub"
while IFS= read -r line; do printf '%s\n' "$line"; done < "$work/$$-cert.pub"
rm -f "$work/$$.pub" "$work/$$-cert.pub"
"#;

/// A real `sshd` on a loopback port (test-style: its own host key and pid file, no PAM, no
/// strict modes), the client's key in its authorized keys, and a `ForceCommand` running
/// the shell CA script (`CA_SCRIPT`) as [`SHELL_CA_ACCOUNT`].
pub struct ShellCa {
    pub dir: TempDir,
    child: Child,
    port: u16,
}

impl ShellCa {
    pub fn start(user_pub: &Path) -> Result<Self> {
        ensure_account(SHELL_CA_ACCOUNT)?;
        std::fs::create_dir_all("/run/sshd").context("/run/sshd (run as root)")?;
        let dir = tempfile::Builder::new()
            .prefix("jitca-bench-sshd.")
            .tempdir()?;
        let d = dir.path();
        // The account must reach its script, key and work folder.
        chmod(d, 0o755)?;
        keygen(&d.join("host_key"), "sshd-host")?;
        keygen(&d.join("ca"), "shell-ca")?;
        std::fs::create_dir(d.join("work"))?;
        std::fs::copy(user_pub, d.join("authorized_keys"))?;
        chmod(&d.join("authorized_keys"), 0o644)?;
        let script = CA_SCRIPT
            .replace("@WORK@", &d.join("work").display().to_string())
            .replace("@CA@", &d.join("ca").display().to_string());
        std::fs::write(d.join("ca.sh"), script)?;
        chmod(&d.join("ca.sh"), 0o755)?;
        let chown = Command::new("chown")
            .arg(format!("{SHELL_CA_ACCOUNT}:"))
            .arg(d.join("ca"))
            .arg(d.join("work"))
            .status()?;
        if !chown.success() {
            bail!("chown {SHELL_CA_ACCOUNT} failed");
        }
        let port = free_port()?;
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             UsePAM no\nStrictModes no\nPermitRootLogin no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile {d}/authorized_keys\nForceCommand {d}/ca.sh\n\
             KexAlgorithms {KEX}\n\
             # The load opens up to 32 connections at once, the memory run 500.\n\
             MaxStartups 2048\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config)?;
        let log_path = d.join("sshd.log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start /usr/sbin/sshd (is openssh-server installed?)")?;
        wait_listening(port, &mut child, "sshd", &log_path)?;
        Ok(ShellCa { dir, child, port })
    }
}

impl Target for ShellCa {
    fn name(&self) -> &'static str {
        "shell CA"
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn login(&self) -> &str {
        SHELL_CA_ACCOUNT
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn processes_per_connection(&self) -> usize {
        // The privileged monitor and the session process running as the account.
        2
    }
}

impl Drop for ShellCa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The shell CA's account: made when missing (like the e2e tests' `deploy`), with /bin/sh as
/// its shell and no password (usable by sshd for public keys only).
fn ensure_account(name: &str) -> Result<()> {
    let exists = Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if exists {
        return Ok(());
    }
    // useradd waits for the passwd lock only so long; another test may hold it.
    let mut made = false;
    for _ in 0..5 {
        made = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", name])
            .status()
            .context("useradd (run as root)")?
            .success();
        let exists = Command::new("id")
            .arg(name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        if made || exists {
            made = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    if !made {
        bail!("cannot create the account {name} (run as root)");
    }
    let unlocked = Command::new("usermod").args(["-p", "*", name]).status()?;
    if !unlocked.success() {
        bail!("usermod -p '*' {name} failed");
    }
    Ok(())
}
