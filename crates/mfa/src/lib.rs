//! The second factor: time-based one-time codes (RFC 6238: HMAC-SHA-1, 6 digits, 30-second
//! steps), the `otpauth://` URI an authenticator app scans, and the secrets sealed at rest.
//!
//! A code is checked against the steps around now (one step of clock skew either way) and
//! never accepted for a step at or before the last one that person used, so a code cannot be
//! replayed; the caller keeps the last step (jitca in its store, updated by compare-and-swap).
//! Secrets are sealed with XChaCha20-Poly1305 under a 32-byte key kept outside the store, with
//! the person's name as associated data: a sealed secret moved to another person does not open.
//! This crate does no I/O: reading the key file (and checking its owner and mode) is the
//! caller's.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Digits in a code.
pub const DIGITS: u32 = 6;
/// Seconds in a time step.
pub const PERIOD: u64 = 30;
/// Bytes in a secret (160 bits, the HMAC-SHA-1 output size RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;
/// Bytes in the key that seals secrets.
pub const KEY_LEN: usize = 32;
/// The issuer shown in authenticator apps.
pub const ISSUER: &str = "jitca";
/// Steps of clock skew accepted either side of now.
pub const SKEW: u64 = 1;

const NONCE_LEN: usize = 24;

/// Why a secret or key could not be made or used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MfaError {
    /// The operating system's random number generator failed.
    #[error("the operating system gave no random bytes: {0}")]
    Random(String),
    /// The key file's contents are not 64 hex digits.
    #[error("the second-factor key must be {KEY_LEN} bytes as {} hex digits on one line", KEY_LEN * 2)]
    BadKey,
    /// A sealed secret does not open under this key for this person: another key, another
    /// person's secret, or changed bytes.
    #[error("the stored second-factor secret does not open with this key for this person")]
    Unsealable,
}

fn random(buf: &mut [u8]) -> Result<(), MfaError> {
    getrandom::fill(buf).map_err(|e| MfaError::Random(e.to_string()))
}

/// A person's TOTP secret. Wiped from memory when dropped; never printed by `Debug`.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// [`SECRET_LEN`] bytes from the operating system's random number generator.
    pub fn generate() -> Result<Self, MfaError> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        random(&mut bytes)?;
        Ok(Self(bytes))
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }

    /// The secret from a base32 text (as in an `otpauth://` URI; padding and case optional).
    pub fn from_base32(text: &str) -> Option<Self> {
        let mut clean: String = text
            .chars()
            .filter(|c| *c != '=' && !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        let decoded = data_encoding::BASE32_NOPAD.decode(clean.as_bytes()).ok();
        clean.zeroize();
        decoded
            .filter(|b| !b.is_empty())
            .map(|b| Self(Zeroizing::new(b)))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Base32 without padding, as authenticator apps take it.
    pub fn base32(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&self.0))
    }

    /// The code for time step `step` (RFC 4226's HOTP with the step as counter), zero-padded
    /// to `digits`.
    pub fn code_at(&self, step: u64, digits: u32) -> String {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(&step.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = (digest[digest.len() - 1] & 0x0f) as usize;
        let binary = u32::from_be_bytes([
            digest[offset] & 0x7f,
            digest[offset + 1],
            digest[offset + 2],
            digest[offset + 3],
        ]);
        let value = binary % 10u32.pow(digits);
        format!("{value:0width$}", width = digits as usize)
    }

    /// The [`DIGITS`]-digit code for step `step`.
    pub fn code(&self, step: u64) -> String {
        self.code_at(step, DIGITS)
    }

    /// Checks `code` at the Unix time `now` against the steps `now`'s step ± [`SKEW`], never
    /// accepting a step at or before `last_step` (the last step this person used, if any).
    /// Every candidate step is computed and compared in constant time, whatever matches.
    pub fn verify(&self, code: &str, now: u64, last_step: Option<u64>) -> Check {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Check::Wrong;
        }
        let current = step_of(now);
        let mut fresh: Option<u64> = None;
        let mut used = false;
        for step in current.saturating_sub(SKEW)..=current.saturating_add(SKEW) {
            let expected = self.code(step);
            let matches: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
            if matches {
                if last_step.is_some_and(|last| step <= last) {
                    used = true;
                } else if fresh.is_none() {
                    fresh = Some(step);
                }
            }
        }
        match (fresh, used) {
            (Some(step), _) => Check::Valid { step },
            (None, true) => Check::Replayed,
            (None, false) => Check::Wrong,
        }
    }
}

/// What [`Secret::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A code for `step`, later than any used before: record `step` as the last used.
    Valid { step: u64 },
    /// A right code, but for a step used already (or earlier).
    Replayed,
    /// Not the code of any step in the window (or not six digits).
    Wrong,
}

/// The time step of Unix time `unix_secs`.
pub fn step_of(unix_secs: u64) -> u64 {
    unix_secs / PERIOD
}

/// The current Unix time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What must be escaped in a URI path segment or query value (RFC 3986: all but unreserved).
const URI_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `otpauth://totp/jitca:USER?secret=BASE32&issuer=jitca&algorithm=SHA1&digits=6&period=30`,
/// with the user name percent-encoded. It holds the secret: show it to its owner only.
pub fn otpauth_uri(user: &str, secret: &Secret) -> Zeroizing<String> {
    let user = percent_encoding::utf8_percent_encode(user, URI_COMPONENT);
    Zeroizing::new(format!(
        "otpauth://totp/{ISSUER}:{user}?secret={}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={PERIOD}",
        secret.base32().as_str()
    ))
}

/// The secret in an `otpauth://` URI (its `secret=` parameter), for tests and tools.
pub fn secret_of_uri(uri: &str) -> Option<Secret> {
    let query = uri.trim().split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("secret="))
        .and_then(Secret::from_base32)
}

/// The key that seals secrets at rest. Wiped from memory when dropped; never printed.
#[derive(Clone)]
pub struct SealingKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// [`KEY_LEN`] bytes from the operating system's random number generator.
    pub fn generate() -> Result<Self, MfaError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        random(key.as_mut())?;
        Ok(Self(key))
    }

    /// The key file's contents: 64 hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, MfaError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(text.trim(), key.as_mut()).map_err(|_| MfaError::BadKey)?;
        Ok(Self(key))
    }

    /// What the key file holds: 64 hex digits and a newline.
    pub fn to_hex_line(&self) -> Zeroizing<String> {
        let mut line = hex::encode(self.0.as_ref());
        line.push('\n');
        Zeroizing::new(line)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        let key: &[u8; KEY_LEN] = &self.0;
        XChaCha20Poly1305::new(key.into())
    }

    /// `secret` sealed for `user`: a random 24-byte nonce, then the ciphertext and tag.
    pub fn seal(&self, user: &str, secret: &Secret) -> Result<Vec<u8>, MfaError> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let sealed = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: user.as_bytes(),
                },
            )
            .map_err(|_| MfaError::Unsealable)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`SealingKey::seal`] sealed for `user`.
    pub fn open(&self, user: &str, sealed: &[u8]) -> Result<Secret, MfaError> {
        if sealed.len() <= NONCE_LEN {
            return Err(MfaError::Unsealable);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| MfaError::Unsealable)?;
        let plain = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: body,
                    aad: user.as_bytes(),
                },
            )
            .map_err(|_| MfaError::Unsealable)?;
        Ok(Secret(Zeroizing::new(plain)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, the SHA-1 column: the 20-byte ASCII seed, 8 digits.
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = Secret::from_bytes(b"12345678901234567890");
        for (time, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(secret.code_at(step_of(time), 8), code, "at {time}");
        }
        // Six digits are the last six of the eight.
        assert_eq!(secret.code(step_of(59)), "287082");
        assert_eq!(secret.verify("287082", 59, None), Check::Valid { step: 1 });
    }

    #[test]
    fn a_code_is_accepted_once() {
        let secret = Secret::generate().unwrap();
        let now = 1_700_000_000;
        let code = secret.code(step_of(now));
        let Check::Valid { step } = secret.verify(&code, now, None) else {
            panic!("a fresh code is valid");
        };
        assert_eq!(step, step_of(now));
        assert_eq!(secret.verify(&code, now, Some(step)), Check::Replayed);
        // Still refused later in its skew window.
        assert_eq!(secret.verify(&code, now + 30, Some(step)), Check::Replayed);
        // The next step's code is fresh.
        let next = secret.code(step + 1);
        assert_eq!(
            secret.verify(&next, now + 30, Some(step)),
            Check::Valid { step: step + 1 }
        );
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let secret = Secret::generate().unwrap();
        let now = 1_700_000_010;
        let step = step_of(now);
        for (s, ok) in [
            (step - 2, false),
            (step - 1, true),
            (step, true),
            (step + 1, true),
            (step + 2, false),
        ] {
            let check = secret.verify(&secret.code(s), now, None);
            if ok {
                assert_eq!(check, Check::Valid { step: s });
            } else {
                assert_eq!(check, Check::Wrong, "step {s}");
            }
        }
        // A later step used already blocks the earlier steps too.
        assert_eq!(
            secret.verify(&secret.code(step - 1), now, Some(step)),
            Check::Replayed
        );
    }

    #[test]
    fn only_six_digits_are_codes() {
        let secret = Secret::generate().unwrap();
        let now = 1_700_000_000;
        let code = secret.code(step_of(now));
        assert!(matches!(
            secret.verify(&format!(" {code}\n"), now, None),
            Check::Valid { .. }
        ));
        for bad in ["", "12345", "1234567", "abcdef", "12 345", "１２３４５６"] {
            assert_eq!(secret.verify(bad, now, None), Check::Wrong, "{bad:?}");
        }
    }

    #[test]
    fn the_uri_carries_the_secret_and_escapes_the_name() {
        let secret = Secret::from_bytes(b"12345678901234567890");
        let uri = otpauth_uri("al ice&x", &secret);
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/jitca:al%20ice%26x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=jitca&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            secret_of_uri(&uri).unwrap().as_bytes(),
            b"12345678901234567890"
        );
        assert!(secret_of_uri("otpauth://totp/x?issuer=jitca").is_none());
    }

    #[test]
    fn generated_secrets_differ() {
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        assert_eq!(a.as_bytes().len(), SECRET_LEN);
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(format!("{a:?}"), "Secret(..)");
    }

    #[test]
    fn sealed_secrets_open_for_their_owner_only() {
        let key = SealingKey::generate().unwrap();
        let secret = Secret::generate().unwrap();
        let sealed = key.seal("alice", &secret).unwrap();
        assert_eq!(
            key.open("alice", &sealed).unwrap().as_bytes(),
            secret.as_bytes()
        );
        // Another person's name as associated data: refused.
        assert_eq!(key.open("bob", &sealed).unwrap_err(), MfaError::Unsealable);
        // Another key: refused.
        let other = SealingKey::generate().unwrap();
        assert!(other.open("alice", &sealed).is_err());
        // Any changed byte (nonce, ciphertext or tag): refused.
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(key.open("alice", &tampered).is_err(), "byte {i}");
        }
        assert!(key.open("alice", &sealed[..20]).is_err());
        // A fresh nonce each time.
        assert_ne!(key.seal("alice", &secret).unwrap(), sealed);
    }

    #[test]
    fn the_key_file_is_64_hex_digits() {
        let key = SealingKey::generate().unwrap();
        let line = key.to_hex_line();
        assert_eq!(line.len(), 65);
        let again = SealingKey::from_hex(&line).unwrap();
        let secret = Secret::generate().unwrap();
        assert!(again.open("a", &key.seal("a", &secret).unwrap()).is_ok());
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(66)] {
            assert_eq!(SealingKey::from_hex(bad).unwrap_err(), MfaError::BadKey);
        }
        assert_eq!(format!("{key:?}"), "SealingKey(..)");
    }
}
