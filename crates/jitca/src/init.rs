//! `jitca init`: a CA key, a host key and a commented config, never overwriting anything.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub const CA_KEY: &str = "ca";
pub const HOST_KEY: &str = "host_ed25519";
pub const CONFIG: &str = "jitca.yaml";
/// The key that seals second-factor secrets in the store (the config's default `mfa_key`).
pub const MFA_KEY: &str = "mfa.key";
/// The key that signs audit checkpoints (the config's default `audit_key`).
pub const AUDIT_KEY: &str = "audit_ed25519";

pub fn run(dir: &Path) -> Result<()> {
    create_keys(dir)?;
    write_new(&dir.join(CONFIG), TEMPLATE.as_bytes(), 0o644)?;
    println!("created in {}:", dir.display());
    println!("  {CA_KEY}            CA private key (keep it secret, back it up)");
    println!("  {CA_KEY}.pub        CA public key, for TrustedUserCAKeys on every host");
    println!("  {HOST_KEY}  host key of the control channel (+ .pub)");
    println!(
        "  {MFA_KEY}       key sealing second-factor secrets (back it up, apart from the data)"
    );
    println!("  {AUDIT_KEY} key signing audit checkpoints (+ .pub: give it to your auditors)");
    println!("  {CONFIG}    config: add users, host groups and rules, then");
    println!(
        "              jitca check --config {}",
        dir.join(CONFIG).display()
    );
    Ok(())
}

/// Creates `dir` if needed and the CA and host keys in it; refuses if any exists.
pub fn create_keys(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if dir.join(MFA_KEY).exists() {
        bail!(
            "{} exists already; refusing to overwrite it",
            dir.join(MFA_KEY).display()
        );
    }
    for name in [CA_KEY, HOST_KEY, CONFIG, AUDIT_KEY] {
        for file in [name.to_string(), format!("{name}.pub")] {
            if dir.join(&file).exists() {
                bail!(
                    "{} exists already; refusing to overwrite it",
                    dir.join(file).display()
                );
            }
        }
    }
    let ca = jitca_signer::generate_ed25519("jitca-ca")?;
    jitca_signer::write_private_key(&dir.join(CA_KEY), &ca)?;
    let host = jitca_signer::generate_ed25519("jitca-host")?;
    jitca_signer::write_private_key(&dir.join(HOST_KEY), &host)?;
    jitca_authority::mfa::create_key_file(&dir.join(MFA_KEY)).map_err(anyhow::Error::msg)?;
    jitca_authority::checkpoint::create_key(&dir.join(AUDIT_KEY))?;
    Ok(())
}

/// `jitca init --audit-key-only`: the audit signing key alone, for a set-up made before it
/// existed. Never overwrites.
pub fn audit_key_only(dir: &Path) -> Result<()> {
    let path = dir.join(AUDIT_KEY);
    for file in [path.clone(), dir.join(format!("{AUDIT_KEY}.pub"))] {
        if file.exists() {
            bail!(
                "{} exists already; refusing to overwrite it",
                file.display()
            );
        }
    }
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let key = jitca_authority::checkpoint::create_key(&path)?;
    println!(
        "created {} (+ .pub), the audit signing key:",
        path.display()
    );
    println!("  {}", jitca_authority::checkpoint::public_line(&key));
    println!("  (the config's audit_key: defaults to {AUDIT_KEY} next to the config file)");
    Ok(())
}

/// Writes a new file; fails if it exists.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

const TEMPLATE: &str = r#"# jitca config. Validate with: jitca check --config jitca.yaml
# Relative paths are relative to this file's folder. Durations: 90s, 15m, 2h, 1d.

listen: "127.0.0.1:2222"     # the control channel: ssh -p 2222 jitca@HOST COMMAND
ca_key: ca                    # CA private key (mode 0600, owned by the user running jitca)
# ca_key_passphrase_file: ca.pass        # an encrypted ca_key's passphrase (file mode 0600), or
# ca_key_passphrase_credential: ca-pass  # from systemd: LoadCredentialEncrypted=ca-pass:FILE
# ca_agent: /run/jitca-agent/agent.sock  # or sign through an ssh-agent that holds the CA key,
# ca_public_key: ca.pub                  # named by its .pub file (then leave out ca_key)
# previous_ca_keys: [ca-old.pub]         # during a CA key rotation: the KRL covers these too
host_key: host_ed25519        # host key of the control channel (mode 0600 too)
audit_key: audit_ed25519      # signs audit checkpoints; never the CA key (made if missing)
# checkpoint_interval: 1h     # how often the daemon writes a signed checkpoint
data_dir: data                # the store (sled)
# store_cache: 32MiB          # the most memory the store's page cache takes
# store: postgres://jitca@db.internal:5432/jitca?sslmode=verify-full  # instead of data_dir:
# store_password_file: db-password   # several daemons on one database (docs/ha.md)
# audit_log: audit.jsonl      # the audit records also as JSON lines, for a log shipper
# krl_path: jitca.krl         # the current KRL, replaced atomically on every change
principal_format: "{login}@{host}"   # one principal per approved (login, host)
pending_ttl: 1h               # a request nobody decides on lapses after this
# limits:                     # connection limits (defaults shown; docs/security.md)
#   max_startups: 256
#   max_startups_per_source: 16
#   login_grace_time: 20s
#   idle_timeout: 15m
#   max_sessions_per_user: 16
#   store_timeout: 10s        # the longest a command waits for a PostgreSQL store

# Who may talk to jitca: one entry per person, their SSH public keys and groups.
users: {}
#  alice:
#    keys: ["ssh-ed25519 AAAA... alice@laptop"]
#    groups: [dev]
#  bob:
#    keys: ["ssh-ed25519 AAAA... bob@laptop"]
#    groups: [sre]

# Host groups: name -> host names (as in the principals, {host}).
hosts: {}
#  web: [web1, web2]
#  db: [db1]

# Who may ask for what. The first rule that covers a whole request wins.
rules: []
#  - name: dev-web
#    requesters: [dev]          # groups that may request
#    hosts: [web]               # host groups
#    logins: [deploy]           # accounts on those hosts
#    max_duration: 2h
#    approvals: 1               # distinct approvers needed; 0 = approved on request
#    approvers: [sre]           # groups whose members may approve (never the requester)
#    extensions: [permit-pty]   # default [permit-pty]
#    # force_command: "journalctl -f"
#    # source_address: "10.0.0.0/8"

# Groups that may read the audit log over the control channel.
auditors: []
"#;
