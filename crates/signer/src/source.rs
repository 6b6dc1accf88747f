//! Where the CA key comes from: a key file (unencrypted, or encrypted with a passphrase read
//! from a file or a systemd credential), or an `ssh-agent` that holds it.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ssh_key::PublicKey;
use zeroize::Zeroizing;

use crate::SignerError;
use crate::keys::open_private_file;

/// The longest passphrase read; a longer file is surely the wrong file.
const MAX_PASSPHRASE: u64 = 1024;

/// Where the CA key comes from. Holds paths and names only, never key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaKeySource {
    /// An OpenSSH private key file; `passphrase` says where its passphrase is, if encrypted.
    File {
        path: PathBuf,
        passphrase: Option<Passphrase>,
    },
    /// A key held by the `ssh-agent` listening on `socket`; `public_key` is its `.pub` file,
    /// which says which of the agent's keys is the CA.
    Agent {
        socket: PathBuf,
        public_key: PathBuf,
    },
}

/// Where the passphrase of an encrypted CA key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passphrase {
    /// A file holding the passphrase (one trailing newline is ignored); it must be protected
    /// like a private key: owned by the user running jitca, mode 0600 or 0400.
    File(PathBuf),
    /// A systemd credential of this name: `$CREDENTIALS_DIRECTORY/NAME`, as delivered by
    /// `LoadCredential=` or `LoadCredentialEncrypted=` (systemd keeps that folder private to the
    /// service, so the file's own mode is not checked).
    Credential(String),
}

/// The environment variable systemd sets to the folder of a service's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

impl CaKeySource {
    /// An unencrypted key file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        CaKeySource::File {
            path: path.into(),
            passphrase: None,
        }
    }

    /// The CA public key, without the passphrase or the agent: from the private key file (whose
    /// public half is never encrypted) or from the `.pub` file named for the agent.
    pub fn public_key(&self) -> Result<PublicKey, SignerError> {
        match self {
            // The public half of an OpenSSH private key file is never encrypted.
            CaKeySource::File { path, .. } => {
                Ok(crate::keys::read_private_key(path)?.public_key().clone())
            }
            CaKeySource::Agent { public_key, .. } => read_public_key_file(public_key),
        }
    }
}

impl fmt::Display for CaKeySource {
    /// For the log: where the key is, never anything of the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaKeySource::File {
                path,
                passphrase: None,
            } => write!(f, "key file {}", path.display()),
            CaKeySource::File {
                path,
                passphrase: Some(p),
            } => write!(
                f,
                "encrypted key file {}, passphrase from {p}",
                path.display()
            ),
            CaKeySource::Agent { socket, public_key } => write!(
                f,
                "ssh-agent {} (public key {})",
                socket.display(),
                public_key.display()
            ),
        }
    }
}

impl fmt::Display for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Passphrase::File(path) => write!(f, "file {}", path.display()),
            Passphrase::Credential(name) => write!(f, "systemd credential {name}"),
        }
    }
}

impl Passphrase {
    /// Reads the passphrase: the file's content without one trailing newline (`\n` or `\r\n`).
    pub(crate) fn read(&self) -> Result<Zeroizing<Vec<u8>>, SignerError> {
        self.read_in(std::env::var_os(CREDENTIALS_DIRECTORY))
    }

    /// [`Passphrase::read`] with the value of `$CREDENTIALS_DIRECTORY` given.
    fn read_in(
        &self,
        credentials: Option<std::ffi::OsString>,
    ) -> Result<Zeroizing<Vec<u8>>, SignerError> {
        let (path, checked) = match self {
            Passphrase::File(path) => (path.clone(), Some(open_private_file(path, "PASSPHRASE")?)),
            Passphrase::Credential(name) => {
                let Some(dir) = credentials else {
                    return Err(SignerError::Passphrase(format!(
                        "the passphrase is the systemd credential {name}, but \
                         ${CREDENTIALS_DIRECTORY} is not set: systemd sets it for a service \
                         with LoadCredential={name}:PATH or LoadCredentialEncrypted={name}:PATH \
                         (outside systemd, use ca_key_passphrase_file)"
                    )));
                };
                (Path::new(&dir).join(name), None)
            }
        };
        let unreadable = |e: std::io::Error| {
            SignerError::Passphrase(format!(
                "cannot read the passphrase {self} ({}): {e}",
                path.display()
            ))
        };
        let file = match checked {
            Some(file) => file,
            None => std::fs::File::open(&path).map_err(unreadable)?,
        };
        let mut text = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE as usize + 1));
        file.take(MAX_PASSPHRASE + 1)
            .read_to_end(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_PASSPHRASE {
            return Err(SignerError::Passphrase(format!(
                "the passphrase {self} is longer than {MAX_PASSPHRASE} bytes; is it the right file?"
            )));
        }
        if text.ends_with(b"\n") {
            text.pop();
            if text.ends_with(b"\r") {
                text.pop();
            }
        }
        if text.is_empty() {
            return Err(SignerError::Passphrase(format!(
                "the passphrase {self} is empty"
            )));
        }
        Ok(text)
    }
}

/// A `.pub` file: the first line that is not blank or a comment, as `ssh-keygen` writes it.
pub(crate) fn read_public_key_file(path: &Path) -> Result<PublicKey, SignerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SignerError::PublicKeyFile(format!("cannot read {}: {e}", path.display())))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| {
            SignerError::PublicKeyFile(format!("{} holds no public key", path.display()))
        })?;
    PublicKey::from_openssh(line).map_err(|e| {
        SignerError::PublicKeyFile(format!(
            "{} is not an OpenSSH public key ({e}); give the .pub file of the CA key",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn passphrase_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        let file = Passphrase::File(path.clone());
        for (text, read) in [
            ("secret\n", "secret"),
            ("secret\r\n", "secret"),
            ("secret", "secret"),
            (" two words \n\n", " two words \n"),
        ] {
            write(&path, text, 0o600);
            assert_eq!(&file.read_in(None).unwrap()[..], read.as_bytes());
        }
        write(&path, "\n", 0o400);
        let err = file.read_in(None).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        write(&path, &"x".repeat(2000), 0o600);
        let err = file.read_in(None).unwrap_err().to_string();
        assert!(err.contains("longer than 1024 bytes"), "{err}");

        write(&path, "secret\n", 0o640);
        let err = file.read_in(None).unwrap_err().to_string();
        assert!(
            err.starts_with("UNPROTECTED PASSPHRASE FILE! ")
                && err.contains("has mode 0640")
                && err.contains(&format!("chmod 600 {}", path.display()))
                && !err.contains("secret"),
            "{err}"
        );
        let missing = Passphrase::File(dir.path().join("nope"));
        let err = missing.read_in(None).unwrap_err().to_string();
        assert!(err.starts_with("cannot read "), "{err}");
    }

    #[test]
    fn passphrase_from_a_systemd_credential() {
        let dir = tempfile::tempdir().unwrap();
        let credential = Passphrase::Credential("jitca-ca".into());
        let err = credential.read_in(None).unwrap_err().to_string();
        assert!(
            err.contains("$CREDENTIALS_DIRECTORY is not set")
                && err.contains("LoadCredential=jitca-ca:PATH"),
            "{err}"
        );
        let err = credential
            .read_in(Some(dir.path().into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read the passphrase systemd credential jitca-ca ("),
            "{err}"
        );
        // systemd's own modes (0400 owned by the service, or 0440 with an ACL) are accepted.
        write(&dir.path().join("jitca-ca"), "secret\n", 0o440);
        let read = credential.read_in(Some(dir.path().into())).unwrap();
        assert_eq!(&read[..], b"secret");
    }

    #[test]
    fn shown_without_secrets() {
        let source = CaKeySource::File {
            path: "/etc/jitca/ca".into(),
            passphrase: Some(Passphrase::Credential("ca-pass".into())),
        };
        assert_eq!(
            source.to_string(),
            "encrypted key file /etc/jitca/ca, passphrase from systemd credential ca-pass"
        );
    }
}
