//! Key files: generating, writing with safe permissions, loading, and checking keys we certify.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use ssh_key::public::KeyData;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};
use zeroize::Zeroizing;

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

/// Loads an unencrypted OpenSSH private key, after [`check_private_file`].
pub fn load_private_key(path: &Path) -> Result<PrivateKey, SignerError> {
    let key = read_private_key(path)?;
    if key.is_encrypted() {
        return Err(SignerError::BadKey {
            path: path.display().to_string(),
            reason: "the key is encrypted with a passphrase; jitca needs this key unencrypted \
                     (protect it with file permissions instead)"
                .into(),
        });
    }
    Ok(key)
}

/// Loads an OpenSSH private key that may be encrypted, after [`check_private_file`]; an
/// encrypted one is decrypted with `passphrase`, and refused without one.
pub(crate) fn load_private_key_with(
    path: &Path,
    passphrase: Option<(&[u8], &str)>,
) -> Result<PrivateKey, SignerError> {
    let key = read_private_key(path)?;
    match passphrase {
        _ if !key.is_encrypted() => Ok(key),
        None => Err(SignerError::BadKey {
            path: path.display().to_string(),
            reason: "the key is encrypted with a passphrase and no passphrase is configured \
                     (ca_key_passphrase_file or ca_key_passphrase_credential)"
                .into(),
        }),
        Some((passphrase, from)) => key.decrypt(passphrase).map_err(|e| {
            SignerError::Passphrase(match e {
                // The check integers after decryption differ: the passphrase is not this key's.
                ssh_key::Error::Crypto => format!(
                    "the passphrase from {from} does not decrypt {} (wrong passphrase)",
                    path.display()
                ),
                other => format!(
                    "cannot decrypt {} with the passphrase from {from}: {other}",
                    path.display()
                ),
            })
        }),
    }
}

/// Reads and parses a private key file (encrypted or not) once [`check_private_file`] passes.
pub(crate) fn read_private_key(path: &Path) -> Result<PrivateKey, SignerError> {
    let shown = path.display().to_string();
    let read_err = |source| SignerError::Read {
        path: shown.clone(),
        source,
    };
    let mut file = open_private_file(path, "PRIVATE KEY")?;
    // Sized up front, so that reading leaves no copies of the key behind in freed memory.
    let size = file.metadata().map_or(0, |m| m.len() as usize);
    let mut text = Zeroizing::new(String::with_capacity(size.min(1 << 20) + 1));
    file.read_to_string(&mut text).map_err(read_err)?;
    PrivateKey::from_openssh(text.as_bytes()).map_err(|e| SignerError::BadKey {
        path: shown.clone(),
        reason: e.to_string(),
    })
}

/// Opens a file holding a secret once [`check_private_file`] passes, and checks the file it
/// opened again (so a file swapped in between is not read).
pub fn open_private_file(path: &Path, what: &'static str) -> Result<std::fs::File, SignerError> {
    check_private_file(path, what)?;
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| SignerError::Read {
        path: shown.clone(),
        source,
    })?;
    let meta = file.metadata().map_err(|source| SignerError::Read {
        path: shown.clone(),
        source,
    })?;
    check_metadata(&shown, &meta, what)?;
    Ok(file)
}

/// Like OpenSSH's "UNPROTECTED PRIVATE KEY FILE!": a file holding a secret must be a regular
/// file owned by the user running jitca, with no access at all for group or others (0600 or
/// 0400). `what` names the secret in the message, like `PRIVATE KEY`.
pub fn check_private_file(path: &Path, what: &'static str) -> Result<(), SignerError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| SignerError::Read {
        path: shown.clone(),
        source,
    })?;
    check_metadata(&shown, &meta, what)
}

fn check_metadata(
    shown: &str,
    meta: &std::fs::Metadata,
    what: &'static str,
) -> Result<(), SignerError> {
    let shown = shown.to_string();
    if !meta.is_file() {
        return Err(SignerError::BadKey {
            path: shown,
            reason: "not a regular file".into(),
        });
    }
    let mode = meta.mode() & 0o7777;
    let open = mode & 0o077 != 0;
    let me = nix::unistd::geteuid();
    let owner = nix::unistd::Uid::from_raw(meta.uid());
    let foreign = owner != me;
    if !open && !foreign {
        return Ok(());
    }
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    if foreign {
        problems.push(format!(
            "is owned by {} while jitca runs as {}",
            user_name(owner),
            user_name(me)
        ));
        fixes.push(format!(
            "chown {} {shown} (or run jitca as the file's owner)",
            nix::unistd::User::from_uid(me)
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| me.to_string())
        ));
    }
    if open {
        problems.push(format!(
            "has mode {mode:04o}, so group or others may read or change it"
        ));
        fixes.push(format!("chmod 600 {shown}"));
    }
    Err(SignerError::Unprotected {
        what,
        problem: format!("{shown} {}", problems.join(", and ")),
        fix: fixes.join(", then "),
    })
}

/// `uid 0 (root)`, or `uid 1234` when the user has no name.
fn user_name(uid: nix::unistd::Uid) -> String {
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => format!("uid {uid} ({})", user.name),
        _ => format!("uid {uid}"),
    }
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
