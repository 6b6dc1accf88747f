//! 100,000 revoked serials in several shapes: our KRL against the one
//! `ssh-keygen -k` builds for the same serials.
//!
//! Where `ssh-keygen`'s KRL is one OpenSSH can read, ours must be no larger.
//! Where it is not (a bitmap over OpenSSH's 16384-bit read limit: `-Q` says
//! "bignum is too large", and `sshd` would refuse every key), ours must still be
//! readable and cost no more than splitting those bitmaps at the limit.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::distributions;
use common::*;
use jitca_krl::*;

/// Ours vs ssh-keygen's for one set; returns (ours, theirs, theirs readable).
fn compare(
    d: &Path,
    ca: &ssh_key::PublicKey,
    name: &str,
    serials: &BTreeSet<u64>,
) -> (usize, usize, bool) {
    let theirs = keygen_krl(d, "ca.pub", serials, &[], "theirs.krl");
    let theirs_readable = match list(d, &d.join("theirs.krl")) {
        Ok(listing) => {
            assert_eq!(
                listing.serials,
                runs(serials),
                "{name}: ssh-keygen's own listing"
            );
            true
        }
        Err(e) => {
            assert!(e.contains("bignum is too large"), "{name}: {e}");
            false
        }
    };

    let mut krl = Krl::new(ca.clone());
    krl.generated_date = 0;
    krl.serials = serials.clone();
    let ours = krl.encode();
    std::fs::write(d.join("ours.krl"), &ours).unwrap();
    // OpenSSH reads ours and finds exactly the serials we revoked.
    let listing = list(d, &d.join("ours.krl"))
        .unwrap_or_else(|e| panic!("{name}: ssh-keygen cannot read ours: {e}"));
    assert_eq!(listing.serials, runs(serials), "{name}");
    (ours.len(), theirs.len(), theirs_readable)
}

/// What splitting ssh-keygen's bitmaps at the read limit would add, at most:
/// one more subsection header (type, length, offset, mpint length: 17 bytes)
/// and a rounding byte per 2048 bitmap bytes.
fn split_allowance(theirs: usize) -> usize {
    theirs.div_ceil(2048) * 18
}

#[test]
fn no_larger_than_ssh_keygen_for_100k_serials() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, ca) = keypair(d, "ca");
    let mut report = String::new();
    for (name, serials) in distributions::all() {
        assert_eq!(serials.len(), distributions::COUNT, "{name}");
        let (ours, theirs, theirs_readable) = compare(d, &ca, name, &serials);
        report +=
            &format!("{name}: ours {ours}, ssh-keygen {theirs} (readable: {theirs_readable})\n");
        if theirs_readable {
            assert!(ours <= theirs, "{name}: ours {ours} > ssh-keygen {theirs}");
        } else {
            assert!(
                ours <= theirs + split_allowance(theirs),
                "{name}: ours {ours} > ssh-keygen's unreadable {theirs} + split allowance"
            );
        }
    }
    eprint!("{report}");
}

/// Exact sizes where the best encoding is known by hand: a failure here means
/// the encoder changed, for better or worse.
#[test]
fn exact_sizes_of_the_simple_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ca) = keypair(dir.path(), "ca");
    let header = {
        let mut k = Krl::new(ca.clone());
        k.generated_date = 0;
        k.encode().len()
    };
    // Certificates section: type, length, CA key string (4 + 51), reserved (4).
    let section = 1 + 4 + 4 + 51 + 4;
    let size = |serials: BTreeSet<u64>| {
        let mut k = Krl::new(ca.clone());
        k.serials = serials;
        k.encode().len() - header - section
    };
    // One range subsection.
    assert_eq!(size(distributions::dense()), 21);
    // Every other serial: bitmaps of 8192 serials spanning 16383 bits
    // (18 + 16383 / 8 = 2065 bytes) twelve times, then 1696 serials spanning
    // 3391 bits (18 + 423 = 441 bytes). ssh-keygen's single 25,017-byte bitmap
    // is smaller but unreadable.
    assert_eq!(size(distributions::every_other()), 12 * 2065 + 441);
    // Scattered over 2^40: one list, 8 bytes a serial.
    assert_eq!(size(distributions::sparse()), 5 + 8 * 100_000);
}

/// Linear time: 100,000 serials in any shape encode in well under a second,
/// even in a debug build (release takes a few milliseconds; see krl_bench).
#[test]
fn encodes_100k_serials_in_well_under_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ca) = keypair(dir.path(), "ca");
    for (name, serials) in distributions::all() {
        let mut krl = Krl::new(ca.clone());
        krl.serials = serials;
        let start = std::time::Instant::now();
        let bytes = krl.encode();
        let took = start.elapsed();
        assert!(!bytes.is_empty());
        assert!(took.as_millis() < 1000, "{name}: encode took {took:?}");
    }
}
