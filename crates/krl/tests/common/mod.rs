//! The real OpenSSH tools as the oracle: `ssh-keygen` signs certificates,
//! builds reference KRLs (`-k`), says whether a KRL revokes a certificate
//! (`-Q`) and lists what it revokes (`-Q -l`).

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod distributions;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ssh_key::PublicKey;

/// Runs `ssh-keygen` with a fixed time zone (listings print local time).
pub fn ssh_keygen(args: &[&str], dir: &Path) -> Output {
    Command::new("ssh-keygen")
        .args(args)
        .current_dir(dir)
        .env("TZ", "UTC")
        .output()
        .expect("run ssh-keygen (is openssh-client installed? scripts/test installs it)")
}

/// Like [`ssh_keygen`], failing the test unless it exits 0.
pub fn ssh_keygen_ok(args: &[&str], dir: &Path) -> String {
    let out = ssh_keygen(args, dir);
    assert!(
        out.status.success(),
        "ssh-keygen {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An ed25519 key pair `dir/name` + `dir/name.pub`.
pub fn keypair(dir: &Path, name: &str) -> (PathBuf, PublicKey) {
    ssh_keygen_ok(
        &["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", name],
        dir,
    );
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    (
        dir.join(name),
        PublicKey::from_openssh(public.trim()).unwrap(),
    )
}

/// A user certificate for principal "someone"; see [`sign_for`].
pub fn sign(
    dir: &Path,
    ca: &str,
    user_pub: &Path,
    name: &str,
    key_id: &str,
    serial: u64,
) -> PathBuf {
    sign_for(dir, ca, user_pub, name, key_id, "someone", serial)
}

/// A user certificate signed by `ca` (a key file in `dir`) for a copy of
/// `user.pub` named `name.pub`, with `key_id`, `principal` and `serial`.
/// Returns the certificate's path, `dir/name-cert.pub`.
pub fn sign_for(
    dir: &Path,
    ca: &str,
    user_pub: &Path,
    name: &str,
    key_id: &str,
    principal: &str,
    serial: u64,
) -> PathBuf {
    let subject = dir.join(format!("{name}.pub"));
    std::fs::copy(user_pub, &subject).unwrap();
    let serial = serial.to_string();
    let args = [
        "-q",
        "-s",
        ca,
        "-I",
        key_id,
        "-n",
        principal,
        "-z",
        &serial,
        subject.to_str().unwrap(),
    ];
    ssh_keygen_ok(&args, dir);
    dir.join(format!("{name}-cert.pub"))
}

/// What `ssh-keygen -Q -f KRL CERT` says: `Some(true)` revoked (exit 1),
/// `Some(false)` fine (exit 0), `None` it could not read the KRL (exit 255).
pub fn query(dir: &Path, krl: &Path, cert: &Path) -> Option<bool> {
    let out = ssh_keygen(
        &["-Q", "-f", krl.to_str().unwrap(), cert.to_str().unwrap()],
        dir,
    );
    match out.status.code() {
        Some(0) => Some(false),
        Some(1) => Some(true),
        _ => None,
    }
}

/// `ssh-keygen -Q -l -f KRL`, parsed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub header: Vec<String>,
    pub cas: Vec<String>,
    /// `serial:` lines as inclusive ranges, in listing order.
    pub serials: Vec<(u64, u64)>,
    pub ids: Vec<String>,
}

impl Listing {
    /// The serials as OpenSSH's tree holds them, expanded (fine up to a few 100k).
    pub fn serial_set(&self) -> BTreeSet<u64> {
        self.serials.iter().flat_map(|&(lo, hi)| lo..=hi).collect()
    }
}

/// Lists a KRL with `ssh-keygen -Q -l`, or returns its error message if
/// ssh-keygen cannot read it.
pub fn list(dir: &Path, krl: &Path) -> Result<Listing, String> {
    let out = ssh_keygen(&["-Q", "-l", "-f", krl.to_str().unwrap()], dir);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut l = Listing::default();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        if let Some(ca) = line.strip_prefix("# CA key ") {
            l.cas.push(ca.to_string());
        } else if line.starts_with('#') {
            l.header.push(line.to_string());
        } else if let Some(s) = line.strip_prefix("serial: ") {
            let (lo, hi) = s.split_once('-').unwrap_or((s, s));
            l.serials.push((lo.parse().unwrap(), hi.parse().unwrap()));
        } else if let Some(id) = line.strip_prefix("id: ") {
            l.ids.push(id.to_string());
        } else {
            assert!(line.is_empty(), "unexpected listing line {line:?}");
        }
    }
    Ok(l)
}

/// The set's runs, as `-Q -l` lists them.
pub fn runs(serials: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in serials {
        match out.last_mut() {
            Some(r) if r.1 + 1 == s => r.1 = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// `ssh-keygen -k`'s KRL for `serials` and `ids` of the CA `ca_pub` (a file
/// in `dir`), written to `dir/out` from a spec file. Returns the KRL bytes.
pub fn keygen_krl(
    dir: &Path,
    ca_pub: &str,
    serials: &BTreeSet<u64>,
    ids: &[&str],
    out: &str,
) -> Vec<u8> {
    let spec = dir.join(format!("{out}.spec"));
    std::fs::write(&spec, spec_text(serials, ids)).unwrap();
    let _ = std::fs::remove_file(dir.join(out));
    ssh_keygen_ok(
        &["-q", "-k", "-f", out, "-s", ca_pub, spec.to_str().unwrap()],
        dir,
    );
    std::fs::read(dir.join(out)).unwrap()
}

/// A KRL spec (ssh-keygen(1) "KEY REVOCATION LISTS"): one line per run.
pub fn spec_text(serials: &BTreeSet<u64>, ids: &[&str]) -> String {
    let mut spec = String::new();
    for (lo, hi) in runs(serials) {
        if lo == hi {
            writeln!(spec, "serial: {lo}").unwrap();
        } else {
            writeln!(spec, "serial: {lo}-{hi}").unwrap();
        }
    }
    for id in ids {
        writeln!(spec, "id: {id}").unwrap();
    }
    spec
}
