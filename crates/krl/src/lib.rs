//! OpenSSH key revocation lists (KRLs), written by us.
//!
//! `sshd` refuses a certificate that the file named by `RevokedKeys` revokes.
//! jitca revokes a certificate when its access ends early (`done`, `revoke`), so it
//! must hand every host a KRL listing the serials and key ids it revoked. This
//! crate builds that file in OpenSSH's binary format (`PROTOCOL.krl`): a header and
//! one certificates section for the jitca CA, with the revoked serials in the
//! smallest mix of list, range and bitmap subsections and the revoked key ids in
//! a key-id subsection. Neither ssh-key nor russh writes KRLs. [`decode`] reads
//! one back, refusing what OpenSSH refuses, so the daemon can check a file before
//! it replaces the one hosts fetch.

mod decode;
mod error;
mod serials;
mod wire;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use ssh_key::PublicKey;
use ssh_key::encoding::Encode;
use ssh_key::public::KeyData;

pub use decode::{CertSection, DecodedKrl, decode};
pub use error::KrlError;
pub use serials::MAX_BITMAP_SPAN;

use wire::{put_nested, put_string, put_u8, put_u32, put_u64};

/// The first eight bytes of every binary KRL.
pub const KRL_MAGIC: &[u8; 8] = b"SSHKRL\n\0";
/// The only KRL format version.
pub const KRL_FORMAT_VERSION: u32 = 1;

/// Section revoking certificates of one CA.
pub const KRL_SECTION_CERTIFICATES: u8 = 1;
/// Section revoking plain public keys by their blob.
pub const KRL_SECTION_EXPLICIT_KEY: u8 = 2;
/// Section revoking plain public keys by SHA-1 hash.
pub const KRL_SECTION_FINGERPRINT_SHA1: u8 = 3;
/// Signature section (OpenSSH 9.4+ refuses signed KRLs).
pub const KRL_SECTION_SIGNATURE: u8 = 4;
/// Section revoking plain public keys by SHA-256 hash.
pub const KRL_SECTION_FINGERPRINT_SHA256: u8 = 5;
/// Extension section.
pub const KRL_SECTION_EXTENSION: u8 = 255;

/// Certificate subsection: serials one by one.
pub const KRL_SECTION_CERT_SERIAL_LIST: u8 = 0x20;
/// Certificate subsection: one inclusive serial range.
pub const KRL_SECTION_CERT_SERIAL_RANGE: u8 = 0x21;
/// Certificate subsection: an offset and a bitmap of serials from it.
pub const KRL_SECTION_CERT_SERIAL_BITMAP: u8 = 0x22;
/// Certificate subsection: key id strings.
pub const KRL_SECTION_CERT_KEY_ID: u8 = 0x23;
/// Certificate subsection: extension.
pub const KRL_SECTION_CERT_EXTENSION: u8 = 0x39;

/// What one CA's certificates section revokes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Krl {
    /// `krl_version`: grows with every change (the caller sets it);
    /// `ssh-keygen -Q -l` shows it as `# KRL version N`.
    pub version: u64,
    /// When the KRL was made, in seconds since the Unix epoch.
    pub generated_date: u64,
    /// Free text for people reading `ssh-keygen -Q -l`. NUL bytes are left out
    /// when encoding, as OpenSSH rejects a comment that holds one.
    pub comment: String,
    /// The CA whose certificates are revoked. If this is a certificate, its
    /// certified key is used: a CA is named by its plain key.
    pub ca: PublicKey,
    /// Revoked serials. 0 is skipped: it means "no serial" to OpenSSH, which
    /// rejects a KRL that revokes it.
    pub serials: BTreeSet<u64>,
    /// Revoked key ids: every certificate of `ca` with one of these key ids is
    /// refused, whatever its serial. Ids holding a NUL byte are skipped: no
    /// certificate can carry one, and OpenSSH would reject the whole KRL.
    pub key_ids: BTreeSet<String>,
    /// Earlier CA keys, still trusted by hosts during a CA key rotation: the same serials
    /// and key ids are revoked for their certificates too (one certificates section each),
    /// so a revocation holds whichever of the keys signed the certificate.
    pub earlier_cas: Vec<PublicKey>,
}

impl Krl {
    /// An empty KRL for `ca`: version 0, generated now, no comment, revoking nothing.
    pub fn new(ca: PublicKey) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Krl {
            version: 0,
            generated_date: now,
            comment: String::new(),
            ca,
            serials: BTreeSet::new(),
            key_ids: BTreeSet::new(),
            earlier_cas: Vec::new(),
        }
    }

    /// The binary KRL (PROTOCOL.krl), as `ssh-keygen -k` would write and
    /// `sshd`'s `RevokedKeys` reads. The serials take the fewest bytes the
    /// format allows, so the file is never larger than `ssh-keygen -k`'s for
    /// the same serials (except where `ssh-keygen`'s is unreadable: it can
    /// write a bitmap longer than OpenSSH reads, see [`MAX_BITMAP_SPAN`]).
    ///
    /// # Panics
    ///
    /// Only where [`Krl::try_encode`] fails, which needs a section over 4 GiB
    /// (hundreds of millions of scattered serials) or a CA key that cannot be
    /// serialised.
    pub fn encode(&self) -> Vec<u8> {
        match self.try_encode() {
            Ok(bytes) => bytes,
            Err(e) => panic!("cannot encode KRL: {e}"),
        }
    }

    /// [`Krl::encode`], returning the error instead of panicking.
    pub fn try_encode(&self) -> Result<Vec<u8>, KrlError> {
        let runs = serials::runs(&self.serials);
        let (plan, serial_bytes) = serials::plan(&runs);
        // The plan knows its exact size: refuse before allocating what the
        // 32-bit section length could not describe anyway.
        if serial_bytes > u128::from(u32::MAX) {
            return Err(KrlError::TooLarge("the certificates section"));
        }
        let key_ids: Vec<&str> = self
            .key_ids
            .iter()
            .map(String::as_str)
            .filter(|id| !id.contains('\0'))
            .collect();
        let comment: String = self.comment.chars().filter(|&c| c != '\0').collect();

        let cas = std::iter::once(&self.ca)
            .chain(&self.earlier_cas)
            .map(ca_blob)
            .collect::<Result<Vec<_>, _>>()?;
        let capacity = 64
            + comment.len()
            + cas.len()
                * (cas.iter().map(Vec::len).max().unwrap_or(0)
                    + serial_bytes as usize
                    + key_ids.iter().map(|id| 4 + id.len()).sum::<usize>());
        let mut out = Vec::with_capacity(capacity);

        out.extend_from_slice(KRL_MAGIC);
        put_u32(&mut out, KRL_FORMAT_VERSION);
        put_u64(&mut out, self.version);
        put_u64(&mut out, self.generated_date);
        put_u64(&mut out, 0); // flags: none defined
        put_string(&mut out, &[], "the reserved field")?;
        put_string(&mut out, comment.as_bytes(), "the comment")?;

        // PROTOCOL.krl wants one or more subsections in a certificates section,
        // and `ssh-keygen -k` writes none for a CA it revokes nothing of: an
        // empty KRL is the bare header, which revokes nothing.
        if plan.is_empty() && key_ids.is_empty() {
            return Ok(out);
        }

        for ca in &cas {
            put_u8(&mut out, KRL_SECTION_CERTIFICATES);
            put_nested(&mut out, "the certificates section", |out| {
                put_string(out, ca, "the CA key")?;
                put_string(out, &[], "the reserved field")?;
                serials::write(out, &runs, &plan)?;
                if !key_ids.is_empty() {
                    put_u8(out, KRL_SECTION_CERT_KEY_ID);
                    put_nested(out, "the key id subsection", |out| {
                        // BTreeSet order is byte order, the order ssh-keygen writes.
                        for id in &key_ids {
                            put_string(out, id.as_bytes(), "a key id")?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(out)
    }
}

/// The SSH wire blob of the CA's plain public key.
fn ca_blob(ca: &PublicKey) -> Result<Vec<u8>, KrlError> {
    let key: &KeyData = match ca.key_data() {
        KeyData::Certificate(cert) => cert.public_key(),
        plain => plain,
    };
    key.encode_vec()
        .map_err(|e| KrlError::CaKeyEncoding(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE4glDBeiy5tLh5xnUhOZUF2TxI5+UqsulCTA++8h1LC ca";

    fn krl() -> Krl {
        let mut k = Krl::new(PublicKey::from_openssh(CA).unwrap());
        k.version = 42;
        k.generated_date = 0x6b0c_9fb8;
        k
    }

    #[test]
    fn empty_krl_is_the_bare_header() {
        let bytes = krl().encode();
        let mut want = b"SSHKRL\n\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 1]);
        want.extend_from_slice(&42u64.to_be_bytes());
        want.extend_from_slice(&0x6b0c_9fb8u64.to_be_bytes());
        want.extend_from_slice(&[0; 8]); // flags
        want.extend_from_slice(&[0; 4]); // reserved
        want.extend_from_slice(&[0; 4]); // comment
        assert_eq!(bytes, want);
    }

    /// Byte for byte what `ssh-keygen -k -z 42` wrote for this CA and the spec
    /// `serial: 5`, `serial: 7-9`, `id: bob`, `serial: 20`, `serial: 22`.
    #[test]
    fn matches_ssh_keygen_byte_for_byte() {
        let mut k = krl();
        k.serials.extend([5, 7, 8, 9, 20, 22]);
        k.key_ids.insert("bob".into());
        let want: &[u8] = &[
            0x53, 0x53, 0x48, 0x4b, 0x52, 0x4c, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x6b, 0x0c, 0x9f, 0xb8,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x5b, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00,
            0x0b, 0x73, 0x73, 0x68, 0x2d, 0x65, 0x64, 0x32, 0x35, 0x35, 0x31, 0x39, 0x00, 0x00,
            0x00, 0x20, 0x4e, 0x20, 0x94, 0x30, 0x5e, 0x8b, 0x2e, 0x6d, 0x2e, 0x1e, 0x71, 0x9d,
            0x48, 0x4e, 0x65, 0x41, 0x76, 0x4f, 0x12, 0x39, 0xf9, 0x4a, 0xac, 0xba, 0x50, 0x93,
            0x03, 0xef, 0xbc, 0x87, 0x52, 0xc2, 0x00, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00,
            0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x03, 0x02,
            0x80, 0x1d, 0x23, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x03, 0x62, 0x6f, 0x62,
        ];
        assert_eq!(k.encode(), want);
    }

    #[test]
    fn serial_zero_and_nul_key_ids_are_left_out() {
        let mut k = krl();
        k.serials.insert(0);
        k.key_ids.insert("bad\0id".into());
        k.comment = "a\0b".into();
        let plain = {
            let mut p = krl();
            p.comment = "ab".into();
            p
        };
        assert_eq!(k.encode(), plain.encode());
    }

    #[test]
    fn key_ids_alone_make_a_certificates_section() {
        let mut k = krl();
        k.key_ids
            .extend(["b".to_string(), "a".to_string(), String::new()]);
        let bytes = k.encode();
        let d = decode(&bytes).unwrap();
        assert_eq!(d.certificates.len(), 1);
        assert_eq!(
            d.certificates[0].subsection_types,
            vec![KRL_SECTION_CERT_KEY_ID]
        );
        // Sorted as ssh-keygen sorts them (strcmp), the empty id first.
        let tail = &bytes[bytes.len() - 4 - 4 - 1 - 4 - 1..];
        assert_eq!(tail, [0, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 0, 1, b'b']);
    }

    #[test]
    fn a_certificate_as_ca_is_reduced_to_its_plain_key() {
        // Built by `ssh-keygen -s ca -I x -n p -z 1 ca.pub`: a certificate of the CA key itself.
        let cert = ssh_key::Certificate::from_openssh(CA_CERT).unwrap();
        let as_key = PublicKey::from(KeyData::Certificate(Box::new(cert)));
        let mut a = krl();
        a.serials.insert(3);
        let mut b = a.clone();
        b.ca = as_key;
        assert_eq!(a.encode(), b.encode());
    }

    const CA_CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIIsgDpylnxvEfHIX3vaooR9g0fh2v0PilUS6iwQjFJSoAAAAIE4glDBeiy5tLh5xnUhOZUF2TxI5+UqsulCTA++8h1LCAAAAAAAAAAEAAAABAAAAAXgAAAAFAAAAAXAAAAAAAAAAAP//////////AAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgTiCUMF6LLm0uHnGdSE5lQXZPEjn5Sqy6UJMD77yHUsIAAABTAAAAC3NzaC1lZDI1NTE5AAAAQLuuPdD+13fzVZ3UrrXtIXJs5Ko4thnaFpMPlv7qym6ivvE0SdxP3cbpTM0BlL5isiiTbsVw/aIqn30rFH0oHw4= ca";
}
