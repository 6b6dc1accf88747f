//! Signed checkpoints of the audit chain: the record count, the head's hash and the time, signed
//! with the audit key (an ed25519 key of its own, never the CA key) as an OpenSSH signature in
//! the `jitca-audit` namespace, so `ssh-keygen -Y verify` checks it without jitca.
//!
//! A checkpoint kept outside the CA host anchors the chain: whoever can write the store can cut
//! its tail and rewrite the head to match, but cannot make the chain hold an earlier
//! checkpoint's head at its count again without the records that were there.

use std::path::Path;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, SecondsFormat, Utc};
use jitca_store::audit::GENESIS as GENESIS_HASH;
use jitca_store::{AuditRecord, ChainBreak, EventKind, Head, Store, StoreError};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::audit::DAEMON;
use crate::{Authority, AuthorityError, Caller};

/// The signature namespace (`ssh-keygen -Y verify -n jitca-audit`).
pub const NAMESPACE: &str = "jitca-audit";
/// The first line of every checkpoint.
const TITLE: &str = "jitca audit checkpoint";
const ARMOR_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";

/// What a checkpoint states: the chain held `records` records ending in `head` at `time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub records: u64,
    pub head: String,
    pub time: DateTime<Utc>,
}

impl Checkpoint {
    /// The checkpoint of a chain whose head is `head`.
    pub fn of(head: &Head, time: DateTime<Utc>) -> Self {
        Self {
            records: head.seq,
            head: head.hash.clone(),
            time,
        }
    }

    /// The signed text: exactly these bytes are signed.
    pub fn text(&self) -> String {
        format!(
            "{TITLE}\nrecords {}\nhead {}\ntime {}\n",
            self.records,
            self.head,
            self.time.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }

    /// The text followed by its armored signature.
    pub fn sign(&self, key: &PrivateKey) -> Result<String, String> {
        let text = self.text();
        let sig = key
            .sign(NAMESPACE, HashAlg::Sha512, text.as_bytes())
            .map_err(|e| format!("cannot sign the checkpoint: {e}"))?;
        let armor = sig
            .to_pem(LineEnding::LF)
            .map_err(|e| format!("cannot encode the checkpoint's signature: {e}"))?;
        Ok(format!("{text}{armor}"))
    }

    /// Reads a signed checkpoint and checks its signature with `key`.
    pub fn verify(signed: &str, key: &PublicKey) -> Result<Self, String> {
        let at = signed.find(ARMOR_BEGIN).ok_or(
            "not a signed checkpoint: no -----BEGIN SSH SIGNATURE----- after the checkpoint text",
        )?;
        let (text, armor) = signed.split_at(at);
        let sig = SshSig::from_pem(armor.trim_end())
            .map_err(|e| format!("the checkpoint's signature is unreadable: {e}"))?;
        key.verify(NAMESPACE, text.as_bytes(), &sig).map_err(|_| {
            "the checkpoint's signature does not verify with the audit key: it was changed, or \
             signed by another key"
                .to_string()
        })?;
        Self::parse(text)
    }

    /// Reads the checkpoint text (without its signature).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |what: &str| format!("not a jitca checkpoint: {what}");
        let mut lines = text.lines();
        if lines.next() != Some(TITLE) {
            return Err(bad(&format!("the first line is not {TITLE:?}")));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|v| v.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("no {name} line")))
        };
        let records = field("records")?
            .parse::<u64>()
            .map_err(|_| bad("records is not a count"))?;
        let head = field("head")?;
        if head.len() != 64 || !head.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("head is not a SHA-256 hash"));
        }
        let time = DateTime::parse_from_rfc3339(&field("time")?)
            .map_err(|_| bad("time is not an RFC 3339 time"))?
            .with_timezone(&Utc);
        Ok(Self {
            records,
            head,
            time,
        })
    }
}

/// Whether the chain, verified end to end, still holds `checkpoint`'s head at its count: the
/// intact chain's head, or the first record that breaks it (or is missing, or differs from the
/// checkpoint).
pub fn check_chain(
    store: &dyn Store,
    checkpoint: &Checkpoint,
) -> Result<Result<Head, ChainBreak>, StoreError> {
    let mut at_count = (checkpoint.records == 0).then(|| GENESIS_HASH.to_string());
    let outcome = jitca_store::verify_audit_visit(store, &mut |record| {
        if record.seq == checkpoint.records {
            at_count = record.hash.clone();
        }
    })?;
    let head = match outcome {
        Ok(head) => head,
        Err(broken) => return Ok(Err(broken)),
    };
    let stamp = checkpoint.time.to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok(match at_count {
        None => Err(ChainBreak {
            seq: head.seq + 1,
            problem: format!(
                "is missing: the checkpoint of {stamp} counts {} records but the log ends at \
                 record {} (records were cut off the end and its head rewritten)",
                checkpoint.records, head.seq
            ),
        }),
        Some(hash) if hash != checkpoint.head => Err(ChainBreak {
            seq: checkpoint.records,
            problem: format!(
                "does not match the checkpoint of {stamp}: its hash is {hash}, the checkpoint \
                 says {} (the log was rewritten)",
                checkpoint.head
            ),
        }),
        Some(_) => Ok(head),
    })
}

/// Makes a new audit key: ed25519, `path` mode 0600 and `path.pub`; never overwrites.
pub fn create_key(path: &Path) -> Result<PrivateKey, AuthorityError> {
    let key = jitca_signer::generate_ed25519("jitca-audit")?;
    jitca_signer::write_private_key(path, &key)?;
    Ok(key)
}

/// The public half as one line: what `audit key` prints and an allowed-signers file holds.
pub fn public_line(key: &PrivateKey) -> String {
    key.public_key()
        .to_openssh()
        .unwrap_or_else(|_| String::from("?"))
}

/// This part's own state: the key that signs checkpoints, once loaded or made.
#[derive(Default)]
pub(crate) struct AuditKey(RwLock<Option<Arc<PrivateKey>>>);

impl Authority {
    /// Loads the audit key from `path` (checked like the CA key: owner, mode, unencrypted,
    /// ed25519, not the CA key), or makes it there when missing. Returns whether it was made.
    pub fn use_audit_key(&self, path: &Path) -> Result<bool, AuthorityError> {
        let (key, made) = if path.exists() {
            (jitca_signer::load_private_key(path)?, false)
        } else if self.store.shared() {
            // Checkpoints of one chain are signed by one key auditors keep: a daemon on a
            // shared database does not make a key of its own.
            return Err(AuthorityError::Refused(format!(
                "audit_key {} does not exist: with several daemons on one database, every \
                 daemon needs the same audit key; copy it from the first (jitca init made it)",
                path.display()
            )));
        } else {
            let key = create_key(path)?;
            tracing::info!(path = %path.display(), key = %public_line(&key),
                "created the audit signing key");
            (key, true)
        };
        if key.algorithm() != ssh_key::Algorithm::Ed25519 {
            return Err(AuthorityError::Refused(format!(
                "audit_key {} is not an ed25519 key",
                path.display()
            )));
        }
        if key.public_key().key_data() == self.signer.public_key().key_data() {
            return Err(AuthorityError::Refused(format!(
                "audit_key {} is the CA key; the audit key must be a key of its own",
                path.display()
            )));
        }
        *self.audit_key.0.write().expect("audit key lock") = Some(Arc::new(key));
        Ok(made)
    }

    fn audit_key(&self) -> Result<Arc<PrivateKey>, AuthorityError> {
        self.audit_key
            .0
            .read()
            .expect("audit key lock")
            .clone()
            .ok_or_else(|| {
                AuthorityError::Refused(
                    "this CA has no audit key (audit_key); restart the daemon to make one".into(),
                )
            })
    }

    /// `audit key`: the public key that signs checkpoints, for auditors.
    pub fn audit_public_key(&self, caller: &Caller) -> Result<String, AuthorityError> {
        self.ensure_auditor(caller)?;
        Ok(public_line(&*self.audit_key()?))
    }

    /// A signed checkpoint of the verified chain, recorded in the chain itself (and so in the
    /// audit log file): by an auditor (`audit checkpoint`) or by the daemon (`caller` None).
    /// Refused when the chain is broken: a checkpoint vouches for what it signs.
    pub fn checkpoint(&self, caller: Option<&Caller>) -> Result<String, AuthorityError> {
        if let Some(caller) = caller {
            self.ensure_auditor(caller)?;
        }
        let key = self.audit_key()?;
        let head = match jitca_store::verify_audit(self.store.as_ref())? {
            Ok(head) => head,
            Err(broken) => {
                return Err(AuthorityError::Refused(format!(
                    "audit log broken at {broken}; no checkpoint signed"
                )));
            }
        };
        let checkpoint = Checkpoint::of(&head, Utc::now());
        let signed = checkpoint.sign(&key).map_err(AuthorityError::Refused)?;
        let mut event = AuditRecord::new(
            EventKind::Checkpoint,
            caller.map_or(DAEMON, |c| c.user.as_str()),
        )
        .with("records", checkpoint.records)
        .with("head", &checkpoint.head)
        .with("checkpoint", &signed);
        event.source = caller.map(|c| c.source.clone());
        self.record(event)?;
        if caller.is_none() {
            self.tell_checkpoint(&signed);
        }
        Ok(signed)
    }

    /// `audit verify --checkpoint -`: the checkpoint's signature with the audit key, then the
    /// chain against it. The outcome is recorded.
    pub fn verify_checkpoint(
        &self,
        caller: &Caller,
        signed: &str,
    ) -> Result<Result<Head, ChainBreak>, AuthorityError> {
        self.ensure_auditor(caller)?;
        let key = self.audit_key()?;
        let checkpoint =
            Checkpoint::verify(signed, key.public_key()).map_err(AuthorityError::Refused)?;
        let outcome = check_chain(self.store.as_ref(), &checkpoint)?;
        let event = AuditRecord::new(EventKind::AuditVerified, &caller.user)
            .with("checkpoint_records", checkpoint.records)
            .with("checkpoint_head", &checkpoint.head);
        self.record(crate::audit::verified(event, caller, &outcome))?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> Checkpoint {
        Checkpoint {
            records: 42,
            head: "ab".repeat(32),
            time: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_reads_back() {
        let key = jitca_signer::generate_ed25519("t").unwrap();
        let signed = sample().sign(&key).unwrap();
        assert!(signed.starts_with("jitca audit checkpoint\nrecords 42\nhead abab"));
        assert!(signed.contains("time 2026-12-01T10:00:00Z\n-----BEGIN SSH SIGNATURE-----\n"));
        assert_eq!(
            Checkpoint::verify(&signed, key.public_key()).unwrap(),
            sample()
        );
    }

    #[test]
    fn a_changed_byte_or_another_key_is_refused() {
        let key = jitca_signer::generate_ed25519("t").unwrap();
        let signed = sample().sign(&key).unwrap();
        let changed = signed.replacen("records 42", "records 43", 1);
        assert!(Checkpoint::verify(&changed, key.public_key()).is_err());
        let other = jitca_signer::generate_ed25519("o").unwrap();
        assert!(Checkpoint::verify(&signed, other.public_key()).is_err());
        assert!(Checkpoint::verify(&sample().text(), key.public_key()).is_err());
    }

    #[test]
    fn the_chain_must_still_hold_the_checkpoints_head_at_its_count() {
        use jitca_store::{SledStore, Store};
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let event = || AuditRecord::new(EventKind::Requested, "alice");
        let head = store.append_audit(&[event(), event(), event()]).unwrap();
        let at_three = Checkpoint::of(&head, Utc::now());
        store.append_audit(&[event(), event()]).unwrap();
        // Held: the log grew on from it.
        assert_eq!(check_chain(&store, &at_three).unwrap().unwrap().seq, 5);
        // A checkpoint from a longer log than this one: the next record is missing.
        let mut ahead = at_three.clone();
        ahead.records = 9;
        let missing = check_chain(&store, &ahead).unwrap().unwrap_err();
        assert_eq!(missing.seq, 6);
        assert!(missing.problem.contains("is missing"), "{missing}");
        // Another head at that count: the record was rewritten.
        let mut other = at_three.clone();
        other.head = "0f".repeat(32);
        let changed = check_chain(&store, &other).unwrap().unwrap_err();
        assert_eq!(changed.seq, 3);
        assert!(
            changed.problem.contains("does not match the checkpoint"),
            "{changed}"
        );
        // The empty log's checkpoint holds for any log.
        let genesis = Checkpoint::of(&Head::genesis(), Utc::now());
        assert!(check_chain(&store, &genesis).unwrap().is_ok());
    }

    #[test]
    fn malformed_text_is_refused() {
        assert!(Checkpoint::parse("hello\n").is_err());
        assert!(Checkpoint::parse("jitca audit checkpoint\nrecords x\n").is_err());
        let short = sample().text().replace(&"ab".repeat(32), "abc");
        assert!(Checkpoint::parse(&short).is_err());
    }
}
