//! Our KRLs read by the real `ssh-keygen`: it must parse them, list exactly
//! what we revoked, and refuse exactly the certificates we revoked.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::distributions::Rng;
use common::*;
use jitca_krl::*;

const REVOKED_ID: &str = "req-77 alice approved-by bob";

/// Serials revoked in the main test, shaped to need every subsection type:
/// close singles (list), a long run (range), a dense scatter (bitmap), far
/// singles and the largest serial.
fn revoked_serials() -> BTreeSet<u64> {
    let mut s = BTreeSet::from([
        1,
        5,
        9,
        1000,
        1002,
        1003,
        1007,
        1010,
        1013,
        5_000_000_000,
        u64::MAX,
    ]);
    s.extend(100_000..=130_000);
    s.extend((20_000..20_400).filter(|n| n % 3 != 0));
    s
}

use ssh_key::PublicKey;

struct Fixture {
    dir: tempfile::TempDir,
    ca: PublicKey,
    other_ca: PublicKey,
    /// (certificate, signed by "ca", revoked by our KRL for "ca")
    certs: Vec<(PathBuf, bool)>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, ca) = keypair(d, "ca");
    let (_, other_ca) = keypair(d, "other_ca");
    let (user, _) = keypair(d, "user");
    let user_pub = user.with_extension("pub");
    let mut certs = Vec::new();
    let revoked = revoked_serials();
    // Revoked by serial, one or more of each subsection type.
    let hits = [
        1, 5, 9, 100_000, 115_000, 130_000, 1000, 1003, 1013, 20_000, 20_398,
    ];
    let far_hits = [5_000_000_000, u64::MAX];
    // Neighbours of revoked serials, and serials between subsections.
    let misses = [2, 4, 6, 99_999, 130_001, 1001, 1004, 1014, 20_001, 20_400];
    let far_misses = [4_999_999_999, u64::MAX - 1];
    let serials: Vec<u64> = hits
        .into_iter()
        .chain(far_hits)
        .chain(misses)
        .chain(far_misses)
        .collect();
    for serial in serials {
        let cert = sign(
            d,
            "ca",
            &user_pub,
            &format!("s{serial}"),
            "req-1 someone",
            serial,
        );
        certs.push((cert, revoked.contains(&serial)));
    }
    // By key id: whatever the serial, including none (0).
    for (name, id, serial, revoked) in [
        ("id-hit", REVOKED_ID, 7, true),
        ("id-hit-zero", REVOKED_ID, 0, true),
        ("id-miss", "req-78 alice approved-by bob", 8, false),
        ("id-miss-zero", "req-78 alice approved-by bob", 0, false),
        ("id-prefix", "req-77 alice", 10, false),
    ] {
        certs.push((sign(d, "ca", &user_pub, name, id, serial), revoked));
    }
    assert_eq!(certs.iter().filter(|c| c.1).count(), 15, "fixture sanity");
    Fixture {
        dir,
        ca,
        other_ca,
        certs,
    }
}

fn write_krl(dir: &Path, name: &str, krl: &Krl) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, krl.encode()).unwrap();
    path
}

fn our_krl(ca: PublicKey) -> Krl {
    let mut krl = Krl::new(ca);
    krl.version = 3;
    krl.serials = revoked_serials();
    krl.key_ids.insert(REVOKED_ID.to_string());
    krl
}

#[test]
fn ssh_keygen_refuses_exactly_the_revoked_certificates() {
    let f = fixture();
    let d = f.dir.path();
    let krl = our_krl(f.ca.clone());
    let path = write_krl(d, "ours.krl", &krl);

    // Every serial encoding is exercised.
    let decoded = decode(&krl.encode()).unwrap();
    let types = &decoded.certificates[0].subsection_types;
    for t in [
        KRL_SECTION_CERT_SERIAL_LIST,
        KRL_SECTION_CERT_SERIAL_RANGE,
        KRL_SECTION_CERT_SERIAL_BITMAP,
        KRL_SECTION_CERT_KEY_ID,
    ] {
        assert!(
            types.contains(&t),
            "subsection {t:#x} missing from {types:?}"
        );
    }

    for (cert, revoked) in &f.certs {
        assert_eq!(
            query(d, &path, cert),
            Some(*revoked),
            "ssh-keygen -Q on {} (revoked: {revoked})",
            cert.display()
        );
        // Our reader agrees with OpenSSH's.
        let c = ssh_key::Certificate::read_file(cert).unwrap();
        assert_eq!(decoded.revokes(&f.ca, c.serial(), c.key_id()), *revoked);
    }
}

#[test]
fn a_krl_for_another_ca_revokes_nothing_of_ours() {
    let f = fixture();
    let d = f.dir.path();
    let path = write_krl(d, "other.krl", &our_krl(f.other_ca.clone()));
    for (cert, _) in &f.certs {
        assert_eq!(query(d, &path, cert), Some(false), "{}", cert.display());
    }
    // The same KRL does revoke the other CA's certificates: it is not inert.
    let user_pub = d.join("user.pub");
    let theirs = sign(d, "other_ca", &user_pub, "theirs", "x", 1);
    assert_eq!(query(d, &path, &theirs), Some(true));
    let theirs_ok = sign(d, "other_ca", &user_pub, "theirs-ok", "x", 2);
    assert_eq!(query(d, &path, &theirs_ok), Some(false));
}

#[test]
fn an_empty_krl_is_read_and_revokes_nothing() {
    let f = fixture();
    let d = f.dir.path();
    let mut krl = Krl::new(f.ca.clone());
    krl.version = 12;
    let path = write_krl(d, "empty.krl", &krl);
    let listing = list(d, &path).expect("ssh-keygen -Q -l reads an empty KRL");
    assert!(
        listing.header.contains(&"# KRL version 12".to_string()),
        "{listing:?}"
    );
    assert!(listing.cas.is_empty() && listing.serials.is_empty() && listing.ids.is_empty());
    for (cert, _) in &f.certs {
        assert_eq!(query(d, &path, cert), Some(false), "{}", cert.display());
    }
}

#[test]
fn listing_shows_our_header_serials_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, ca) = keypair(d, "ca");
    let mut krl = our_krl(ca.clone());
    krl.version = 987_654_321;
    krl.generated_date = 1_700_000_000; // 2023-11-14 22:13:20 UTC
    krl.comment = "jitca: revoked on request".into();
    krl.key_ids.insert("req-9 carol".into());
    let listing = list(d, &write_krl(d, "ours.krl", &krl)).unwrap();
    assert_eq!(
        listing.header,
        [
            "# KRL version 987654321",
            "# Generated at 20231114T221320",
            "# Comment: jitca: revoked on request",
        ]
    );
    assert_eq!(
        listing.cas,
        [format!(
            "ssh-ed25519 {}",
            ca.fingerprint(ssh_key::HashAlg::Sha256)
        )]
    );
    assert_eq!(listing.serials, runs(&revoked_serials()));
    assert_eq!(listing.ids, ["req-77 alice approved-by bob", "req-9 carol"]);
}

/// Many small random sets: ours lists the same serials as ssh-keygen's KRL for
/// the same spec, and is never larger.
#[test]
fn never_larger_than_ssh_keygen_on_random_sets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, ca) = keypair(d, "ca");
    let mut rng = Rng(99);
    let mut smaller = 0;
    for case in 0..60 {
        let mut serials = BTreeSet::new();
        let mut at = rng.between(1, 1 << 20);
        let gaps: &[u64] = match case % 4 {
            0 => &[1, 2, 3],
            1 => &[1, 5, 40, 90],
            2 => &[2, 70, 300, 5000],
            _ => &[1, 8, 64, 100_000],
        };
        for _ in 0..rng.between(1, 400) {
            let len = if rng.between(0, 5) == 0 {
                rng.between(2, 50)
            } else {
                1
            };
            serials.extend(at..at + len);
            at += len + gaps[rng.between(0, gaps.len() as u64 - 1) as usize];
        }
        let theirs = keygen_krl(d, "ca.pub", &serials, &[], "theirs.krl");
        let theirs_listing = list(d, &d.join("theirs.krl")).expect("small sets stay readable");
        let mut krl = Krl::new(ca.clone());
        krl.generated_date = 0;
        krl.serials = serials.clone();
        let ours = krl.encode();
        std::fs::write(d.join("ours.krl"), &ours).unwrap();
        let ours_listing = list(d, &d.join("ours.krl")).unwrap();
        assert_eq!(ours_listing.serials, runs(&serials), "case {case}");
        assert_eq!(ours_listing.serials, theirs_listing.serials, "case {case}");
        assert!(
            ours.len() <= theirs.len(),
            "case {case}: ours {} > ssh-keygen {} for {serials:?}",
            ours.len(),
            theirs.len()
        );
        if ours.len() < theirs.len() {
            smaller += 1;
        }
    }
    eprintln!("ours smaller than ssh-keygen's in {smaller} of 60 random sets");
}

/// A bitmap spanning exactly 16384 serials is the largest OpenSSH reads; one
/// bit more and the whole file is refused. Ours stop at the limit.
#[test]
fn bitmap_size_limit_is_openssh_s() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, ca) = keypair(d, "ca");
    let ca_blob = {
        use ssh_key::encoding::Encode;
        ca.key_data().encode_vec().unwrap()
    };
    let hand_made = |span: u64| -> Vec<u8> {
        // Bits 0 and span-1 set: a bitmap that needs exactly `span` bits.
        let len = (span / 8 + 1) as usize;
        let mut bits = vec![0u8; len];
        bits[len - 1] |= 1;
        bits[len - 1 - ((span - 1) / 8) as usize] |= 1 << ((span - 1) % 8);
        let mut sub = 1u64.to_be_bytes().to_vec();
        sub.extend_from_slice(&(len as u32).to_be_bytes());
        sub.extend_from_slice(&bits);
        let mut section = (ca_blob.len() as u32).to_be_bytes().to_vec();
        section.extend_from_slice(&ca_blob);
        section.extend_from_slice(&[0, 0, 0, 0, KRL_SECTION_CERT_SERIAL_BITMAP]);
        section.extend_from_slice(&(sub.len() as u32).to_be_bytes());
        section.extend_from_slice(&sub);
        let mut out = Krl::new(ca.clone()).encode();
        out.push(KRL_SECTION_CERTIFICATES);
        out.extend_from_slice(&(section.len() as u32).to_be_bytes());
        out.extend_from_slice(&section);
        out
    };
    let at_limit = d.join("at_limit.krl");
    std::fs::write(&at_limit, hand_made(MAX_BITMAP_SPAN)).unwrap();
    let listing = list(d, &at_limit).expect("a 16384-serial bitmap is readable");
    assert_eq!(
        listing.serials,
        [(1, 1), (MAX_BITMAP_SPAN, MAX_BITMAP_SPAN)]
    );

    let over = d.join("over.krl");
    std::fs::write(&over, hand_made(MAX_BITMAP_SPAN + 8)).unwrap();
    let err = list(d, &over).expect_err("a longer bitmap is refused");
    assert!(err.contains("bignum is too large"), "{err}");
    assert_eq!(
        decode(&std::fs::read(&over).unwrap()),
        Err(KrlError::BitmapTooLarge(2050))
    );
}

#[test]
fn earlier_ca_keys_get_the_same_revocations() {
    let f = fixture();
    let d = f.dir.path();
    let (_, third_ca) = keypair(d, "third_ca");
    let mut krl = our_krl(f.ca.clone());
    krl.earlier_cas = vec![f.other_ca.clone()];
    let path = write_krl(d, "rotation.krl", &krl);
    let user_pub = d.join("user.pub");
    // The current CA's certificates: exactly as before.
    for (cert, revoked) in &f.certs {
        assert_eq!(query(d, &path, cert), Some(*revoked), "{}", cert.display());
    }
    // The earlier CA's: the same serials and key ids are revoked.
    let old_revoked = sign(d, "other_ca", &user_pub, "old-5", "x", 5);
    let old_fine = sign(d, "other_ca", &user_pub, "old-6", "x", 6);
    let old_by_id = sign(d, "other_ca", &user_pub, "old-id", REVOKED_ID, 6);
    assert_eq!(query(d, &path, &old_revoked), Some(true));
    assert_eq!(query(d, &path, &old_fine), Some(false));
    assert_eq!(query(d, &path, &old_by_id), Some(true));
    // A CA named nowhere in the KRL is untouched.
    let _ = third_ca;
    let stranger = sign(d, "third_ca", &user_pub, "stranger-5", "x", 5);
    assert_eq!(query(d, &path, &stranger), Some(false));
    let decoded = decode(&krl.encode()).unwrap();
    assert_eq!(decoded.certificates.len(), 2);
}
