//! Signing through an `ssh-agent`, so the CA key can live in an agent backed by a hardware token.
//!
//! The exchange is the tiny part of OpenSSH's `PROTOCOL.agent` that a CA needs:
//! `SSH_AGENTC_REQUEST_IDENTITIES` (does the agent hold the CA key?) and
//! `SSH_AGENTC_SIGN_REQUEST` (sign these bytes with it), each over a fresh connection to the
//! agent's Unix socket. A fresh connection per signature means an agent that was restarted is
//! picked up again without restarting jitca, and an agent that is gone fails that one
//! signature, closed: nothing is issued without a signature that verifies against the CA.
//!
//! Synchronous on purpose: the authority signs on blocking threads.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh_key::certificate::{Builder, Certificate};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, HashAlg, PublicKey, Signature};

use crate::SignerError;

const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
const SSH_AGENT_SIGN_RESPONSE: u8 = 14;
/// Sign-request flag: for an RSA key, sign with `rsa-sha2-512` (never SHA-1 `ssh-rsa`).
const SSH_AGENT_RSA_SHA2_512: u32 = 4;
/// OpenSSH's own limit on an agent message (`AGENT_MAX_LEN`).
const MAX_MESSAGE: usize = 256 * 1024;
/// How long one exchange with the agent may take. A hardware token may wait for a touch or a
/// PIN; an agent that hangs longer fails the signature rather than the daemon.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The CA key as held by an `ssh-agent`: the socket, and which of its keys is the CA.
pub(crate) struct AgentKey {
    socket: PathBuf,
    public: PublicKey,
    blob: Vec<u8>,
}

impl AgentKey {
    /// Connects to the agent and checks that it holds `public`; fails with a message that says
    /// how to fix it if not.
    pub(crate) fn open(socket: &Path, public: PublicKey) -> Result<Self, SignerError> {
        let blob = public
            .to_bytes()
            .map_err(|e| SignerError::Signing(format!("cannot encode the CA public key: {e}")))?;
        let key = AgentKey {
            socket: socket.to_path_buf(),
            public,
            blob,
        };
        let held = key.identities()?;
        if !held.contains(&key.blob) {
            let fingerprint = key.public.fingerprint(HashAlg::Sha256);
            return Err(key.error(format!(
                "does not hold the CA key {fingerprint} (it holds {} key{}, or it is locked); \
                 add it with: SSH_AUTH_SOCK={} ssh-add CA-PRIVATE-KEY-FILE",
                held.len(),
                if held.len() == 1 { "" } else { "s" },
                socket.display()
            )));
        }
        Ok(key)
    }

    pub(crate) fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs a certificate through the agent.
    pub(crate) fn sign_certificate(&self, builder: Builder) -> Result<Certificate, SignerError> {
        let call = AgentCall {
            key: self,
            failure: RefCell::new(None),
        };
        builder.sign(&call).map_err(|e| {
            call.failure
                .take()
                .unwrap_or_else(|| SignerError::Signing(e.to_string()))
        })
    }

    /// The key blobs the agent holds.
    fn identities(&self) -> Result<Vec<Vec<u8>>, SignerError> {
        let answer = self.exchange(&[SSH_AGENTC_REQUEST_IDENTITIES])?;
        let mut body = match answer.split_first() {
            Some((&SSH_AGENT_IDENTITIES_ANSWER, body)) => body,
            Some((&SSH_AGENT_FAILURE, _)) => {
                return Err(self.error("refused to list its keys".into()));
            }
            _ => return Err(self.unreadable("an unexpected answer to a key listing")),
        };
        let count = read_u32(&mut body).ok_or_else(|| self.unreadable("a short key listing"))?;
        let mut keys = Vec::new();
        for _ in 0..count {
            let blob = read_string(&mut body).ok_or_else(|| self.unreadable("a short key"))?;
            read_string(&mut body).ok_or_else(|| self.unreadable("a short key comment"))?;
            keys.push(blob.to_vec());
        }
        Ok(keys)
    }

    /// One signature by the CA key over `data`.
    fn sign(&self, data: &[u8]) -> Result<Signature, SignerError> {
        let rsa = matches!(self.public.key_data(), KeyData::Rsa(_));
        let mut request = vec![SSH_AGENTC_SIGN_REQUEST];
        put_string(&mut request, &self.blob);
        put_string(&mut request, data);
        let flags = if rsa { SSH_AGENT_RSA_SHA2_512 } else { 0 };
        request.extend_from_slice(&flags.to_be_bytes());

        let answer = self.exchange(&request)?;
        let mut body = match answer.split_first() {
            Some((&SSH_AGENT_SIGN_RESPONSE, body)) => body,
            Some((&SSH_AGENT_FAILURE, _)) => {
                return Err(self.error(format!(
                    "refused to sign with the CA key {}: is it still loaded? \
                     (SSH_AUTH_SOCK={} ssh-add -l)",
                    self.public.fingerprint(HashAlg::Sha256),
                    self.socket.display()
                )));
            }
            _ => return Err(self.unreadable("an unexpected answer to a sign request")),
        };
        let blob = read_string(&mut body).ok_or_else(|| self.unreadable("a short signature"))?;
        let signature = Signature::try_from(blob)
            .map_err(|e| self.error(format!("sent a signature jitca cannot read: {e}")))?;
        if rsa
            && signature.algorithm()
                != (Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                })
        {
            return Err(self.error(format!(
                "signed with {} where rsa-sha2-512 was asked for",
                signature.algorithm()
            )));
        }
        Ok(signature)
    }

    /// One request and its answer over a fresh connection.
    fn exchange(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => self.error(
                    format!("did not answer within {}s", AGENT_TIMEOUT.as_secs()),
                ),
                _ => self.error(format!("{what}: {e}")),
            }
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(io("cannot be reached"))?;
        stream
            .set_read_timeout(Some(AGENT_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(AGENT_TIMEOUT)))
            .map_err(io("cannot be used"))?;
        let mut framed = Vec::with_capacity(4 + message.len());
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(message);
        stream
            .write_all(&framed)
            .map_err(io("failed while jitca was writing to it"))?;
        let mut len = [0u8; 4];
        stream
            .read_exact(&mut len)
            .map_err(io("failed before answering"))?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_MESSAGE {
            return Err(self.unreadable("an answer of impossible length"));
        }
        let mut answer = vec![0u8; len];
        stream
            .read_exact(&mut answer)
            .map_err(io("failed while answering"))?;
        Ok(answer)
    }

    fn error(&self, problem: String) -> SignerError {
        SignerError::Agent {
            socket: self.socket.display().to_string(),
            problem,
        }
    }

    fn unreadable(&self, what: &str) -> SignerError {
        self.error(format!("sent {what}; is it an ssh-agent?"))
    }
}

/// One certificate's signature through the agent: the signer that `Builder::sign` calls, keeping
/// the agent's own error (the builder only passes on an opaque one).
struct AgentCall<'a> {
    key: &'a AgentKey,
    failure: RefCell<Option<SignerError>>,
}

impl signature::Signer<Signature> for AgentCall<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, signature::Error> {
        self.key.sign(msg).map_err(|e| {
            *self.failure.borrow_mut() = Some(e);
            signature::Error::new()
        })
    }
}

impl From<&AgentCall<'_>> for KeyData {
    fn from(call: &AgentCall<'_>) -> KeyData {
        call.key.public.key_data().clone()
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn read_u32(input: &mut &[u8]) -> Option<u32> {
    let (head, rest) = input.split_first_chunk::<4>()?;
    *input = rest;
    Some(u32::from_be_bytes(*head))
}

fn read_string<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = read_u32(input)? as usize;
    if input.len() < len {
        return None;
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_lengths() {
        let mut out = Vec::new();
        put_string(&mut out, b"abc");
        put_string(&mut out, b"");
        let mut input = out.as_slice();
        assert_eq!(read_string(&mut input), Some(&b"abc"[..]));
        assert_eq!(read_string(&mut input), Some(&b""[..]));
        assert_eq!(read_string(&mut input), None);
        let mut short: &[u8] = &[0, 0, 0, 5, b'a'];
        assert_eq!(read_string(&mut short), None);
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert_eq!(read_string(&mut huge), None);
    }
}
