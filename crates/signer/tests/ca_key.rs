//! The CA key's sources against real peers: key files with their permissions, encrypted keys,
//! and signing through a real `ssh-agent` (OpenSSH's `ssh-agent`, `ssh-add`, `ssh-keygen`; the
//! openssh-client package). A fake agent stands in only where a real one cannot misbehave.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jitca_signer::{
    CaKeySource, CertAuthority, CertTemplate, Passphrase, SignerError, generate_ed25519,
};
use ssh_key::certificate::Certificate;
use ssh_key::{HashAlg, LineEnding, PublicKey};

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `ssh-keygen -t TYPE [-b BITS] -N PASSPHRASE -f DIR/NAME`: the key file (mode 0600) and .pub.
fn keygen(dir: &Path, name: &str, kind: &[&str], passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-C", name, "-N", passphrase, "-f"])
        .arg(&path)
        .arg("-t")
        .args(kind)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(status.success());
    path
}

fn public_of(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

struct Cert {
    subject: PublicKey,
    principals: Vec<String>,
    options: BTreeMap<String, String>,
    extensions: Vec<String>,
}

impl Cert {
    fn new() -> Cert {
        Cert {
            subject: generate_ed25519("alice").unwrap().public_key().clone(),
            principals: vec!["root@web1".to_string()],
            options: BTreeMap::new(),
            extensions: vec!["permit-pty".to_string()],
        }
    }

    fn template(&self) -> CertTemplate<'_> {
        let now = chrono::Utc::now().timestamp() as u64;
        CertTemplate {
            subject: &self.subject,
            serial: 42,
            key_id: "jitca:test:alice:approvers=bob",
            principals: &self.principals,
            valid_after: now - 60,
            valid_before: now + 3600,
            extensions: &self.extensions,
            critical_options: &self.options,
        }
    }

    /// Signs, then checks the certificate against the CA key on its own.
    fn sign_with(&self, ca: &CertAuthority, ca_public: &PublicKey) -> Result<String, SignerError> {
        let signed = ca.sign(&self.template())?;
        let cert = Certificate::from_openssh(&signed.openssh).unwrap();
        let now = chrono::Utc::now().timestamp() as u64;
        cert.validate_at(now, [&ca_public.fingerprint(HashAlg::Sha256)])
            .expect("verifies against the CA key");
        Ok(signed.openssh)
    }
}

#[test]
fn key_file_permissions_are_checked_like_openssh() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "ca", &["ed25519"], "");
    let ca = CertAuthority::open(&CaKeySource::file(&key)).unwrap();
    Cert::new()
        .sign_with(
            &ca,
            &ssh_key::PublicKey::read_openssh_file(public_of(&key)).unwrap(),
        )
        .unwrap();
    set_mode(&key, 0o400);
    CertAuthority::open(&CaKeySource::file(&key)).unwrap();

    for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
        set_mode(&key, mode);
        let err = CertAuthority::open(&CaKeySource::file(&key))
            .err()
            .expect("refused");
        assert!(matches!(err, SignerError::Unprotected { .. }), "{err}");
        let text = err.to_string();
        assert_eq!(
            text,
            format!(
                "UNPROTECTED PRIVATE KEY FILE! {k} has mode {mode:04o}, so group or others may \
                 read or change it; jitca refuses to use it. Fix: chmod 600 {k}",
                k = key.display()
            )
        );
        // The host key goes through the same check.
        let err = jitca_signer::load_private_key(&key)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("UNPROTECTED PRIVATE KEY FILE! "), "{err}");
        // And so does reading only the public half.
        let err = CaKeySource::file(&key)
            .public_key()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("UNPROTECTED PRIVATE KEY FILE! "), "{err}");
    }
    set_mode(&key, 0o600);

    // Owned by someone else: only root can make such a file to test with.
    if nix::unistd::geteuid().is_root() {
        let other = nix::unistd::Uid::from_raw(65534);
        std::os::unix::fs::chown(&key, Some(other.as_raw()), None).unwrap();
        let err = CertAuthority::open(&CaKeySource::file(&key))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.starts_with(&format!(
                "UNPROTECTED PRIVATE KEY FILE! {} is owned by uid 65534",
                key.display()
            )) && err.contains("while jitca runs as uid 0 (root)")
                && err.contains(&format!("Fix: chown root {}", key.display())),
            "{err}"
        );
        set_mode(&key, 0o644);
        let err = CertAuthority::open(&CaKeySource::file(&key))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains(", and has mode 0644") && err.contains(", then chmod 600 "),
            "{err}"
        );
    } else {
        eprintln!("not root: the test of a key owned by another user is skipped");
    }

    let err = CertAuthority::open(&CaKeySource::file(dir.path()))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.ends_with("not a regular file"), "{err}");
    let err = CertAuthority::open(&CaKeySource::file(dir.path().join("missing")))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.starts_with("cannot read "), "{err}");
}

#[test]
fn encrypted_key_with_a_passphrase_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "ca", &["ed25519"], "correct horse");
    let public = PublicKey::read_openssh_file(public_of(&key)).unwrap();
    let pass = dir.path().join("ca.pass");
    std::fs::write(&pass, "correct horse\n").unwrap();
    set_mode(&pass, 0o600);
    let source = |pass: &Path| CaKeySource::File {
        path: key.clone(),
        passphrase: Some(Passphrase::File(pass.to_path_buf())),
    };

    let ca = CertAuthority::open(&source(&pass)).unwrap();
    assert_eq!(ca.public_key().key_data(), public.key_data());
    Cert::new().sign_with(&ca, &public).unwrap();
    // The public half needs no passphrase.
    assert_eq!(
        CaKeySource::file(&key).public_key().unwrap().key_data(),
        public.key_data()
    );

    // No passphrase configured.
    let err = CertAuthority::open(&CaKeySource::file(&key))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("is encrypted with a passphrase and no passphrase is configured"),
        "{err}"
    );
    // The wrong one: one clear message, and neither passphrase in it.
    std::fs::write(&pass, "wrong horse\n").unwrap();
    let err = CertAuthority::open(&source(&pass))
        .err()
        .expect("refused")
        .to_string();
    assert_eq!(
        err,
        format!(
            "the passphrase from file {} does not decrypt {} (wrong passphrase)",
            pass.display(),
            key.display()
        )
    );
    assert!(!err.contains("horse"));
    // A passphrase file others may read.
    std::fs::write(&pass, "correct horse\n").unwrap();
    set_mode(&pass, 0o644);
    let err = CertAuthority::open(&source(&pass))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "UNPROTECTED PASSPHRASE FILE! {} has mode 0644",
            pass.display()
        )),
        "{err}"
    );
    // An encrypted key file others may read is refused before the passphrase is tried.
    set_mode(&pass, 0o600);
    set_mode(&key, 0o640);
    let err = CertAuthority::open(&source(&pass))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.starts_with("UNPROTECTED PRIVATE KEY FILE! "), "{err}");
}

/// A real `ssh-agent -D -a SOCKET`, killed when dropped.
struct Agent {
    socket: PathBuf,
    child: Option<Child>,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client) is needed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent {
            socket,
            child: Some(child),
        }
    }

    fn ssh_add(&self, args: &[&str], key: Option<&Path>) {
        let out = Command::new("ssh-add")
            .args(args)
            .args(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-add: {out:?}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn signs_through_a_real_ssh_agent_and_fails_closed_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(dir.path());
    let cert = Cert::new();
    for (name, kind) in [
        ("ed25519", &["ed25519"][..]),
        ("ecdsa", &["ecdsa", "-b", "256"][..]),
        ("rsa", &["rsa", "-b", "3072"][..]),
    ] {
        let key = keygen(dir.path(), name, kind, "");
        agent.ssh_add(&[], Some(&key));
        let public = PublicKey::read_openssh_file(public_of(&key)).unwrap();
        let source = CaKeySource::Agent {
            socket: agent.socket.clone(),
            public_key: public_of(&key),
        };
        let ca = CertAuthority::open(&source).unwrap();
        assert!(ca.uses_agent());
        let line = cert.sign_with(&ca, &public).unwrap();
        let parsed = Certificate::from_openssh(&line).unwrap();
        if name == "rsa" {
            // Never SHA-1: sshd refuses ssh-rsa signatures by default.
            assert_eq!(parsed.signature().algorithm().as_str(), "rsa-sha2-512");
        }
        assert_eq!(parsed.signature_key(), public.key_data());
        assert_eq!(parsed.serial(), 42);
    }

    // A key the agent does not hold: refused at start, with the fix.
    let other = keygen(dir.path(), "other", &["ed25519"], "");
    let source = CaKeySource::Agent {
        socket: agent.socket.clone(),
        public_key: public_of(&other),
    };
    let err = CertAuthority::open(&source)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "the ssh-agent holding the CA key ({}) does not hold the CA key SHA256:",
            agent.socket.display()
        )) && err.contains("ssh-add"),
        "{err}"
    );

    // The key removed from the agent after start: that signature fails, closed.
    let key = dir.path().join("ed25519");
    let public = PublicKey::read_openssh_file(public_of(&key)).unwrap();
    let source = CaKeySource::Agent {
        socket: agent.socket.clone(),
        public_key: public_of(&key),
    };
    let ca = CertAuthority::open(&source).unwrap();
    agent.ssh_add(&["-D"], None);
    let err = cert.sign_with(&ca, &public).unwrap_err();
    assert!(matches!(err, SignerError::Agent { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("refused to sign with the CA key SHA256:"),
        "{err}"
    );
    // Added again: the next signature works, no restart needed.
    agent.ssh_add(&[], Some(&key));
    cert.sign_with(&ca, &public).unwrap();

    // The agent killed: its socket stays behind, nobody answers.
    agent.kill();
    let err = cert.sign_with(&ca, &public).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "the ssh-agent holding the CA key ({}) cannot be reached: Connection refused (os error 111)",
            agent.socket.display()
        )
    );
    let err = CertAuthority::open(&source)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("cannot be reached"), "{err}");
    // The socket gone.
    std::fs::remove_file(&agent.socket).unwrap();
    let err = cert.sign_with(&ca, &public).unwrap_err().to_string();
    assert!(
        err.ends_with("cannot be reached: No such file or directory (os error 2)"),
        "{err}"
    );
}

/// A fake agent answering one exchange per connection with `answer(request)`.
fn fake_agent(
    socket: &Path,
    answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut len = [0u8; 4];
            if stream.read_exact(&mut len).is_err() {
                continue;
            }
            let mut request = vec![0u8; u32::from_be_bytes(len) as usize];
            stream.read_exact(&mut request).unwrap();
            let reply = answer(&request);
            let _ = stream.write_all(&(reply.len() as u32).to_be_bytes());
            let _ = stream.write_all(&reply);
        }
    })
}

fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

#[test]
fn an_agent_signing_with_another_key_issues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = generate_ed25519("ca").unwrap();
    let impostor = generate_ed25519("impostor").unwrap();
    let pub_path = dir.path().join("ca.pub");
    std::fs::write(&pub_path, ca_key.public_key().to_openssh().unwrap()).unwrap();
    let blob = ca_key.public_key().to_bytes().unwrap();
    let socket = dir.path().join("fake.sock");
    fake_agent(&socket, move |request| match request[0] {
        11 => {
            // SSH_AGENT_IDENTITIES_ANSWER with the CA key, so the start-up check passes.
            let mut answer = vec![12, 0, 0, 0, 1];
            answer.extend(string(&blob));
            answer.extend(string(b"ca"));
            answer
        }
        13 => {
            // A well-formed signature, by the wrong key.
            let mut body = &request[1..];
            let take = |body: &mut &[u8]| {
                let len = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
                let value = body[4..4 + len].to_vec();
                *body = &body[4 + len..];
                value
            };
            take(&mut body);
            let data = take(&mut body);
            let signature: ssh_key::Signature =
                signature::Signer::try_sign(&impostor, &data).unwrap();
            let mut answer = vec![14];
            answer.extend(string(&Vec::<u8>::try_from(signature).unwrap()));
            answer
        }
        _ => vec![5],
    });
    let source = CaKeySource::Agent {
        socket,
        public_key: pub_path,
    };
    let ca = CertAuthority::open(&source).unwrap();
    let err = Cert::new()
        .sign_with(&ca, ca_key.public_key())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("signing failed: "), "{err}");
}

#[test]
fn something_else_on_the_socket_is_not_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = generate_ed25519("ca").unwrap();
    let pub_path = dir.path().join("ca.pub");
    std::fs::write(&pub_path, ca_key.public_key().to_openssh().unwrap()).unwrap();
    let socket = dir.path().join("odd.sock");
    fake_agent(&socket, |_| b"HTTP/1.1 400".to_vec());
    let err = CertAuthority::open(&CaKeySource::Agent {
        socket,
        public_key: pub_path.clone(),
    })
    .err()
    .expect("refused")
    .to_string();
    assert!(err.ends_with("is it an ssh-agent?"), "{err}");

    // A .pub file that is not one.
    std::fs::write(&pub_path, ca_key.to_openssh(LineEnding::LF).unwrap()).unwrap();
    let err = CaKeySource::Agent {
        socket: dir.path().join("none"),
        public_key: pub_path,
    }
    .public_key()
    .unwrap_err()
    .to_string();
    assert!(err.contains("is not an OpenSSH public key"), "{err}");
}
