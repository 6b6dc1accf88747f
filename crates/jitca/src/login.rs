//! `jitca login`: the engineer's convenience over `ssh ... request`. It runs the OpenSSH
//! client (so ~/.ssh/config, the agent and known_hosts all apply) with a fresh key pair made
//! for this grant, and puts key and certificate into ssh-agent for exactly the certificate's
//! remaining lifetime, so the key dies with the grant.

use std::fs::DirBuilder;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use ssh_key::{Certificate, LineEnding, PrivateKey};

use crate::cli::LoginArgs;
use crate::init::write_new;

pub fn run(args: LoginArgs) -> Result<()> {
    let (host, port) = split_ca(&args.ca);
    if args.out.is_none() {
        check_agent()?;
    }
    if let Some(out) = &args.out {
        for path in [out.clone(), cert_path(out)] {
            if path.exists() {
                bail!(
                    "{} exists already; refusing to overwrite it",
                    path.display()
                );
            }
        }
    }
    let key =
        jitca_signer::generate_ed25519(&format!("jitca-login {} as {}", args.hosts, args.login))?;
    let public = key.public_key().to_openssh()?;

    let reason = args.reason.join(" ");
    let remote = [
        "request",
        &args.hosts,
        "--as",
        &args.login,
        "--for",
        &args.duration,
        "--reason",
        &reason,
    ]
    .iter()
    .map(|w| shlex::try_quote(w).map(|q| q.into_owned()))
    .collect::<Result<Vec<_>, _>>()
    .context("an argument holds a NUL byte")?
    .join(" ");
    let mut ssh = Command::new("ssh");
    if let Some(port) = port {
        ssh.args(["-p", port]);
    }
    if let Some(identity) = &args.identity {
        ssh.arg("-i").arg(identity);
    }
    for option in &args.ssh_options {
        ssh.arg("-o").arg(option);
    }
    ssh.arg(host).arg(remote);
    // Progress from the CA goes straight to the user's stderr; the certificate comes on stdout.
    let mut child = ssh
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run ssh (is the OpenSSH client installed?)")?;
    {
        let mut stdin = child.stdin.take().expect("piped");
        // If ssh fails before reading, its exit status says why.
        let _ = stdin.write_all(format!("{public}\n").as_bytes());
    }
    let output = child.wait_with_output().context("ssh did not finish")?;
    match output.status.code() {
        Some(0) => {}
        Some(255) => bail!(
            "cannot reach the CA at {} (ssh's message above says why)",
            args.ca
        ),
        Some(_) => bail!("no certificate: the CA refused (its message above says why)"),
        None => bail!("ssh was killed"),
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let cert =
        Certificate::from_openssh(text.trim()).context("the CA's answer is not a certificate")?;
    if cert.public_key() != key.public_key().key_data() {
        bail!("the CA certified another key than the one sent; not using it");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let lifetime = cert.valid_before().saturating_sub(now);
    if lifetime == 0 {
        bail!("the certificate has expired already (is this machine's clock right?)");
    }
    let cert_line = format!("{}\n", text.trim());

    match &args.out {
        Some(out) => {
            write_private(out, &key)?;
            write_new(&cert_path(out), cert_line.as_bytes(), 0o644)?;
            eprintln!(
                "certificate serial {} written to {} (key {}), valid for {}",
                cert.serial(),
                cert_path(out).display(),
                out.display(),
                human(lifetime)
            );
            for (login, host) in pairs(&args) {
                println!("ssh -i {} {login}@{host}", out.display());
            }
        }
        None => {
            load_into_agent(&key, &cert_line, lifetime)?;
            eprintln!(
                "certificate serial {} loaded into ssh-agent; it leaves the agent in {}",
                cert.serial(),
                human(lifetime)
            );
            for (login, host) in pairs(&args) {
                println!("ssh {login}@{host}");
            }
        }
    }
    Ok(())
}

/// `HOST:PORT` → (HOST, Some(PORT)); `[::1]:2222` → (::1, 2222); `HOST` → (HOST, None).
fn split_ca(ca: &str) -> (&str, Option<&str>) {
    if let Some(rest) = ca.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
    {
        return (host, Some(port));
    }
    match ca.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (ca, None),
    }
}

fn pairs(args: &LoginArgs) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for login in args.login.split(',') {
        for host in args.hosts.split(',') {
            out.push((login.trim().to_string(), host.trim().to_string()));
        }
    }
    out
}

/// Refuses early, before anything is requested, when there is no agent to load into.
fn check_agent() -> Result<()> {
    if std::env::var_os("SSH_AUTH_SOCK").is_none_or(|s| s.is_empty()) {
        bail!(
            "no ssh-agent: SSH_AUTH_SOCK is not set; start one with `eval $(ssh-agent)`, or use --out PATH"
        );
    }
    let status = Command::new("ssh-add")
        .arg("-l")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run ssh-add (is the OpenSSH client installed?)")?;
    // 0: keys listed, 1: no keys; 2: no agent answering.
    if status.code() == Some(2) {
        bail!(
            "ssh-agent at {} does not answer; start one with `eval $(ssh-agent)`, or use --out PATH",
            std::env::var("SSH_AUTH_SOCK").unwrap_or_default()
        );
    }
    Ok(())
}

/// `ssh-add -t LIFETIME` of key and certificate from a private folder that is removed after.
fn load_into_agent(key: &PrivateKey, cert_line: &str, lifetime: u64) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("jitca-login-{}", std::process::id()));
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let result = (|| {
        let path = dir.join("key");
        write_private(&path, key)?;
        write_new(&cert_path(&path), cert_line.as_bytes(), 0o600)?;
        let out = Command::new("ssh-add")
            .arg("-t")
            .arg(lifetime.to_string())
            .arg(&path)
            .output()
            .context("cannot run ssh-add")?;
        if !out.status.success() {
            bail!(
                "ssh-add refused the key: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn cert_path(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}-cert.pub", key.display()))
}

fn write_private(path: &Path, key: &PrivateKey) -> Result<()> {
    write_new(path, key.to_openssh(LineEnding::LF)?.as_bytes(), 0o600)
}

fn human(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::split_ca;

    #[test]
    fn ca_addresses() {
        assert_eq!(split_ca("ca.example:2222"), ("ca.example", Some("2222")));
        assert_eq!(split_ca("ca.example"), ("ca.example", None));
        assert_eq!(split_ca("[::1]:2222"), ("::1", Some("2222")));
        assert_eq!(split_ca("::1"), ("::1", None));
    }
}
