//! `jitca serve --dev`: the embedded default. A folder with keys, a config that registers the
//! invoking user's SSH keys, and a store, created on first use and reused after.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::init::{CONFIG, HOST_KEY, create_keys, write_new};

/// A key made for the dev user when they have none in ~/.ssh.
const DEV_USER_KEY: &str = "dev_user_ed25519";

/// Returns the dev config's path, creating the folder's contents first if absent.
pub fn prepare(dir: &Path) -> Result<PathBuf> {
    let config = dir.join(CONFIG);
    if config.exists() {
        return Ok(config);
    }
    create_keys(dir)?;
    let user = local_user();
    let mut keys = home_public_keys();
    if keys.is_empty() {
        let key = jitca_signer::generate_ed25519(&format!("{user}@jitca-dev"))?;
        jitca_signer::write_private_key(&dir.join(DEV_USER_KEY), &key)?;
        keys.push(key.public_key().to_openssh()?);
    }
    let keys_yaml: String = keys.iter().map(|k| format!("      - \"{k}\"\n")).collect();
    let text = format!(
        r#"# jitca dev config, made by `jitca serve --dev`. Edit freely; check with
#   jitca check --config {config}
listen: "127.0.0.1:2222"
ca_key: ca
host_key: host_ed25519
data_dir: data
pending_ttl: 1h
users:
  {user}:
    keys:
{keys_yaml}    groups: [dev, audit]
hosts:
  local: [localhost]
rules:
  # Alone there is nobody else to approve: this rule needs no approval.
  - name: dev-self-service
    requesters: [dev]
    hosts: [local]
    logins: [{login}]
    max_duration: 1h
    approvals: 0
auditors: [audit]
"#,
        config = config.display(),
        login = user,
    );
    write_new(&config, text.as_bytes(), 0o644)?;
    Ok(config)
}

/// The invoking user's name if it is a valid jitca name and login, else `dev`.
fn local_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| jitca_policy::check_login(u).is_ok() && jitca_policy::check_name(u).is_ok())
        .unwrap_or_else(|| "dev".to_string())
}

/// The public keys in ~/.ssh/*.pub (certificates and unparseable files skipped).
fn home_public_keys() -> Vec<String> {
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(Path::new(&home).join(".ssh")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "pub") && !p.to_string_lossy().ends_with("-cert.pub")
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|text| ssh_key::PublicKey::from_openssh(text.trim()).ok())
        .filter(|k| jitca_signer::check_subject_key(k).is_ok())
        .filter_map(|mut k| {
            k.set_comment("");
            k.to_openssh().ok()
        })
        .collect()
}

pub fn print_next_steps(dir: &Path, hint: &str) {
    eprint!("{}", next_steps(dir, hint));
}

/// The dev banner: the CA's host key and a line that pins it (so the first `ssh` needs no
/// yes/no prompt, and a key left in known_hosts by an earlier CA on this port, from another
/// `--dev` folder or `jitca init`, does not stop it), then the commands to try. The request
/// writes to a temporary file renamed over the certificate only on success, so an older
/// certificate survives a pending, denied or failed request.
fn next_steps(dir: &Path, hint: &str) -> String {
    let dev_key = dir.join(DEV_USER_KEY);
    let (identity, public) = if dev_key.exists() {
        (
            format!(" -i {}", dev_key.display()),
            format!("{}.pub", dev_key.display()),
        )
    } else {
        (String::new(), "~/.ssh/id_ed25519.pub".to_string())
    };
    let ssh = hint.replacen("ssh", &format!("ssh{identity}"), 1);
    let login = local_user();
    let cert = std::env::temp_dir().join("jitca-dev-cert.pub");
    let mut out = format!(
        "\njitca dev CA is up (files in {dir}).\n",
        dir = dir.display()
    );
    if let Some((fingerprint, pin)) = host_key_lines(dir, hint) {
        out.push_str(&format!(
            "Its host key is {fingerprint}. Trust it first (this replaces a key an earlier CA \
             left for this address, which ssh would refuse as REMOTE HOST IDENTIFICATION HAS \
             CHANGED):\n\n  {pin}\n\n"
        ));
    }
    out.push_str(&format!(
        "Then try, from another terminal:\n\
         \n  {ssh} whoami\
         \n  {ssh} request localhost --as {login} --for 15m --reason trying jitca < {public} > {cert}.new && mv {cert}.new {cert}\
         \n  ssh-keygen -L -f {cert}\
         \n  {ssh} list\
         \n  {ssh} help\n\
         \n(`> FILE.new && mv FILE.new FILE` keeps the certificate you have while a request waits \
         or if it is denied.)\n",
        cert = cert.display(),
    ));
    out
}

/// The control channel's host key fingerprint, and a shell line that puts it in
/// ~/.ssh/known_hosts for the address in `hint` (`ssh -p PORT jitca@HOST`).
fn host_key_lines(dir: &Path, hint: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string(dir.join(format!("{HOST_KEY}.pub"))).ok()?;
    let mut key = ssh_key::PublicKey::from_openssh(text.trim()).ok()?;
    key.set_comment("");
    let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    let mut words = hint.split_whitespace();
    let port = words
        .clone()
        .skip_while(|w| *w != "-p")
        .nth(1)?
        .parse::<u16>()
        .ok()?;
    let host = words.find_map(|w| w.strip_prefix("jitca@"))?;
    // known_hosts names a host on another port than 22 as [HOST]:PORT.
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let pin = format!(
        "ssh-keygen -R '{name}' >/dev/null 2>&1; mkdir -p ~/.ssh && echo '{name} {}' >> ~/.ssh/known_hosts",
        key.to_openssh().ok()?
    );
    Some((fingerprint, pin))
}
