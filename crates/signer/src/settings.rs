//! The CA key settings of the config file: `ca_key` with an optional passphrase
//! (`ca_key_passphrase_file` or `ca_key_passphrase_credential`), or `ca_agent` with
//! `ca_public_key`; and `previous_ca_keys`, the public keys of earlier CA keys that hosts still
//! trust during a rotation. [`CaSettings::read`] checks the combination as written;
//! [`CaSettings::check`] opens the keys the way the daemon will and names the setting at fault.
//! Both report through the config file's one problem collector.

use std::path::{Path, PathBuf};

use jitca_policy::names::show;
use jitca_policy::{Problems, YamlPath};
use ssh_key::PublicKey;

use crate::{CaKeySource, CertAuthority, Passphrase, SignerError};

/// `ca_key` when the file does not say.
pub const DEFAULT_CA_KEY: &str = "ca";

/// The CA key settings as written (top-level keys of the config file).
#[derive(Debug, Default)]
pub struct CaText {
    /// `ca_key:`.
    pub ca_key: Option<String>,
    /// `ca_key_passphrase_file:`.
    pub ca_key_passphrase_file: Option<String>,
    /// `ca_key_passphrase_credential:`.
    pub ca_key_passphrase_credential: Option<String>,
    /// `ca_agent:`.
    pub ca_agent: Option<String>,
    /// `ca_public_key:`.
    pub ca_public_key: Option<String>,
    /// `previous_ca_keys:`.
    pub previous_ca_keys: Option<Vec<String>>,
}

/// Where the CA key is, and the earlier CA keys hosts still trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSettings {
    /// `ca_key` (with its passphrase when it is encrypted), or the ssh-agent of `ca_agent`
    /// holding the key of `ca_public_key`; paths resolved against the config file's folder.
    pub source: CaKeySource,
    /// Public key files of earlier CA keys that hosts still trust during a CA key rotation:
    /// the KRL revokes the same serials under them too.
    pub previous_keys: Vec<PathBuf>,
}

impl CaSettings {
    /// Checks the combination of CA key settings, relative paths resolved against `base`;
    /// each problem is recorded in `problems`, and the settings returned may be used only if
    /// there is none.
    pub fn read(text: CaText, base: &Path, problems: &mut Problems<'_>) -> Self {
        let root = YamlPath::root();
        let mut path =
            |name: &str, value: String| problems.file_path(&root.key(name), &value, base);
        let ca_key_written = text.ca_key.is_some();
        let ca_key = path(
            "ca_key",
            text.ca_key.unwrap_or_else(|| DEFAULT_CA_KEY.into()),
        );
        let passphrase_file = text
            .ca_key_passphrase_file
            .map(|p| path("ca_key_passphrase_file", p));
        let agent = text.ca_agent.map(|p| path("ca_agent", p));
        let public_key = text.ca_public_key.map(|p| path("ca_public_key", p));
        let previous_keys = text
            .previous_ca_keys
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                if p.is_empty() {
                    problems.at(
                        &root.key("previous_ca_keys").index(i),
                        "is empty; give a .pub file",
                    );
                }
                base.join(p)
            })
            .collect();

        let credential = text.ca_key_passphrase_credential;
        if let Some(name) = &credential {
            check_credential_name(name, &root.key("ca_key_passphrase_credential"), problems);
        }
        if passphrase_file.is_some() && credential.is_some() {
            problems.at(
                &root.key("ca_key_passphrase_credential"),
                "give ca_key_passphrase_file or ca_key_passphrase_credential, not both",
            );
        }
        let passphrase = match (passphrase_file, credential) {
            (Some(file), _) => Some(Passphrase::File(file)),
            (None, Some(name)) => Some(Passphrase::Credential(name)),
            (None, None) => None,
        };
        let source = match (agent, public_key) {
            (None, None) => CaKeySource::File {
                path: ca_key,
                passphrase,
            },
            (None, Some(public_key)) => {
                problems.at(
                    &root.key("ca_public_key"),
                    "is used only with ca_agent (with ca_key, the public key is read from the key \
                     file); remove it, or add ca_agent",
                );
                CaKeySource::Agent {
                    socket: PathBuf::new(),
                    public_key,
                }
            }
            (Some(socket), public_key) => {
                if public_key.is_none() {
                    problems.at(
                        &root.key("ca_agent"),
                        "needs ca_public_key: the .pub file of the CA key the agent holds",
                    );
                }
                if ca_key_written {
                    problems.at(
                        &root.key("ca_key"),
                        "is not used with ca_agent (the agent holds the CA key); remove one of them",
                    );
                }
                // Written at all, even with no value, is a mistake next to an agent.
                for name in ["ca_key_passphrase_file", "ca_key_passphrase_credential"] {
                    if problems.line(&root.key(name)).is_some() {
                        problems.at(
                            &root.key(name),
                            "is not used with ca_agent (the agent holds the key decrypted); \
                             remove it",
                        );
                    }
                }
                CaKeySource::Agent {
                    socket,
                    public_key: public_key.unwrap_or_default(),
                }
            }
        };
        Self {
            source,
            previous_keys,
        }
    }

    /// The earlier CA keys of `previous_ca_keys`, read.
    pub fn previous_public_keys(&self) -> Result<Vec<PublicKey>, String> {
        self.previous_keys
            .iter()
            .map(|p| read_public_key(p))
            .collect()
    }

    /// Opens the CA key the way the daemon does and reads the earlier CA keys, recording each
    /// problem at the setting at fault:
    ///
    /// - a key or passphrase file must be owned by the user running jitca and have no access
    ///   for group or others (like OpenSSH's "UNPROTECTED PRIVATE KEY FILE!"; fix: `chmod 600`);
    /// - the key must be an OpenSSH private key; an encrypted one needs its passphrase, and the
    ///   passphrase must decrypt it;
    /// - with `ca_agent`, `ca_public_key` must be a public key, and (if `ask_agent`) the agent
    ///   must answer and hold that key. A config reload in a running daemon does not ask: it
    ///   keeps the CA it has, and an agent that is down must not stop a reload that ends the
    ///   access of removed users.
    pub fn check(&self, ask_agent: bool, problems: &mut Problems<'_>) {
        let opened = match &self.source {
            CaKeySource::Agent { .. } if !ask_agent => self.source.public_key().map(drop),
            source => CertAuthority::open(source).map(drop),
        };
        if let Err(e) = opened {
            problems.at(&YamlPath::root().key(self.setting_at_fault(&e)), e);
        }
        for (i, path) in self.previous_keys.iter().enumerate() {
            if let Err(e) = read_public_key(path) {
                problems.at(&YamlPath::root().key("previous_ca_keys").index(i), e);
            }
        }
    }

    /// The setting a problem opening the CA key is about.
    fn setting_at_fault(&self, error: &SignerError) -> &'static str {
        let passphrase = match &self.source {
            CaKeySource::File {
                passphrase: Some(Passphrase::Credential(_)),
                ..
            } => "ca_key_passphrase_credential",
            _ => "ca_key_passphrase_file",
        };
        match (error, &self.source) {
            (SignerError::Agent { .. }, _) => "ca_agent",
            (SignerError::PublicKeyFile(_), _) => "ca_public_key",
            (
                SignerError::Passphrase(_)
                | SignerError::Unprotected {
                    what: "PASSPHRASE", ..
                },
                _,
            ) => passphrase,
            // A passphrase file that cannot be read at all is the passphrase setting's problem.
            (
                SignerError::Read { path, .. },
                CaKeySource::File {
                    passphrase: Some(Passphrase::File(file)),
                    ..
                },
            ) if *path == file.display().to_string() => passphrase,
            _ => "ca_key",
        }
    }
}

/// A systemd credential name: a plain file name in `$CREDENTIALS_DIRECTORY`.
fn check_credential_name(name: &str, path: &YamlPath, problems: &mut Problems<'_>) {
    let plain = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:+".contains(c));
    if !plain {
        problems.at(
            path,
            format_args!(
                "{} is not a credential name; write the NAME of LoadCredential=NAME:PATH \
                 (letters, digits and - _ . @ : +)",
                show(name)
            ),
        );
    }
}

/// The first key in an OpenSSH public key file (`ca.pub`).
pub fn read_public_key(path: &Path) -> Result<PublicKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|line| PublicKey::from_openssh(line).ok())
        .ok_or_else(|| format!("{} is not an OpenSSH public key file", path.display()))
}
