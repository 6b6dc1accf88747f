//! Key files: generating, writing with safe permissions, loading, and checking keys we certify.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ssh_key::public::KeyData;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

use crate::SignerError;

/// A fresh ed25519 key pair.
pub fn generate_ed25519(comment: &str) -> Result<PrivateKey, SignerError> {
    let mut rng = rand::rng();
    let mut key = PrivateKey::random(&mut rng, Algorithm::Ed25519)
        .map_err(|e| SignerError::Signing(e.to_string()))?;
    key.set_comment(comment);
    Ok(key)
}

/// Writes `key` to `path` (mode 0600) and its public half to `path.pub` (mode 0644). Never
/// overwrites: an existing file is an error.
pub fn write_private_key(path: &Path, key: &PrivateKey) -> Result<(), SignerError> {
    let write_err = |p: &Path| {
        let p = p.display().to_string();
        move |source| SignerError::Write { path: p, source }
    };
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| SignerError::Signing(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| SignerError::Signing(e.to_string()))?;
    let pub_path = path.with_file_name(format!(
        "{}.pub",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    for (p, contents, mode) in [
        (path, private.as_bytes(), 0o600),
        (pub_path.as_path(), format!("{public}\n").as_bytes(), 0o644),
    ] {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(p)
            .map_err(write_err(p))?;
        file.write_all(contents).map_err(write_err(p))?;
        file.sync_all().map_err(write_err(p))?;
    }
    Ok(())
}

/// Loads an unencrypted OpenSSH private key.
pub fn load_private_key(path: &Path) -> Result<PrivateKey, SignerError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SignerError::Read {
        path: shown.clone(),
        source,
    })?;
    let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| SignerError::BadKey {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    if key.is_encrypted() {
        return Err(SignerError::BadKey {
            path: shown,
            reason: "the key is encrypted; jitca needs an unencrypted key file".into(),
        });
    }
    Ok(key)
}

/// Refuses keys that must not be certified: DSA, RSA under 2048 bits.
pub fn check_subject_key(key: &PublicKey) -> Result<(), SignerError> {
    match key.key_data() {
        KeyData::Ed25519(_)
        | KeyData::Ecdsa(_)
        | KeyData::SkEd25519(_)
        | KeyData::SkEcdsaSha2NistP256(_) => Ok(()),
        KeyData::Rsa(rsa) if rsa.key_size() >= 2048 => Ok(()),
        KeyData::Rsa(rsa) => Err(SignerError::Subject(format!(
            "RSA key of {} bits is too weak; use ed25519 or RSA of at least 2048 bits",
            rsa.key_size()
        ))),
        other => Err(SignerError::Subject(format!(
            "{} keys cannot be certified; use ed25519",
            other.algorithm()
        ))),
    }
}
