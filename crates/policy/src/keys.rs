//! Users' SSH public keys, kept as the SSH wire-format blob (RFC 4253 section 6.6) that a
//! client presents when it authenticates, so that the policy identifies a person by comparing
//! bytes, without an SSH library.
//!
//! A `keys:` line (`ssh-ed25519 AAAA... comment`) is read here: its base64 is decoded, the
//! blob's own algorithm name must be the line's, and the blob must have exactly the shape of a
//! key of that algorithm (nothing missing, nothing after it), so that two blobs are equal
//! exactly when they are the same key. Private keys, certificates, DSA keys and short RSA keys
//! are refused with a message saying what to give instead.

use data_encoding::BASE64;

use crate::show::show;

/// Smallest RSA user key accepted, in bits.
pub const MIN_RSA_BITS: u32 = 2048;

/// A user's public key: its SSH wire-format blob (what `ssh_key::PublicKey::to_bytes()` gives
/// for the key a client authenticated with). The comment of the `keys:` line is not part of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserKey(Vec<u8>);

impl UserKey {
    /// The wire-format blob.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Reads one `keys:` line: an OpenSSH public key line, not a certificate or a private key.
/// The error is the message for the config check, one line, quoting nothing but through
/// [`show`].
pub fn parse_key_line(line: &str) -> Result<UserKey, String> {
    let line = line.trim();
    if line.starts_with("-----BEGIN") || line.contains("PRIVATE KEY") {
        return Err(
            "this is a private key: remove it from this file (treat it as exposed) and give the \
             public key, the line from the .pub file"
                .to_string(),
        );
    }
    let mut words = line.split_ascii_whitespace();
    let algorithm = words.next().unwrap_or("");
    if algorithm.ends_with("-cert-v01@openssh.com") {
        return Err(
            "this is a certificate, not a public key; give the key's line from its .pub file"
                .to_string(),
        );
    }
    let not_a_key = |why: String| format!("not an OpenSSH public key: {why}");
    let Some(data) = words.next() else {
        return Err(not_a_key(
            "write the algorithm, the base64 key data and an optional comment, like \
             ssh-ed25519 AAAA... you@laptop"
                .to_string(),
        ));
    };
    let blob = BASE64
        .decode(data.as_bytes())
        .map_err(|_| not_a_key("Base64 encoding error: invalid Base64 encoding".to_string()))?;
    match check_blob(algorithm, &blob) {
        Ok(()) => Ok(UserKey(blob)),
        Err(Refusal::Malformed(why)) => Err(not_a_key(why)),
        Err(Refusal::Weak(why)) => Err(why),
    }
}

/// Why a blob is refused.
enum Refusal {
    /// It is not a key of the line's algorithm.
    Malformed(String),
    /// It is a key, but not one jitca accepts (DSA, short RSA).
    Weak(String),
}

impl From<String> for Refusal {
    fn from(why: String) -> Self {
        Refusal::Malformed(why)
    }
}

/// Checks that `blob` is a key of `algorithm`, whole, and strong enough.
fn check_blob(algorithm: &str, blob: &[u8]) -> Result<(), Refusal> {
    let mut reader = Reader(blob);
    let name = reader.string()?;
    if name != algorithm.as_bytes() {
        return Err(Refusal::Malformed(format!(
            "its key data is a {} key, not {}",
            show(&String::from_utf8_lossy(name)),
            show(algorithm)
        )));
    }
    match algorithm {
        "ssh-ed25519" => reader.exact(32, "ed25519 key")?,
        "sk-ssh-ed25519@openssh.com" => {
            reader.exact(32, "ed25519 key")?;
            reader.application()?;
        }
        "ecdsa-sha2-nistp256" => reader.ec_point("nistp256", 65)?,
        "ecdsa-sha2-nistp384" => reader.ec_point("nistp384", 97)?,
        "ecdsa-sha2-nistp521" => reader.ec_point("nistp521", 133)?,
        "sk-ecdsa-sha2-nistp256@openssh.com" => {
            reader.ec_point("nistp256", 65)?;
            reader.application()?;
        }
        "ssh-rsa" => {
            reader.mpint("RSA exponent")?;
            let modulus = reader.mpint("RSA modulus")?;
            let bits = u32::try_from(modulus.len() * 8).unwrap_or(u32::MAX);
            if bits < MIN_RSA_BITS {
                return Err(Refusal::Weak(format!(
                    "RSA key of {bits} bits is too weak (at least {MIN_RSA_BITS}); use ed25519"
                )));
            }
        }
        "ssh-dss" => {
            return Err(Refusal::Weak(
                "DSA keys are refused (OpenSSH no longer supports them); use ed25519".to_string(),
            ));
        }
        other => {
            return Err(Refusal::Malformed(format!(
                "unknown or unsupported algorithm {}",
                show(other)
            )));
        }
    }
    if !reader.0.is_empty() {
        return Err(Refusal::Malformed(
            "there is more data after the key".to_string(),
        ));
    }
    Ok(())
}

/// Reads SSH wire-format fields (RFC 4251 section 5) from the front of a blob.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A `string`: a 32-bit big-endian length, then that many bytes.
    fn string(&mut self) -> Result<&'a [u8], String> {
        let cut = "it is cut short".to_string();
        let (length, rest) = self.0.split_first_chunk::<4>().ok_or_else(|| cut.clone())?;
        let length = usize::try_from(u32::from_be_bytes(*length)).map_err(|_| cut.clone())?;
        if rest.len() < length {
            return Err(cut);
        }
        let (value, rest) = rest.split_at(length);
        self.0 = rest;
        Ok(value)
    }

    /// A `string` of exactly `length` bytes.
    fn exact(&mut self, length: usize, what: &str) -> Result<(), String> {
        match self.string()?.len() {
            n if n == length => Ok(()),
            n => Err(format!("an {what} has {length} bytes, not {n}")),
        }
    }

    /// An ECDSA key: the curve's name, then its uncompressed point (0x04, x, y).
    fn ec_point(&mut self, curve: &str, length: usize) -> Result<(), String> {
        if self.string()? != curve.as_bytes() {
            return Err(format!("the curve of its key data is not {curve}"));
        }
        match self.string()? {
            point if point.len() == length && point[0] == 4 => Ok(()),
            _ => Err(format!("its {curve} point is not an uncompressed point")),
        }
    }

    /// The application string of a security key (`ssh:`).
    fn application(&mut self) -> Result<(), String> {
        std::str::from_utf8(self.string()?)
            .map(drop)
            .map_err(|_| "its security key application is not UTF-8".to_string())
    }

    /// A positive `mpint` in its shortest form; its magnitude, without the sign byte.
    fn mpint(&mut self, what: &str) -> Result<&'a [u8], String> {
        let value = self.string()?;
        match value {
            [] | [0] => Err(format!("its {what} is zero")),
            [first, ..] if first & 0x80 != 0 => Err(format!("its {what} is negative")),
            [0, second, ..] if second & 0x80 == 0 => {
                Err(format!("its {what} has a needless leading zero"))
            }
            [0, rest @ ..] => Ok(rest),
            _ => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `keys:` line for the wire fields `fields` (each written as an SSH `string`).
    fn line(algorithm: &str, fields: &[&[u8]]) -> String {
        let mut blob = Vec::new();
        for field in fields {
            blob.extend_from_slice(&u32::try_from(field.len()).unwrap().to_be_bytes());
            blob.extend_from_slice(field);
        }
        format!("{algorithm} {} comment", BASE64.encode(&blob))
    }

    fn point(length: usize) -> Vec<u8> {
        let mut point = vec![7; length];
        point[0] = 4;
        point
    }

    /// An RSA modulus of `bits` bits, as a positive mpint (leading zero: top bit set).
    fn modulus(bits: usize) -> Vec<u8> {
        let mut n = vec![0xc5; bits / 8];
        n.insert(0, 0);
        n
    }

    #[test]
    fn every_supported_algorithm_is_read_whole() {
        let ed = [7u8; 32];
        for line in [
            line("ssh-ed25519", &[b"ssh-ed25519", &ed]),
            line(
                "sk-ssh-ed25519@openssh.com",
                &[b"sk-ssh-ed25519@openssh.com", &ed, b"ssh:"],
            ),
            line(
                "ecdsa-sha2-nistp256",
                &[b"ecdsa-sha2-nistp256", b"nistp256", &point(65)],
            ),
            line(
                "ecdsa-sha2-nistp384",
                &[b"ecdsa-sha2-nistp384", b"nistp384", &point(97)],
            ),
            line(
                "ecdsa-sha2-nistp521",
                &[b"ecdsa-sha2-nistp521", b"nistp521", &point(133)],
            ),
            line(
                "sk-ecdsa-sha2-nistp256@openssh.com",
                &[
                    b"sk-ecdsa-sha2-nistp256@openssh.com",
                    b"nistp256",
                    &point(65),
                    b"ssh:",
                ],
            ),
            line("ssh-rsa", &[b"ssh-rsa", &[1, 0, 1], &modulus(2048)]),
        ] {
            let key = parse_key_line(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let word = line.split(' ').nth(1).unwrap();
            assert_eq!(key.as_bytes(), BASE64.decode(word.as_bytes()).unwrap());
        }
    }

    #[test]
    fn a_blob_that_is_not_exactly_a_key_is_refused() {
        let ed = [7u8; 32];
        let cases = [
            (
                line("ssh-ed25519", &[b"ssh-rsa", &ed]),
                "its key data is a \"ssh-rsa\" key, not \"ssh-ed25519\"",
            ),
            (
                line("ssh-ed25519", &[b"ssh-ed25519", &ed[..31]]),
                "an ed25519 key has 32 bytes, not 31",
            ),
            (
                line("ssh-ed25519", &[b"ssh-ed25519", &ed, b""]),
                "there is more data after the key",
            ),
            (line("ssh-ed25519", &[b"ssh-ed25519"]), "it is cut short"),
            (
                line(
                    "ecdsa-sha2-nistp256",
                    &[b"ecdsa-sha2-nistp256", b"nistp384", &point(65)],
                ),
                "the curve of its key data is not nistp256",
            ),
            (
                line(
                    "ecdsa-sha2-nistp256",
                    &[b"ecdsa-sha2-nistp256", b"nistp256", &[2; 33]],
                ),
                "its nistp256 point is not an uncompressed point",
            ),
            (
                line("ssh-rsa", &[b"ssh-rsa", &[1, 0, 1], &[0, 0x45, 1, 2]]),
                "its RSA modulus has a needless leading zero",
            ),
            (
                line("ssh-rsa", &[b"ssh-rsa", &[0x81], &modulus(2048)]),
                "its RSA exponent is negative",
            ),
            (
                line("ssh-foo@example.com", &[b"ssh-foo@example.com", &ed]),
                "unknown or unsupported algorithm \"ssh-foo@example.com\"",
            ),
        ];
        for (line, why) in cases {
            assert_eq!(
                parse_key_line(&line),
                Err(format!("not an OpenSSH public key: {why}")),
                "{line}"
            );
        }
        let cut =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcMnCu5Au53n0Smp6vhsN8/xGdrmt2Rop3g44zKrrmD";
        assert_eq!(
            parse_key_line(&cut[..cut.len() - 4]),
            Err("not an OpenSSH public key: it is cut short".to_string())
        );
        assert!(
            parse_key_line("ssh-ed25519")
                .unwrap_err()
                .starts_with("not an OpenSSH public key: write the algorithm")
        );
    }

    #[test]
    fn short_rsa_keys_are_weak_not_malformed() {
        let short = line("ssh-rsa", &[b"ssh-rsa", &[1, 0, 1], &modulus(2040)]);
        assert_eq!(
            parse_key_line(&short),
            Err("RSA key of 2040 bits is too weak (at least 2048); use ed25519".to_string())
        );
    }
}
