//! Our KRL as a real `sshd`'s `RevokedKeys`: logins with revoked certificates
//! are refused, the others get in, and an empty KRL revokes nothing. Needs root
//! (sshd's privilege separation), as `scripts/test` requires.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jitca_krl::Krl;

/// A real `sshd` on a loopback port trusting `ca.pub` in `dir` and reading
/// `dir/revoked.krl` on every authentication.
struct Sshd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Sshd {
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd (are the tests running as root?)");
        keypair(dir, "host_key");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile none\nTrustedUserCAKeys {d}/ca.pub\nRevokedKeys {d}/revoked.krl\n\
             LogLevel VERBOSE\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start /usr/sbin/sshd (is openssh-server installed?)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { child, port, log }
    }

    /// Whether `ssh` logs in as root with `key` and `cert` and runs a command.
    fn login(&self, key: &Path, cert: &Path) -> bool {
        let out = Command::new("ssh")
            .arg("-i")
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()))
            .args([
                "-F",
                "/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "KexAlgorithms=curve25519-sha256",
                "-p",
                &self.port.to_string(),
                "root@127.0.0.1",
                "echo krl-login-ok",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run ssh");
        let ok =
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "krl-login-ok";
        if !ok {
            // A refusal must be the KRL's doing, not a broken setup.
            assert_eq!(out.status.code(), Some(255), "{out:?}");
        }
        ok
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces the KRL the way hosts should: write aside, then rename.
fn install(dir: &Path, krl: &Krl) {
    let tmp = dir.join("revoked.krl.new");
    std::fs::write(&tmp, krl.encode()).unwrap();
    std::fs::rename(&tmp, dir.join("revoked.krl")).unwrap();
}

#[test]
fn sshd_refuses_exactly_the_certificates_our_krl_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, ca) = keypair(d, "ca");
    let (user, _) = keypair(d, "user");
    let user_pub = user.with_extension("pub");
    let cert = |name: &str, key_id: &str, serial: u64| {
        sign_for(d, "ca", &user_pub, name, key_id, "root", serial)
    };
    let c7 = cert("c7", "req-7 alice", 7);
    let c8 = cert("c8", "req-8 alice", 8);
    let c300 = cert("c300", "req-300 bob", 300);
    let c9 = cert("c9", "req-9 carol", 9);

    let mut krl = Krl::new(ca.clone());
    krl.version = 1;
    install(d, &krl);
    let sshd = Sshd::start(d);

    // Empty KRL: it parses and revokes nothing (a KRL sshd cannot read would
    // refuse every key).
    for c in [&c7, &c8, &c300, &c9] {
        assert!(
            sshd.login(&user, c),
            "empty KRL refused {}: {}",
            c.display(),
            sshd.log()
        );
    }

    // Revoke 7 by serial (with neighbours in a bitmap and a range nearby) and
    // carol's request by key id.
    krl.version = 2;
    krl.serials.extend([3, 5, 7, 12]);
    krl.serials.extend(100..=299);
    krl.serials.extend(301..=400);
    krl.key_ids.insert("req-9 carol".into());
    install(d, &krl);
    assert!(!sshd.login(&user, &c7), "revoked serial 7 got in");
    assert!(!sshd.login(&user, &c9), "revoked key id got in");
    assert!(sshd.login(&user, &c8), "serial 8 refused: {}", sshd.log());
    assert!(
        sshd.login(&user, &c300),
        "serial 300 refused: {}",
        sshd.log()
    );
    assert!(
        sshd.log().contains("revoked"),
        "sshd never said why: {}",
        sshd.log()
    );

    // Un-revoking (a newer KRL without it) lets the certificate in again.
    krl.version = 3;
    krl.serials.remove(&7);
    install(d, &krl);
    assert!(
        sshd.login(&user, &c7),
        "serial 7 still refused: {}",
        sshd.log()
    );
}
