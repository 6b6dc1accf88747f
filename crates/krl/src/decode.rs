//! Reading a binary KRL back, with the checks OpenSSH's own reader makes.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use ssh_key::PublicKey;
use ssh_key::encoding::Decode;
use ssh_key::public::KeyData;

use crate::wire::Reader;
use crate::*;

/// A parsed KRL: the header and every revocation it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedKrl {
    /// `krl_version` from the header.
    pub version: u64,
    /// `generated_date` from the header, seconds since the Unix epoch.
    pub generated_date: u64,
    /// `flags` from the header (none are defined).
    pub flags: u64,
    /// The header comment (invalid UTF-8 replaced, as it is only for people).
    pub comment: String,
    /// One entry per certificates section, in file order.
    pub certificates: Vec<CertSection>,
    /// Plain public key blobs revoked outright.
    pub explicit_keys: Vec<Vec<u8>>,
    /// SHA-1 hashes of revoked plain public key blobs.
    pub sha1_fingerprints: Vec<Vec<u8>>,
    /// SHA-256 hashes of revoked plain public key blobs.
    pub sha256_fingerprints: Vec<Vec<u8>>,
}

/// What one certificates section revokes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSection {
    /// The CA whose certificates this section revokes; `None` for every CA
    /// (an empty CA key in the file).
    pub ca: Option<PublicKey>,
    /// Revoked serials as sorted, disjoint, non-adjacent inclusive ranges:
    /// ranges, because one range subsection can revoke 2^64 - 1 serials.
    pub serial_ranges: Vec<RangeInclusive<u64>>,
    /// Revoked key ids.
    pub key_ids: BTreeSet<String>,
    /// The subsection types in file order (`KRL_SECTION_CERT_*`), to see how
    /// the serials were encoded.
    pub subsection_types: Vec<u8>,
}

impl CertSection {
    /// Every revoked serial, in increasing order. Lazy: mind the count
    /// ([`CertSection::serial_count`]) before collecting.
    pub fn serials(&self) -> impl Iterator<Item = u64> + '_ {
        self.serial_ranges.iter().flat_map(|r| r.clone())
    }

    /// How many serials the section revokes.
    pub fn serial_count(&self) -> u128 {
        self.serial_ranges
            .iter()
            .map(|r| u128::from(r.end() - r.start()) + 1)
            .sum()
    }

    /// Whether `serial` is revoked by serial. 0 never is: OpenSSH ignores it.
    pub fn revokes_serial(&self, serial: u64) -> bool {
        if serial == 0 {
            return false;
        }
        let i = self.serial_ranges.partition_point(|r| *r.end() < serial);
        self.serial_ranges
            .get(i)
            .is_some_and(|r| r.contains(&serial))
    }

    /// Whether this section applies to certificates signed by `ca`.
    pub fn applies_to(&self, ca: &PublicKey) -> bool {
        self.ca
            .as_ref()
            .is_none_or(|mine| plain(mine.key_data()) == plain(ca.key_data()))
    }
}

impl DecodedKrl {
    /// Whether a certificate signed by `ca` with this serial and key id is
    /// revoked, by the rules `sshd` applies: a matching key id, or a non-zero
    /// matching serial, in a section for that CA or for every CA.
    pub fn revokes(&self, ca: &PublicKey, serial: u64, key_id: &str) -> bool {
        self.certificates.iter().any(|section| {
            section.applies_to(ca)
                && (section.key_ids.contains(key_id) || section.revokes_serial(serial))
        })
    }
}

fn plain(key: &KeyData) -> &KeyData {
    match key {
        KeyData::Certificate(cert) => cert.public_key(),
        other => other,
    }
}

/// Parses a binary KRL. Refuses what OpenSSH's reader refuses (so a KRL this
/// accepts is one `sshd` can use), and signed KRLs, which OpenSSH 9.4+ refuses.
pub fn decode(bytes: &[u8]) -> Result<DecodedKrl, KrlError> {
    if bytes.len() < KRL_MAGIC.len() || &bytes[..KRL_MAGIC.len()] != KRL_MAGIC {
        return Err(KrlError::BadMagic);
    }
    let mut r = Reader::new(&bytes[KRL_MAGIC.len()..]);
    let format = r.u32("the header")?;
    if format != KRL_FORMAT_VERSION {
        return Err(KrlError::UnsupportedFormatVersion(format));
    }
    let version = r.u64("the header")?;
    let generated_date = r.u64("the header")?;
    let flags = r.u64("the header")?;
    r.string("the header")?; // reserved, ignored by definition
    let comment = String::from_utf8_lossy(r.cstring("the comment")?).into_owned();

    let mut krl = DecodedKrl {
        version,
        generated_date,
        flags,
        comment,
        certificates: Vec::new(),
        explicit_keys: Vec::new(),
        sha1_fingerprints: Vec::new(),
        sha256_fingerprints: Vec::new(),
    };
    while !r.is_empty() {
        let kind = r.u8("a section type")?;
        let mut body = Reader::new(r.string("a section")?);
        match kind {
            KRL_SECTION_CERTIFICATES => {
                krl.certificates.push(cert_section(&mut body)?);
            }
            KRL_SECTION_EXPLICIT_KEY => blobs(&mut body, 0, &mut krl.explicit_keys)?,
            KRL_SECTION_FINGERPRINT_SHA1 => blobs(&mut body, 20, &mut krl.sha1_fingerprints)?,
            KRL_SECTION_FINGERPRINT_SHA256 => blobs(&mut body, 32, &mut krl.sha256_fingerprints)?,
            KRL_SECTION_SIGNATURE => return Err(KrlError::SignatureSection),
            other => return Err(KrlError::UnknownSection(other)),
        }
        body.finish("a section")?;
    }
    Ok(krl)
}

fn blobs(r: &mut Reader<'_>, len: usize, into: &mut Vec<Vec<u8>>) -> Result<(), KrlError> {
    while !r.is_empty() {
        let blob = r.string("a key or fingerprint")?;
        if len != 0 && blob.len() != len {
            return Err(KrlError::BadFingerprintLength(blob.len(), len));
        }
        into.push(blob.to_vec());
    }
    Ok(())
}

fn cert_section(r: &mut Reader<'_>) -> Result<CertSection, KrlError> {
    let ca_blob = r.string("a CA key")?;
    let ca = if ca_blob.is_empty() {
        None
    } else {
        let mut blob = ca_blob;
        let key = KeyData::decode(&mut blob).map_err(|e| KrlError::BadCaKey(e.to_string()))?;
        if !blob.is_empty() {
            return Err(KrlError::BadCaKey(format!("{} trailing bytes", blob.len())));
        }
        Some(PublicKey::from(key))
    };
    r.string("the reserved field")?;

    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut key_ids = BTreeSet::new();
    let mut subsection_types = Vec::new();
    while !r.is_empty() {
        let kind = r.u8("a subsection type")?;
        let mut sub = Reader::new(r.string("a subsection")?);
        subsection_types.push(kind);
        match kind {
            KRL_SECTION_CERT_SERIAL_LIST => {
                while !sub.is_empty() {
                    let s = sub.u64("a serial list")?;
                    push_range(&mut ranges, s, s)?;
                }
            }
            KRL_SECTION_CERT_SERIAL_RANGE => {
                let lo = sub.u64("a serial range")?;
                let hi = sub.u64("a serial range")?;
                push_range(&mut ranges, lo, hi)?;
            }
            KRL_SECTION_CERT_SERIAL_BITMAP => {
                let offset = sub.u64("a serial bitmap")?;
                let bits = mpint(&mut sub)?;
                bitmap_ranges(offset, bits, &mut ranges)?;
            }
            KRL_SECTION_CERT_KEY_ID => {
                while !sub.is_empty() {
                    key_ids.insert(sub.text("key id")?);
                }
            }
            other => return Err(KrlError::UnknownCertSection(other)),
        }
        sub.finish("a certificate subsection")?;
    }

    Ok(CertSection {
        ca,
        serial_ranges: normalise(ranges),
        key_ids,
        subsection_types,
    })
}

fn push_range(ranges: &mut Vec<(u64, u64)>, lo: u64, hi: u64) -> Result<(), KrlError> {
    if lo == 0 {
        return Err(KrlError::ZeroSerial);
    }
    if lo > hi {
        return Err(KrlError::InvertedRange(lo, hi));
    }
    ranges.push((lo, hi));
    Ok(())
}

/// An mpint's magnitude bytes, checked as `sshbuf_get_bignum2_bytes_direct`
/// does: not negative, at most 2048 bytes plus one leading zero.
fn mpint<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], KrlError> {
    let raw = r.string("a serial bitmap")?;
    if raw.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(KrlError::NegativeBitmap);
    }
    const MAX: usize = (MAX_BITMAP_SPAN / 8) as usize;
    if raw.len() > MAX + 1 || (raw.len() == MAX + 1 && raw[0] != 0) {
        return Err(KrlError::BitmapTooLarge(raw.len()));
    }
    let zeros = raw.iter().take_while(|&&b| b == 0).count();
    Ok(&raw[zeros..])
}

/// Appends the runs of set bits of the big-endian `bits` (bit i = serial
/// `offset + i`).
fn bitmap_ranges(offset: u64, bits: &[u8], ranges: &mut Vec<(u64, u64)>) -> Result<(), KrlError> {
    let nbits = bits.len() as u64 * 8;
    let mut run: Option<(u64, u64)> = None;
    for i in 0..nbits {
        let byte = bits[bits.len() - 1 - (i / 8) as usize];
        if byte & (1 << (i % 8)) == 0 {
            continue;
        }
        let serial = offset.checked_add(i).ok_or(KrlError::BitmapWraps)?;
        run = match run {
            Some((lo, hi)) if hi + 1 == serial => Some((lo, serial)),
            Some((lo, hi)) => {
                push_range(ranges, lo, hi)?;
                Some((serial, serial))
            }
            None => Some((serial, serial)),
        };
    }
    if let Some((lo, hi)) = run {
        push_range(ranges, lo, hi)?;
    }
    Ok(())
}

/// Sorts and merges overlapping or adjacent ranges, as OpenSSH's serial tree does.
fn normalise(mut ranges: Vec<(u64, u64)>) -> Vec<RangeInclusive<u64>> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out.into_iter().map(|(lo, hi)| lo..=hi).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE4glDBeiy5tLh5xnUhOZUF2TxI5+UqsulCTA++8h1LC ca";
    const OTHER_CA: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIJodUON0HuKSRW8JDYiKfvP3MGG8feJ38kVDQl5KnlO other";

    fn ca() -> PublicKey {
        PublicKey::from_openssh(CA).unwrap()
    }

    fn sample() -> Krl {
        let mut k = Krl::new(ca());
        k.version = 7;
        k.generated_date = 1_700_000_000;
        k.comment = "jitca test".into();
        k.serials.extend([1, 2, 3, 10, 12, 13, 17, 1000, 50_000]);
        k.serials.extend(100..=400);
        k.serials.extend((2000..3000).step_by(3));
        k.key_ids
            .extend(["req-1 alice".to_string(), "req-2 bob".to_string()]);
        k
    }

    #[test]
    fn round_trip() {
        let k = sample();
        let d = decode(&k.encode()).unwrap();
        assert_eq!(d.version, 7);
        assert_eq!(d.generated_date, 1_700_000_000);
        assert_eq!(d.flags, 0);
        assert_eq!(d.comment, "jitca test");
        assert_eq!(d.certificates.len(), 1);
        let c = &d.certificates[0];
        assert_eq!(c.ca.as_ref().unwrap().key_data(), k.ca.key_data());
        assert_eq!(c.serials().collect::<BTreeSet<_>>(), k.serials);
        assert_eq!(c.serial_count(), k.serials.len() as u128);
        assert_eq!(c.key_ids, k.key_ids);
        // The sample is shaped to need every serial encoding.
        for t in [
            KRL_SECTION_CERT_SERIAL_LIST,
            KRL_SECTION_CERT_SERIAL_RANGE,
            KRL_SECTION_CERT_SERIAL_BITMAP,
            KRL_SECTION_CERT_KEY_ID,
        ] {
            assert!(
                c.subsection_types.contains(&t),
                "no {t:#x} in {:?}",
                c.subsection_types
            );
        }
        assert!(d.explicit_keys.is_empty() && d.sha1_fingerprints.is_empty());
    }

    #[test]
    fn round_trip_empty() {
        let d = decode(&Krl::new(ca()).encode()).unwrap();
        assert!(d.certificates.is_empty());
        assert!(!d.revokes(&ca(), 1, ""));
    }

    #[test]
    fn revokes_follows_sshd_rules() {
        let d = decode(&sample().encode()).unwrap();
        let other = PublicKey::from_openssh(OTHER_CA).unwrap();
        assert!(d.revokes(&ca(), 13, "anything"));
        assert!(d.revokes(&ca(), 400, "anything"));
        assert!(d.revokes(&ca(), 2003, ""));
        assert!(!d.revokes(&ca(), 2004, ""));
        assert!(!d.revokes(&ca(), 11, "req-3"));
        assert!(d.revokes(&ca(), 11, "req-2 bob"));
        assert!(d.revokes(&ca(), 0, "req-1 alice"));
        assert!(!d.revokes(&ca(), 0, "nobody"));
        assert!(!d.revokes(&other, 13, "req-1 alice"));
    }

    #[test]
    fn random_sets_round_trip() {
        let mut rng = crate::serials::tests::Rng(3);
        for _ in 0..200 {
            let mut k = Krl::new(ca());
            let base = rng.next() >> rng.below(64);
            let spread = 1 + rng.below(100_000);
            for _ in 0..rng.below(500) {
                k.serials.insert(base.saturating_add(rng.below(spread)));
            }
            let want: BTreeSet<u64> = k.serials.iter().copied().filter(|&s| s != 0).collect();
            let d = decode(&k.encode()).unwrap();
            let got: BTreeSet<u64> = d.certificates.iter().flat_map(|c| c.serials()).collect();
            assert_eq!(got, want);
        }
    }

    /// The header and a certificates section wrapping one subsection.
    fn with_subsection(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut k = Krl::new(ca());
        k.generated_date = 0;
        let mut out = k.encode();
        let ca_blob = ca().key_data().encode_vec().unwrap();
        let mut section = Vec::new();
        section.extend_from_slice(&(ca_blob.len() as u32).to_be_bytes());
        section.extend_from_slice(&ca_blob);
        section.extend_from_slice(&[0, 0, 0, 0, kind]);
        section.extend_from_slice(&(body.len() as u32).to_be_bytes());
        section.extend_from_slice(body);
        out.push(KRL_SECTION_CERTIFICATES);
        out.extend_from_slice(&(section.len() as u32).to_be_bytes());
        out.extend_from_slice(&section);
        out
    }

    fn bitmap_body(offset: u64, mpint: &[u8]) -> Vec<u8> {
        let mut b = offset.to_be_bytes().to_vec();
        b.extend_from_slice(&(mpint.len() as u32).to_be_bytes());
        b.extend_from_slice(mpint);
        b
    }

    #[test]
    fn refuses_what_openssh_refuses() {
        let good = sample().encode();
        assert_eq!(decode(b"ssh-ed25519 AAAA"), Err(KrlError::BadMagic));
        let mut v2 = good.clone();
        v2[11] = 2;
        assert_eq!(decode(&v2), Err(KrlError::UnsupportedFormatVersion(2)));
        for cut in [9, 20, 50, good.len() - 1] {
            assert!(
                matches!(decode(&good[..cut]), Err(KrlError::Truncated(_))),
                "cut at {cut}: {:?}",
                decode(&good[..cut])
            );
        }
        assert_eq!(
            decode(&with_subsection(
                KRL_SECTION_CERT_SERIAL_LIST,
                &0u64.to_be_bytes()
            )),
            Err(KrlError::ZeroSerial)
        );
        let inverted = [9u64.to_be_bytes(), 3u64.to_be_bytes()].concat();
        assert_eq!(
            decode(&with_subsection(KRL_SECTION_CERT_SERIAL_RANGE, &inverted)),
            Err(KrlError::InvertedRange(9, 3))
        );
        assert_eq!(
            decode(&with_subsection(
                KRL_SECTION_CERT_SERIAL_BITMAP,
                &bitmap_body(1, &[0x80])
            )),
            Err(KrlError::NegativeBitmap)
        );
        let mut big = vec![0x7f; 2049];
        big[0] = 0x01;
        assert_eq!(
            decode(&with_subsection(
                KRL_SECTION_CERT_SERIAL_BITMAP,
                &bitmap_body(1, &big)
            )),
            Err(KrlError::BitmapTooLarge(2049))
        );
        assert_eq!(
            decode(&with_subsection(
                KRL_SECTION_CERT_SERIAL_BITMAP,
                &bitmap_body(u64::MAX, &[3])
            )),
            Err(KrlError::BitmapWraps)
        );
        assert_eq!(
            decode(&with_subsection(
                KRL_SECTION_CERT_SERIAL_BITMAP,
                &bitmap_body(0, &[1])
            )),
            Err(KrlError::ZeroSerial)
        );
        assert_eq!(
            decode(&with_subsection(KRL_SECTION_CERT_KEY_ID, b"\0\0\0\x03a\0b")),
            Err(KrlError::BadString("key id"))
        );
        assert_eq!(
            decode(&with_subsection(KRL_SECTION_CERT_EXTENSION, b"")),
            Err(KrlError::UnknownCertSection(KRL_SECTION_CERT_EXTENSION))
        );
        let long_range = [&1u64.to_be_bytes()[..], &2u64.to_be_bytes(), &[0]].concat();
        assert_eq!(
            decode(&with_subsection(KRL_SECTION_CERT_SERIAL_RANGE, &long_range)),
            Err(KrlError::TrailingData(1, "a certificate subsection"))
        );
        let mut ext = good.clone();
        ext.extend_from_slice(&[KRL_SECTION_EXTENSION, 0, 0, 0, 0]);
        assert_eq!(
            decode(&ext),
            Err(KrlError::UnknownSection(KRL_SECTION_EXTENSION))
        );
        let mut signed = good.clone();
        signed.extend_from_slice(&[KRL_SECTION_SIGNATURE, 0, 0, 0, 0]);
        assert_eq!(decode(&signed), Err(KrlError::SignatureSection));
    }

    #[test]
    fn bitmap_at_the_limit_with_leading_zero_is_read() {
        let mut bits = vec![0u8; 2049];
        bits[1] = 0x80; // bit 16383
        bits[2048] = 0x01; // bit 0
        let d = decode(&with_subsection(
            KRL_SECTION_CERT_SERIAL_BITMAP,
            &bitmap_body(5, &bits),
        ))
        .unwrap();
        assert_eq!(d.certificates[0].serial_ranges, vec![5..=5, 16388..=16388]);
    }

    #[test]
    fn overlapping_subsections_merge() {
        let mut list = Vec::new();
        for s in [4u64, 5, 9, 3] {
            list.extend_from_slice(&s.to_be_bytes());
        }
        let d = decode(&with_subsection(KRL_SECTION_CERT_SERIAL_LIST, &list)).unwrap();
        assert_eq!(d.certificates[0].serial_ranges, vec![3..=5, 9..=9]);
    }

    #[test]
    fn wildcard_ca_section_applies_to_every_ca() {
        // A certificates section with an empty CA key, which PROTOCOL.krl
        // defines as "every CA" (we never write one).
        let mut out = Krl::new(ca()).encode();
        let mut section = vec![0, 0, 0, 0, 0, 0, 0, 0, KRL_SECTION_CERT_KEY_ID, 0, 0, 0, 5];
        section.extend_from_slice(b"\0\0\0\x01x");
        out.push(KRL_SECTION_CERTIFICATES);
        out.extend_from_slice(&(section.len() as u32).to_be_bytes());
        out.extend_from_slice(&section);
        let d = decode(&out).unwrap();
        assert_eq!(d.certificates[0].ca, None);
        assert!(d.revokes(&PublicKey::from_openssh(OTHER_CA).unwrap(), 0, "x"));
    }
}
