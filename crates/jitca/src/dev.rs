//! `jitca serve --dev`: the embedded default. A folder with keys, a config that registers the
//! invoking user's SSH keys, and a store, created on first use and reused after.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::init::{CONFIG, create_keys, write_new};

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
    eprintln!(
        "\njitca dev CA is up (files in {dir}). Try, from another terminal:\n\
         \n  {ssh} whoami\
         \n  {ssh} request localhost --as {login} --for 15m --reason trying jitca < {public} > {cert}\
         \n  ssh-keygen -L -f {cert}\
         \n  {ssh} list\
         \n  {ssh} help\n",
        dir = dir.display(),
        cert = cert.display(),
    );
}
