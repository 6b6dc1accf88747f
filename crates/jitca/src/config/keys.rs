//! [`Config::check_key_files`]: opens every key the config names the way the daemon will, and
//! names the config line of the setting at fault. The CA key's sources are checked by
//! `jitca_signer::settings`; the control channel's host key and the audit key here.

use jitca_policy::{ConfigErrors, Problems, YamlPath};

use super::Config;

impl Config {
    /// Opens the CA key, the earlier CA keys, the host key and the audit key the way the
    /// daemon does (see [`jitca_signer::CaSettings::check`] for the CA key): each key file
    /// must be closed to group and others, the host key an unencrypted OpenSSH private key,
    /// and an audit key that exists an ed25519 key of its own.
    pub fn check_key_files(&self) -> Result<(), ConfigErrors> {
        self.check_keys(true)
    }

    /// [`Config::check_key_files`] without asking the agent: for a config reload in a running
    /// daemon, which keeps the CA it has (an agent that is down must not stop a reload that
    /// ends the access of removed users).
    pub fn check_key_files_offline(&self) -> Result<(), ConfigErrors> {
        self.check_keys(false)
    }

    fn check_keys(&self, ask_agent: bool) -> Result<(), ConfigErrors> {
        let root = YamlPath::root();
        let mut problems = Problems::new(&self.index);
        self.ca.check(ask_agent, &mut problems);
        if let Err(e) = jitca_signer::load_private_key(&self.host_key) {
            problems.at(&root.key("host_key"), e);
        }
        // The audit key is made at the daemon's first start when missing; one that exists is
        // checked like the CA key, and may never be the CA key itself.
        if self.audit_key.exists() {
            let problem = match jitca_signer::load_private_key(&self.audit_key) {
                Err(e) => Some(e.to_string()),
                Ok(key) if key.algorithm() != ssh_key::Algorithm::Ed25519 => {
                    Some("is not an ed25519 key; run jitca init --audit-key-only for one".into())
                }
                Ok(key)
                    if self
                        .ca
                        .source
                        .public_key()
                        .is_ok_and(|ca| ca.key_data() == key.public_key().key_data()) =>
                {
                    Some("is the CA key; the audit key must be a key of its own".into())
                }
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                problems.at(&root.key("audit_key"), problem);
            }
        }
        problems.finish(&self.file).map(drop)
    }
}
