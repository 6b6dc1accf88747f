//! Signing with an ed25519 CA key held in memory, without rebuilding the key pair for every
//! signature. ssh-key's own `Signer` for an ed25519 key pair derives an
//! `ed25519_dalek::SigningKey` from the seed and decompresses the stored public key on every
//! call (a base-point multiplication, a point compression and a decompression: about as much
//! work as the signature itself). This keeps the derived key, made once when the CA key is
//! loaded, after the same check ssh-key makes (the stored public half is the seed's).

use ssh_key::private::KeypairData;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, PrivateKey, Signature};

/// The CA's ed25519 signing key, derived once. Zeroized on drop (ed25519-dalek's `zeroize`).
pub(crate) struct Ed25519Signer {
    key: ed25519_dalek::SigningKey,
    public: KeyData,
}

impl Ed25519Signer {
    /// `None` for keys of other algorithms, or a pair whose public half is not the seed's
    /// (those keep signing through ssh-key, which refuses the latter).
    pub(crate) fn new(key: &PrivateKey) -> Option<Self> {
        let KeypairData::Ed25519(pair) = key.key_data() else {
            return None;
        };
        let signing = ed25519_dalek::SigningKey::from_bytes(pair.private.as_ref());
        if signing.verifying_key().as_bytes() != pair.public.as_ref() {
            return None;
        }
        Some(Self {
            key: signing,
            public: key.public_key().key_data().clone(),
        })
    }
}

impl signature::Signer<Signature> for Ed25519Signer {
    fn try_sign(&self, message: &[u8]) -> Result<Signature, signature::Error> {
        let signed = signature::Signer::<ed25519_dalek::Signature>::try_sign(&self.key, message)?;
        Signature::new(Algorithm::Ed25519, signed.to_bytes().to_vec())
            .map_err(|_| signature::Error::new())
    }
}

impl From<&Ed25519Signer> for KeyData {
    fn from(signer: &Ed25519Signer) -> KeyData {
        signer.public.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signature::{Signer, Verifier};

    #[test]
    fn signs_exactly_as_ssh_key_does() {
        let key = crate::generate_ed25519("ca").unwrap();
        let fast = Ed25519Signer::new(&key).unwrap();
        let message = b"to be signed";
        let ours: Signature = fast.try_sign(message).unwrap();
        let theirs: Signature = key.try_sign(message).unwrap();
        // Ed25519 is deterministic: the same key and message give the same signature.
        assert_eq!(ours, theirs);
        key.public_key().key_data().verify(message, &ours).unwrap();
        assert_eq!(KeyData::from(&fast), *key.public_key().key_data());
    }
}
