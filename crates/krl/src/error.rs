//! What can go wrong when writing or reading a KRL.

use thiserror::Error;

/// An error from [`crate::Krl::try_encode`] or [`crate::decode`].
///
/// Decoding refuses what OpenSSH's own reader refuses, so a file that
/// [`crate::decode`] accepts is one that `sshd` accepts as `RevokedKeys`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KrlError {
    /// The bytes do not start with `SSHKRL\n\0`: not a binary KRL (perhaps a text list of keys).
    #[error("not a binary KRL: the file does not start with the magic \"SSHKRL\\n\\0\"")]
    BadMagic,

    /// The header names a format version other than 1, the only one OpenSSH defines.
    #[error("unsupported KRL format version {0} (only version 1 exists)")]
    UnsupportedFormatVersion(u32),

    /// The data ends in the middle of a field.
    #[error("the KRL is truncated: it ends inside {0}")]
    Truncated(&'static str),

    /// A section holds bytes after its last field.
    #[error("the KRL has {0} trailing byte(s) after the fields of {1}")]
    TrailingData(usize, &'static str),

    /// A top-level section type OpenSSH does not read (extensions included).
    #[error("unsupported KRL section type {0:#04x} (OpenSSH refuses it too)")]
    UnknownSection(u8),

    /// A certificates subsection type OpenSSH does not read (extensions included).
    #[error("unsupported certificate subsection type {0:#04x} (OpenSSH refuses it too)")]
    UnknownCertSection(u8),

    /// The KRL is signed; OpenSSH 9.4 and later refuse signed KRLs, and so do we.
    #[error(
        "signed KRLs are not supported (OpenSSH 9.4+ refuses them too); sign the file with `ssh-keygen -Y sign` instead"
    )]
    SignatureSection,

    /// The CA key blob of a certificates section is not a public key we can read.
    #[error("the CA key of a certificates section does not parse: {0}")]
    BadCaKey(String),

    /// Serial 0 appears as revoked; OpenSSH rejects such a KRL (0 means "no serial").
    #[error("the KRL revokes serial 0, which OpenSSH rejects")]
    ZeroSerial,

    /// A serial range whose lower bound is above its upper bound.
    #[error("the KRL holds the empty serial range {0}-{1}")]
    InvertedRange(u64, u64),

    /// A serial bitmap whose top bit is set, which makes it a negative mpint.
    #[error("a serial bitmap is a negative mpint")]
    NegativeBitmap,

    /// A serial bitmap longer than OpenSSH's 16384-bit bignum limit.
    #[error("a serial bitmap is {0} bytes long; OpenSSH reads at most 2048 (16384 serials)")]
    BitmapTooLarge(usize),

    /// A serial bitmap whose bits run past serial 2^64-1.
    #[error("a serial bitmap runs past the largest serial")]
    BitmapWraps,

    /// A text field (comment or key id) contains a NUL byte or is not UTF-8.
    #[error("the {0} is not a valid string (NUL byte or not UTF-8)")]
    BadString(&'static str),

    /// A SHA-1 or SHA-256 fingerprint section entry of the wrong length.
    #[error("a fingerprint of {0} bytes in a section that holds {1}-byte hashes")]
    BadFingerprintLength(usize, usize),

    /// A field is too long for the 32-bit length prefix of the SSH wire format.
    #[error("the KRL is too large: {0} does not fit a 32-bit length")]
    TooLarge(&'static str),

    /// The CA key could not be serialised to its SSH wire form.
    #[error("cannot encode the CA key: {0}")]
    CaKeyEncoding(String),
}
