//! KRLs of 100,000 revoked serials, ours against `ssh-keygen -k`: size and time.
//!
//! `cargo run --release -p jitca-krl --example krl_bench`
//!
//! Our time is `Krl::encode` alone, best of 20. ssh-keygen's is the whole
//! `ssh-keygen -k -f OUT -s ca.pub SPEC` process (start-up, reading a spec of
//! one line per run, writing the file), best of 5. "readable" is whether
//! `ssh-keygen -Q -l` can read the KRL back, i.e. whether `sshd` could use it.

#[path = "../tests/common/distributions.rs"]
mod distributions;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jitca_krl::Krl;
use ssh_key::PublicKey;

fn ssh_keygen(dir: &Path, args: &[&str]) -> bool {
    Command::new("ssh-keygen")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run ssh-keygen")
        .status
        .success()
}

fn best_of(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn spec(serials: &BTreeSet<u64>) -> String {
    let mut out = String::new();
    let mut it = serials.iter().copied().peekable();
    while let Some(lo) = it.next() {
        let mut hi = lo;
        while it.peek() == Some(&(hi + 1)) {
            hi = it.next().unwrap();
        }
        if lo == hi {
            writeln!(out, "serial: {lo}").unwrap();
        } else {
            writeln!(out, "serial: {lo}-{hi}").unwrap();
        }
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(ssh_keygen(
        d,
        &["-q", "-t", "ed25519", "-N", "", "-f", "ca"]
    ));
    let ca = PublicKey::read_openssh_file(d.join("ca.pub")).unwrap();

    println!(
        "| distribution ({} serials) | ours (bytes) | ssh-keygen (bytes) | ssh-keygen's readable by OpenSSH | our encode | ssh-keygen -k |",
        distributions::COUNT
    );
    println!("|---|---:|---:|---|---:|---:|");
    for (name, serials) in distributions::all() {
        let mut krl = Krl::new(ca.clone());
        krl.serials = serials.clone();
        let mut ours = Vec::new();
        let our_time = best_of(20, || ours = krl.encode());
        std::fs::write(d.join("ours.krl"), &ours).unwrap();
        assert!(
            ssh_keygen(d, &["-Q", "-l", "-f", "ours.krl"]),
            "{name}: OpenSSH cannot read our KRL"
        );

        std::fs::write(d.join("spec"), spec(&serials)).unwrap();
        let their_time = best_of(5, || {
            let _ = std::fs::remove_file(d.join("theirs.krl"));
            assert!(ssh_keygen(
                d,
                &["-q", "-k", "-f", "theirs.krl", "-s", "ca.pub", "spec"]
            ));
        });
        let theirs = std::fs::metadata(d.join("theirs.krl")).unwrap().len();
        let readable = if ssh_keygen(d, &["-Q", "-l", "-f", "theirs.krl"]) {
            "yes"
        } else {
            "**no**: \"bignum is too large\""
        };
        println!(
            "| {name} | {} | {theirs} | {readable} | {} | {} |",
            ours.len(),
            ms(our_time),
            ms(their_time)
        );
    }
}
