//! The CA key settings: `ca_key` with an optional passphrase (`ca_key_passphrase_file` or
//! `ca_key_passphrase_credential`), or `ca_agent` with `ca_public_key`; and
//! [`Config::check_key_files`], which opens the keys the way the daemon will.

use std::path::PathBuf;

use jitca_signer::{CaKeySource, CertAuthority, Passphrase, SignerError};

use super::{Config, ConfigError, ConfigErrors, Problems};
use crate::locate::{LineIndex, YamlPath};
use crate::names::show;

/// The lines of the CA key settings in the file, where written; for the messages of
/// [`Config::check_key_files`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaLines {
    /// `ca_key_passphrase_file:` or `ca_key_passphrase_credential:`.
    pub passphrase: Option<usize>,
    /// `ca_agent:`.
    pub agent: Option<usize>,
    /// `ca_public_key:`.
    pub public_key: Option<usize>,
}

/// The CA key settings as written (paths already resolved against the config's folder).
pub(super) struct RawCa {
    pub ca_key: PathBuf,
    /// Whether `ca_key:` is written in the file (else it is the default).
    pub ca_key_written: bool,
    pub passphrase_file: Option<PathBuf>,
    pub passphrase_credential: Option<String>,
    pub agent: Option<PathBuf>,
    pub public_key: Option<PathBuf>,
}

/// Checks the combination of CA key settings; the source of the CA key when it makes sense.
pub(super) fn validate(raw: RawCa, problems: &mut Problems<'_>) -> CaKeySource {
    let root = YamlPath::root();
    if let Some(name) = &raw.passphrase_credential {
        check_credential_name(name, &root.key("ca_key_passphrase_credential"), problems);
    }
    if raw.passphrase_file.is_some() && raw.passphrase_credential.is_some() {
        problems.at(
            &root.key("ca_key_passphrase_credential"),
            "give ca_key_passphrase_file or ca_key_passphrase_credential, not both",
        );
    }
    let passphrase = match (raw.passphrase_file, raw.passphrase_credential) {
        (Some(file), _) => Some(Passphrase::File(file)),
        (None, Some(name)) => Some(Passphrase::Credential(name)),
        (None, None) => None,
    };
    match (raw.agent, raw.public_key) {
        (None, None) => CaKeySource::File {
            path: raw.ca_key,
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
            if raw.ca_key_written {
                problems.at(
                    &root.key("ca_key"),
                    "is not used with ca_agent (the agent holds the CA key); remove one of them",
                );
            }
            for name in ["ca_key_passphrase_file", "ca_key_passphrase_credential"] {
                if problems.index.line(&root.key(name)).is_some() {
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

/// The lines of the CA key settings.
pub(super) fn lines(index: &LineIndex) -> CaLines {
    let root = YamlPath::root();
    let line = |name: &str| index.nth_line(&root.key(name), 0);
    CaLines {
        passphrase: line("ca_key_passphrase_file").or_else(|| line("ca_key_passphrase_credential")),
        agent: line("ca_agent"),
        public_key: line("ca_public_key"),
    }
}

/// The first key in an OpenSSH public key file (`ca.pub`).
pub fn read_public_key(path: &std::path::Path) -> Result<ssh_key::PublicKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|line| ssh_key::PublicKey::from_openssh(line).ok())
        .ok_or_else(|| format!("{} is not an OpenSSH public key file", path.display()))
}

impl Config {
    /// The earlier CA keys of `previous_ca_keys`, read.
    pub fn previous_ca_public_keys(&self) -> Result<Vec<ssh_key::PublicKey>, String> {
        self.previous_ca_keys
            .iter()
            .map(|p| read_public_key(p))
            .collect()
    }

    /// Opens the CA key and the host key the way the daemon does, and names the config line of
    /// the setting at fault:
    ///
    /// - a key or passphrase file must be owned by the user running jitca and have no access
    ///   for group or others (like OpenSSH's "UNPROTECTED PRIVATE KEY FILE!"; fix: `chmod 600`);
    /// - each key must be an OpenSSH private key; the host key unencrypted;
    /// - an encrypted CA key needs its passphrase, and the passphrase must decrypt it;
    /// - with `ca_agent`, `ca_public_key` must be a public key, and the agent must answer and
    ///   hold that key.
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
        let mut errors = Vec::new();
        let ca = match &self.ca_source {
            CaKeySource::Agent { .. } if !ask_agent => self.ca_source.public_key().map(drop),
            source => CertAuthority::open(source).map(drop),
        };
        if let Err(e) = ca {
            errors.push(self.ca_error(e));
        }
        for (i, path) in self.previous_ca_keys.iter().enumerate() {
            if let Err(e) = read_public_key(path) {
                errors.push(ConfigError {
                    file: self.file.clone(),
                    line: self.previous_ca_keys_lines.get(i).copied().flatten(),
                    message: format!("previous_ca_keys[{i}]: {e}"),
                });
            }
        }
        if let Err(e) = jitca_signer::load_private_key(&self.host_key) {
            errors.push(ConfigError {
                file: self.file.clone(),
                line: self.host_key_line,
                message: format!("host_key: {e}"),
            });
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
                        .ca_source
                        .public_key()
                        .is_ok_and(|ca| ca.key_data() == key.public_key().key_data()) =>
                {
                    Some("is the CA key; the audit key must be a key of its own".into())
                }
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                errors.push(ConfigError {
                    file: self.file.clone(),
                    line: self.audit_key_line,
                    message: format!("audit_key: {problem}"),
                });
            }
        }
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// A CA key problem, at the line of the setting it is about.
    fn ca_error(&self, error: SignerError) -> ConfigError {
        let passphrase = match &self.ca_source {
            CaKeySource::File {
                passphrase: Some(Passphrase::Credential(_)),
                ..
            } => "ca_key_passphrase_credential",
            _ => "ca_key_passphrase_file",
        };
        let (setting, line) = match &error {
            SignerError::Agent { .. } => ("ca_agent", self.ca_lines.agent),
            SignerError::PublicKeyFile(_) => ("ca_public_key", self.ca_lines.public_key),
            SignerError::Passphrase(_)
            | SignerError::Unprotected {
                what: "PASSPHRASE", ..
            } => (passphrase, self.ca_lines.passphrase),
            _ => ("ca_key", self.ca_key_line),
        };
        // A passphrase file that cannot be read at all is the passphrase setting's problem too.
        let (setting, line) = match (&error, &self.ca_source) {
            (
                SignerError::Read { path, .. },
                CaKeySource::File {
                    passphrase: Some(Passphrase::File(file)),
                    ..
                },
            ) if *path == file.display().to_string() => (passphrase, self.ca_lines.passphrase),
            _ => (setting, line),
        };
        ConfigError {
            file: self.file.clone(),
            line,
            message: format!("{setting}: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use crate::config::{load, parse};

    fn errors(text: &str) -> Vec<String> {
        parse(text, Path::new("/etc/jitca/jitca.yaml"))
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn sources() {
        use jitca_signer::{CaKeySource, Passphrase};
        let file = Path::new("/etc/jitca/jitca.yaml");
        let config = parse("", file).unwrap();
        assert_eq!(config.ca_source, CaKeySource::file("/etc/jitca/ca"));
        let config = parse("ca_key: k\nca_key_passphrase_file: k.pass\n", file).unwrap();
        assert_eq!(
            config.ca_source,
            CaKeySource::File {
                path: "/etc/jitca/k".into(),
                passphrase: Some(Passphrase::File("/etc/jitca/k.pass".into())),
            }
        );
        assert_eq!(config.ca_lines.passphrase, Some(2));
        let config = parse("ca_key_passphrase_credential: jitca-ca.pass\n", file).unwrap();
        assert_eq!(
            config.ca_source,
            CaKeySource::File {
                path: "/etc/jitca/ca".into(),
                passphrase: Some(Passphrase::Credential("jitca-ca.pass".into())),
            }
        );
        let config = parse(
            "ca_agent: /run/jitca/agent.sock\nca_public_key: ca.pub\n",
            file,
        )
        .unwrap();
        assert_eq!(
            config.ca_source,
            CaKeySource::Agent {
                socket: "/run/jitca/agent.sock".into(),
                public_key: "/etc/jitca/ca.pub".into(),
            }
        );
        assert_eq!(
            (config.ca_lines.agent, config.ca_lines.public_key),
            (Some(1), Some(2))
        );
    }

    #[test]
    fn combinations_refused() {
        assert_eq!(
            errors("ca_agent: /run/a.sock\n"),
            [
                "/etc/jitca/jitca.yaml:1: ca_agent: needs ca_public_key: the .pub file of the CA \
                 key the agent holds"
            ]
        );
        assert_eq!(
            errors("ca_public_key: ca.pub\n"),
            [
                "/etc/jitca/jitca.yaml:1: ca_public_key: is used only with ca_agent (with \
                 ca_key, the public key is read from the key file); remove it, or add ca_agent"
            ]
        );
        assert_eq!(
            errors(
                "ca_key: ca\nca_agent: a.sock\nca_public_key: ca.pub\nca_key_passphrase_file: p\n"
            ),
            [
                "/etc/jitca/jitca.yaml:1: ca_key: is not used with ca_agent (the agent holds the \
                 CA key); remove one of them",
                "/etc/jitca/jitca.yaml:4: ca_key_passphrase_file: is not used with ca_agent (the \
                 agent holds the key decrypted); remove it",
            ]
        );
        assert_eq!(
            errors("ca_key_passphrase_file: p\nca_key_passphrase_credential: c\n"),
            [
                "/etc/jitca/jitca.yaml:2: ca_key_passphrase_credential: give \
                 ca_key_passphrase_file or ca_key_passphrase_credential, not both"
            ]
        );
        assert_eq!(
            errors("ca_key_passphrase_credential: ../etc/shadow\n"),
            [
                "/etc/jitca/jitca.yaml:1: ca_key_passphrase_credential: \"../etc/shadow\" is not \
                 a credential name; write the NAME of LoadCredential=NAME:PATH (letters, digits \
                 and - _ . @ : +)"
            ]
        );
        assert_eq!(
            errors("ca_agent: \"\"\nca_public_key: \"\"\n"),
            [
                "/etc/jitca/jitca.yaml:1: ca_agent: is empty; give a file path",
                "/etc/jitca/jitca.yaml:2: ca_public_key: is empty; give a file path",
            ]
        );
        // Unknown keys are still refused.
        let unknown = errors("ca_passphrase: x\n");
        assert!(
            unknown[0].starts_with("/etc/jitca/jitca.yaml:1: unknown field `ca_passphrase`"),
            "{unknown:?}"
        );
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn new_key(passphrase: Option<&str>) -> String {
        let key = jitca_signer::generate_ed25519("ca").unwrap();
        let key = match passphrase {
            Some(p) => key.encrypt(&mut rand::rng(), p).unwrap(),
            None => key,
        };
        key.to_openssh(ssh_key::LineEnding::LF).unwrap().to_string()
    }

    #[test]
    fn key_files_checked_with_lines() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let path = d.join("jitca.yaml");
        write(&d.join("host"), &new_key(None), 0o600);
        write(&d.join("ca"), &new_key(Some("secret")), 0o600);
        write(&d.join("ca.pass"), "secret\n", 0o600);
        std::fs::write(
            &path,
            "ca_key: ca\nhost_key: host\nca_key_passphrase_file: ca.pass\n",
        )
        .unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.check_key_files(), Ok(()));

        write(&d.join("ca"), &new_key(Some("secret")), 0o644);
        let err = config.check_key_files().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{f}:1: ca_key: UNPROTECTED PRIVATE KEY FILE! {k} has mode 0644, so group or \
                 others may read or change it; jitca refuses to use it. Fix: chmod 600 {k}",
                f = path.display(),
                k = d.join("ca").display()
            )
        );
        std::fs::set_permissions(d.join("ca"), std::fs::Permissions::from_mode(0o600)).unwrap();
        write(&d.join("ca.pass"), "not it\n", 0o600);
        let err = config.check_key_files().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}:3: ca_key_passphrase_file: the passphrase from file ",
                path.display()
            )) && err.ends_with("(wrong passphrase)"),
            "{err}"
        );
        write(&d.join("ca.pass"), "secret\n", 0o604);
        let err = config.check_key_files().unwrap_err().to_string();
        assert!(
            err.contains(":3: ca_key_passphrase_file: UNPROTECTED PASSPHRASE FILE! "),
            "{err}"
        );
        std::fs::remove_file(d.join("ca.pass")).unwrap();
        let err = config.check_key_files().unwrap_err().to_string();
        assert!(
            err.contains(":3: ca_key_passphrase_file: cannot read "),
            "{err}"
        );
        write(&d.join("host"), &new_key(None), 0o640);
        let err = config.check_key_files().unwrap_err().0;
        assert_eq!(err.len(), 2);
        assert_eq!(err[0].line, Some(2));
        assert!(
            err[0]
                .message
                .starts_with("host_key: UNPROTECTED PRIVATE KEY FILE! "),
            "{err:?}"
        );
        assert_eq!(err[1].line, Some(3));

        // An agent that is not there: refused by the full check, not by the offline one.
        std::fs::write(d.join("ca.pub"), "# the CA\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHiSDRJ+UJGFuEM8OyEG5hmHLZdy9ZXEELTS1G6UbBJa ca\n").unwrap();
        write(&d.join("host"), &new_key(None), 0o600);
        std::fs::write(
            &path,
            "host_key: host\nca_agent: agent.sock\nca_public_key: ca.pub\n",
        )
        .unwrap();
        let config = load(&path).unwrap();
        let err = config.check_key_files().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:2: ca_agent: the ssh-agent holding the CA key ({}) cannot be reached: No such \
                 file or directory (os error 2)",
                path.display(),
                d.join("agent.sock").display()
            )
        );
        assert_eq!(config.check_key_files_offline(), Ok(()));
        std::fs::write(d.join("ca.pub"), "not a key\n").unwrap();
        let err = config.check_key_files_offline().unwrap_err().to_string();
        assert!(
            err.contains(":3: ca_public_key: ") && err.contains("is not an OpenSSH public key"),
            "{err}"
        );
    }
}
