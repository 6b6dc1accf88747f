//! In-process certificate signing (the daemon's own signer, as it signs an issuance) against
//! the machine's raw ed25519 signature rate (`openssl speed ed25519`). One thread each.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jitca_signer::{CertAuthority, CertTemplate, generate_ed25519};

/// Certificates per CPU second from `CertAuthority::sign` in a loop on one thread, for `seconds`.
pub fn certificates_per_second(seconds: f64) -> Result<f64> {
    let ca = CertAuthority::from_key(generate_ed25519("bench-ca")?)?;
    let subject = generate_ed25519("bench")?.public_key().clone();
    // What the daemon signs for `request lab --as x`: one principal, its key id form, the
    // default extension.
    let principals = vec!["x@lab".to_string()];
    let extensions = vec!["permit-pty".to_string()];
    let options = BTreeMap::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut template = CertTemplate {
        subject: &subject,
        serial: 1,
        key_id: "jitca:abcdefghjk:bench:approvers=none",
        principals: &principals,
        valid_after: now - 60,
        valid_before: now + 300,
        extensions: &extensions,
        critical_options: &options,
    };
    let limit = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let cpu_before = thread_cpu_ticks();
    let mut signed = 0u64;
    while started.elapsed() < limit {
        // Check the clock every 64 signatures only.
        for _ in 0..64 {
            template.serial += 1;
            std::hint::black_box(ca.sign(&template)?);
            signed += 1;
        }
    }
    // Per second of this thread's CPU time, as `openssl speed` counts by default (it divides
    // by CPU time unless told -elapsed): other work on the machine does not skew the ratio.
    let cpu = crate::procfs::ticks_to_ms(thread_cpu_ticks() - cpu_before) / 1000.0;
    Ok(signed as f64 / cpu.max(1e-3))
}

/// CPU time of the calling thread (/proc/thread-self/stat), in clock ticks.
fn thread_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|text| {
            let rest = &text[text.rfind(')')? + 2..];
            let f: Vec<u64> = rest
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            Some(f.iter().sum())
        })
        .unwrap_or(0)
}

/// `openssl speed -seconds N ed25519`: its "sign/s" column. `None` without openssl.
pub fn openssl_ed25519_signs(seconds: u32) -> Result<Option<f64>> {
    let out = match Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "ed25519"])
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("run openssl speed"),
    };
    if !out.status.success() {
        bail!(
            "openssl speed ed25519 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_openssl_speed(&String::from_utf8_lossy(&out.stdout))
        .map(Some)
        .context("no Ed25519 line with sign/s in the output of openssl speed")
}

/// The sign/s figure from the table `openssl speed` prints:
/// `                              sign    verify    sign/s verify/s`
/// ` 253 bits EdDSA (Ed25519)   0.0000s   0.0001s  25000.0   8000.0`
fn parse_openssl_speed(text: &str) -> Option<f64> {
    let header = text.lines().find(|l| l.contains("sign/s"))?;
    let columns: Vec<&str> = header.split_whitespace().collect();
    let at = columns.iter().position(|c| *c == "sign/s")?;
    let from_end = columns.len() - at;
    let line = text.lines().find(|l| l.contains("Ed25519"))?;
    let values: Vec<&str> = line.split_whitespace().collect();
    values
        .get(values.len().checked_sub(from_end)?)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openssl_speed() {
        let out = "version: 3.0.19\nbuilt on: ...\n                              sign    verify    sign/s verify/s\n 253 bits EdDSA (Ed25519)   0.0000s   0.0001s  25123.4   8765.0\n";
        assert_eq!(parse_openssl_speed(out), Some(25123.4));
    }
}
