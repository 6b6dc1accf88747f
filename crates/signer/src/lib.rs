//! The signer: turns an approved grant into an OpenSSH user certificate.
//!
//! It holds the CA private key and nothing else, or signs through the `ssh-agent` that holds it
//! ([`CaKeySource`]). A private key or passphrase file is used only when it is owned by the user
//! running jitca and closed to group and others, like OpenSSH's "UNPROTECTED PRIVATE KEY FILE!".
//! Key material and passphrases never appear in a message or a log. Every certificate it signs is checked twice:
//! the template is refused before signing when it could fail open (no principals, serial 0,
//! an empty key id, an empty or inverted validity window), and the signed certificate is read
//! back and validated against the CA before it is handed out.
//!
//! The config file's CA key settings (`ca_key` and its passphrase, `ca_agent`,
//! `previous_ca_keys`) are read and checked here too ([`settings`]), so that where the CA key
//! may come from is decided in one crate.

mod agent;
mod fast;
mod keys;
pub mod settings;
mod source;

pub use agent::AGENT_TIMEOUT;
pub use keys::{
    check_private_file, check_subject_key, generate_ed25519, load_private_key, open_private_file,
    write_private_key,
};
pub use settings::{CaSettings, CaText};
pub use source::{CREDENTIALS_DIRECTORY, CaKeySource, Passphrase};

use std::collections::BTreeMap;
use std::path::Path;

use ssh_key::certificate::{Builder, CertType, Certificate};
use ssh_key::{HashAlg, PrivateKey, PublicKey};

/// Why a certificate was not signed, or a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The key file exists but is not an OpenSSH private key we can use.
    #[error("{path} is not a usable OpenSSH private key: {reason}")]
    BadKey { path: String, reason: String },
    /// A private key or passphrase file others may read or change, or owned by someone else.
    #[error("UNPROTECTED {what} FILE! {problem}; jitca refuses to use it. Fix: {fix}")]
    Unprotected {
        what: &'static str,
        problem: String,
        fix: String,
    },
    /// The passphrase of an encrypted CA key cannot be read, or does not decrypt it.
    #[error("{0}")]
    Passphrase(String),
    /// The `.pub` file naming the CA key in an agent cannot be read.
    #[error("{0}")]
    PublicKeyFile(String),
    /// The ssh-agent holding the CA key cannot be reached, or does not sign with it.
    #[error("the ssh-agent holding the CA key ({socket}) {problem}")]
    Agent { socket: String, problem: String },
    /// A key file could not be written (it exists already, or the folder is not writable).
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// The certificate template would fail open; nothing was signed.
    #[error("refusing to sign: {0}")]
    Template(&'static str),
    /// The public key sent for certification cannot be certified.
    #[error("{0}")]
    Subject(String),
    /// The signature itself failed, or the signed certificate did not verify.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Everything a certificate carries. Built by the authority from a stored, approved request.
#[derive(Debug, Clone)]
pub struct CertTemplate<'a> {
    pub subject: &'a PublicKey,
    pub serial: u64,
    pub key_id: &'a str,
    pub principals: &'a [String],
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds; must be later than `valid_after`.
    pub valid_before: u64,
    pub extensions: &'a [String],
    pub critical_options: &'a BTreeMap<String, String>,
}

/// A signed certificate and its OpenSSH one-line form.
#[derive(Debug, Clone)]
pub struct Signed {
    pub certificate: Certificate,
    pub openssh: String,
}

/// The certificate authority: the CA key and the operations that use it.
pub struct CertAuthority {
    key: CaKey,
    /// The ed25519 key pair derived once, for a local ed25519 key.
    fast: Option<fast::Ed25519Signer>,
    public_line: String,
}

/// What signs: the key itself, or the agent that holds it.
enum CaKey {
    Local(Box<PrivateKey>),
    Agent(agent::AgentKey),
}

impl CaKey {
    fn public_key(&self) -> &PublicKey {
        match self {
            CaKey::Local(key) => key.public_key(),
            CaKey::Agent(agent) => agent.public_key(),
        }
    }
}

impl CertAuthority {
    /// Opens the CA key where `source` says, with every check made before anything is signed:
    /// the key file's owner and mode, the passphrase (its file's owner and mode too) and that it
    /// decrypts the key, or that the agent answers and holds the key named by the `.pub` file.
    pub fn open(source: &CaKeySource) -> Result<Self, SignerError> {
        let key = match source {
            CaKeySource::File { path, passphrase } => {
                let passphrase = match passphrase {
                    Some(p) => Some((p.read()?, p.to_string())),
                    None => None,
                };
                let passphrase = passphrase.as_ref().map(|(p, from)| (&p[..], from.as_str()));
                CaKey::Local(Box::new(keys::load_private_key_with(path, passphrase)?))
            }
            CaKeySource::Agent { socket, public_key } => CaKey::Agent(agent::AgentKey::open(
                socket,
                source::read_public_key_file(public_key)?,
            )?),
        };
        Self::new(key)
    }

    /// Loads the CA private key from an unencrypted OpenSSH private key file.
    pub fn load(path: &Path) -> Result<Self, SignerError> {
        Self::open(&CaKeySource::file(path))
    }

    /// A CA for a key already in memory (tests, tools).
    pub fn from_key(key: PrivateKey) -> Result<Self, SignerError> {
        Self::new(CaKey::Local(Box::new(key)))
    }

    fn new(key: CaKey) -> Result<Self, SignerError> {
        let mut public = key.public_key().clone();
        public.set_comment("jitca-ca");
        let public_line = public
            .to_openssh()
            .map_err(|e| SignerError::Signing(e.to_string()))?;
        let fast = match &key {
            CaKey::Local(key) => fast::Ed25519Signer::new(key),
            CaKey::Agent(_) => None,
        };
        Ok(Self {
            key,
            fast,
            public_line,
        })
    }

    /// The CA public key as one `authorized_keys`-style line, for `TrustedUserCAKeys`.
    pub fn public_key_line(&self) -> &str {
        &self.public_line
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// Whether signatures go through an ssh-agent.
    pub fn uses_agent(&self) -> bool {
        matches!(self.key, CaKey::Agent(_))
    }

    /// Signs a user certificate exactly as the template says, after refusing any template that
    /// could fail open.
    pub fn sign(&self, t: &CertTemplate<'_>) -> Result<Signed, SignerError> {
        if t.principals.is_empty() || t.principals.iter().any(|p| p.is_empty()) {
            return Err(SignerError::Template(
                "a certificate without principals is valid for every login",
            ));
        }
        if t.serial == 0 {
            return Err(SignerError::Template("serial 0 is reserved"));
        }
        if t.key_id.is_empty() {
            return Err(SignerError::Template("the key id is empty"));
        }
        if t.valid_before <= t.valid_after {
            return Err(SignerError::Template("the validity window is empty"));
        }
        check_subject_key(t.subject)?;

        let signing = |e: ssh_key::Error| SignerError::Signing(e.to_string());
        let mut rng = rand::rng();
        let mut builder = Builder::new_with_random_nonce(
            &mut rng,
            t.subject.key_data().clone(),
            t.valid_after,
            t.valid_before,
        )
        .map_err(signing)?;
        builder
            .serial(t.serial)
            .map_err(signing)?
            .cert_type(CertType::User)
            .map_err(signing)?
            .key_id(t.key_id)
            .map_err(signing)?;
        for principal in t.principals {
            builder
                .valid_principal(principal.as_str())
                .map_err(signing)?;
        }
        for extension in t.extensions {
            builder.extension(extension.as_str(), "").map_err(signing)?;
        }
        for (name, value) in t.critical_options {
            builder
                .critical_option(name.as_str(), value.as_str())
                .map_err(signing)?;
        }
        let certificate = match (&self.key, &self.fast) {
            (CaKey::Local(_), Some(fast)) => builder.sign(fast).map_err(signing)?,
            (CaKey::Local(key), None) => builder.sign(key.as_ref()).map_err(signing)?,
            (CaKey::Agent(agent), _) => agent.sign_certificate(builder)?,
        };
        self.post_sign_check(t, &certificate)?;
        let openssh = certificate.to_openssh().map_err(signing)?;
        Ok(Signed {
            certificate,
            openssh,
        })
    }

    /// Reads the signed certificate back: it must verify against this CA and carry exactly the
    /// template's fields.
    fn post_sign_check(&self, t: &CertTemplate<'_>, cert: &Certificate) -> Result<(), SignerError> {
        let fingerprint = self.key.public_key().fingerprint(HashAlg::Sha256);
        cert.validate_at(t.valid_after, [&fingerprint])
            .map_err(|e| {
                SignerError::Signing(format!("signed certificate does not verify: {e}"))
            })?;
        let same = cert.serial() == t.serial
            && cert.cert_type() == CertType::User
            && cert.key_id() == t.key_id
            && cert.valid_principals() == t.principals
            && cert.valid_before() == t.valid_before
            && cert.extensions().len() == t.extensions.len()
            && cert.critical_options().len() == t.critical_options.len();
        if !same {
            return Err(SignerError::Signing(
                "signed certificate differs from its template".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> CertAuthority {
        CertAuthority::from_key(generate_ed25519("test-ca").unwrap()).unwrap()
    }

    fn subject() -> PublicKey {
        generate_ed25519("alice").unwrap().public_key().clone()
    }

    fn template<'a>(
        subject: &'a PublicKey,
        principals: &'a [String],
        options: &'a BTreeMap<String, String>,
        extensions: &'a [String],
    ) -> CertTemplate<'a> {
        CertTemplate {
            subject,
            serial: 7,
            key_id: "jitca:r-1:alice:approvers=bob",
            principals,
            valid_after: 1_800_000_000,
            valid_before: 1_800_003_600,
            extensions,
            critical_options: options,
        }
    }

    #[test]
    fn signs_exactly_the_template() {
        let ca = ca();
        let subject = subject();
        let principals = vec!["deploy@web1".to_string(), "deploy@web2".to_string()];
        let mut options = BTreeMap::new();
        options.insert("force-command".to_string(), "uptime".to_string());
        let extensions = vec!["permit-pty".to_string()];
        let signed = ca
            .sign(&template(&subject, &principals, &options, &extensions))
            .unwrap();
        let cert = Certificate::from_openssh(&signed.openssh).unwrap();
        assert_eq!(cert.serial(), 7);
        assert_eq!(cert.cert_type(), CertType::User);
        assert_eq!(cert.valid_principals(), principals.as_slice());
        assert_eq!(cert.key_id(), "jitca:r-1:alice:approvers=bob");
        assert_eq!(cert.valid_after(), 1_800_000_000);
        assert_eq!(cert.valid_before(), 1_800_003_600);
        assert_eq!(cert.public_key(), subject.key_data());
        assert!(cert.extensions().contains_key("permit-pty"));
        assert_eq!(cert.extensions().len(), 1);
        assert_eq!(
            cert.critical_options()
                .get("force-command")
                .map(String::as_str),
            Some("uptime")
        );
    }

    #[test]
    fn refuses_templates_that_fail_open() {
        let ca = ca();
        let subject = subject();
        let principals = vec!["deploy@web1".to_string()];
        let none: Vec<String> = vec![];
        let options = BTreeMap::new();
        let ext = vec![];
        let t = template(&subject, &none, &options, &ext);
        assert!(matches!(ca.sign(&t), Err(SignerError::Template(_))));
        let empty = vec![String::new()];
        let t = template(&subject, &empty, &options, &ext);
        assert!(matches!(ca.sign(&t), Err(SignerError::Template(_))));
        let mut t = template(&subject, &principals, &options, &ext);
        t.serial = 0;
        assert!(matches!(ca.sign(&t), Err(SignerError::Template(_))));
        let mut t = template(&subject, &principals, &options, &ext);
        t.key_id = "";
        assert!(matches!(ca.sign(&t), Err(SignerError::Template(_))));
        let mut t = template(&subject, &principals, &options, &ext);
        t.valid_before = t.valid_after;
        assert!(matches!(ca.sign(&t), Err(SignerError::Template(_))));
    }

    #[test]
    fn refuses_weak_subject_keys() {
        // ssh-keygen -t rsa -b 1024
        let weak = PublicKey::from_openssh("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC6t8D0YnPnSpNmisyeKnmTNF3hAkpI+ozfkWhvU9YcT/M1vqrDCWY4vWmXZV9xyHB9y8UT1FZlYEHo6O+pHRH116fcMjgkQkZbs16sQOcfnMC7idFhr/u10r2RQhZ2U3FMDXoCd9DBy3M+4G/wJrUM/tMY3snhGkSy50pn8dhXBw== weak").unwrap();
        let err = check_subject_key(&weak).unwrap_err().to_string();
        assert!(err.contains("1024 bits is too weak"), "{err}");
        assert!(check_subject_key(&subject()).is_ok());
    }
}
