//! Second factors: one record a person in the `mfa` tree, keyed by user name. The secret is
//! stored sealed (the store never sees it in clear: sealing is `jitca-mfa`'s, under a key kept
//! outside the data folder). Every change, the last used time step included, is a
//! compare-and-swap against the exact record read, in one transaction with its audit records,
//! so two connections racing with one code cannot both advance the step.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::audit::AuditRecord;
use crate::sled_audit::append;
use crate::sled_store::{Abort, io, tx_error};
use crate::{SledStore, StoreError, Swap};

/// Where a person's second factor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorState {
    /// Enrolled (a secret was handed out) but no code confirmed yet: not in force.
    Unconfirmed,
    /// Confirmed with a first code: asked at every connection.
    Active,
}

impl FactorState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unconfirmed => "unconfirmed",
            Self::Active => "active",
        }
    }
}

/// One person's second factor as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondFactor {
    pub state: FactorState,
    /// The TOTP secret sealed for this person (nonce, ciphertext and tag), hex.
    pub sealed: String,
    /// The last time step a code was accepted for (confirmation included); 0 before any.
    /// Codes for this step or earlier are refused.
    #[serde(default)]
    pub last_step: u64,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When the most recent wrong codes were given (at most the limit's count, oldest first):
    /// stored, so the wrong-code limit holds across connections and restarts, and changed by
    /// the same compare-and-swap as the rest, so racing connections count every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wrong_codes: Vec<DateTime<Utc>>,
}

/// A second factor as read, with the token a later [`crate::Store::swap_second_factor`] must
/// present.
#[derive(Debug, Clone)]
pub struct VersionedFactor {
    pub factor: SecondFactor,
    token: Vec<u8>,
}

impl VersionedFactor {
    pub fn new(factor: SecondFactor, token: Vec<u8>) -> Self {
        Self { factor, token }
    }

    pub fn token(&self) -> &[u8] {
        &self.token
    }
}

fn decode(user: &str, bytes: &[u8]) -> Result<SecondFactor, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: format!("second factor of {user}"),
        reason: e.to_string(),
    })
}

impl SledStore {
    pub(crate) fn read_second_factor(
        &self,
        user: &str,
    ) -> Result<Option<VersionedFactor>, StoreError> {
        match self.mfa.get(user.as_bytes()).map_err(io)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(VersionedFactor::new(
                decode(user, &bytes)?,
                bytes.to_vec(),
            ))),
        }
    }

    pub(crate) fn swap_second_factor_of(
        &self,
        user: &str,
        current: Option<&VersionedFactor>,
        next: Option<&SecondFactor>,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError> {
        let bytes = next.map(|f| serde_json::to_vec(f).expect("a second factor serialises"));
        let outcome = (&self.mfa, &self.meta, &self.audit, &self.index).transaction(
            |(mfa, meta, audit, index): &(
                TransactionalTree,
                TransactionalTree,
                TransactionalTree,
                TransactionalTree,
            )| {
                let stored = mfa.get(user.as_bytes())?;
                let same = match (&stored, current) {
                    (None, None) => true,
                    (Some(s), Some(c)) => s.as_ref() == c.token(),
                    _ => false,
                };
                if !same {
                    return Err(ConflictableTransactionError::Abort(Abort::Conflict));
                }
                match &bytes {
                    Some(b) => {
                        mfa.insert(user.as_bytes(), b.as_slice())?;
                    }
                    None => {
                        mfa.remove(user.as_bytes())?;
                    }
                }
                append(meta, audit, index, events, Utc::now())?;
                Ok(())
            },
        );
        match outcome {
            Ok(()) => Ok(Swap::Done),
            Err(TransactionError::Abort(Abort::Conflict)) => Ok(Swap::Conflict),
            Err(e) => Err(tx_error(e, user)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EventKind;
    use crate::{Store, verify_audit};

    fn factor(state: FactorState, last_step: u64) -> SecondFactor {
        SecondFactor {
            state,
            sealed: "00".repeat(60),
            last_step,
            created_at: Utc::now(),
            confirmed_at: None,
            wrong_codes: Vec::new(),
        }
    }

    #[test]
    fn factors_are_kept_per_person_and_swapped_against_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        assert!(store.second_factor("alice").unwrap().is_none());
        let enrolled = AuditRecord::new(EventKind::MfaEnrolled, "alice");
        let new = factor(FactorState::Unconfirmed, 0);
        assert!(matches!(
            store
                .swap_second_factor("alice", None, Some(&new), std::slice::from_ref(&enrolled))
                .unwrap(),
            Swap::Done
        ));
        // Creating it again from "none" loses: it exists now.
        assert!(matches!(
            store
                .swap_second_factor("alice", None, Some(&new), std::slice::from_ref(&enrolled))
                .unwrap(),
            Swap::Conflict
        ));
        let read = store.second_factor("alice").unwrap().unwrap();
        assert_eq!(read.factor, new);
        assert!(store.second_factor("bob").unwrap().is_none());
        let active = factor(FactorState::Active, 100);
        let confirmed = AuditRecord::new(EventKind::MfaConfirmed, "alice");
        assert!(matches!(
            store
                .swap_second_factor("alice", Some(&read), Some(&active), &[confirmed])
                .unwrap(),
            Swap::Done
        ));
        // Removing it with the stale read loses; with a fresh one it goes, with its record.
        assert!(matches!(
            store
                .swap_second_factor("alice", Some(&read), None, &[])
                .unwrap(),
            Swap::Conflict
        ));
        let fresh = store.second_factor("alice").unwrap().unwrap();
        let reset = AuditRecord::new(EventKind::MfaReset, "carol");
        assert!(matches!(
            store
                .swap_second_factor("alice", Some(&fresh), None, &[reset])
                .unwrap(),
            Swap::Done
        ));
        assert!(store.second_factor("alice").unwrap().is_none());
        // Only the swaps that happened were recorded: enrolled, confirmed, reset.
        let head = verify_audit(&store).unwrap().unwrap();
        assert_eq!(head.seq, 3);
    }

    #[test]
    fn two_uses_of_one_read_advance_the_step_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store
            .swap_second_factor("alice", None, Some(&factor(FactorState::Active, 10)), &[])
            .unwrap();
        let read = store.second_factor("alice").unwrap().unwrap();
        let outcomes: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let mut next = read.factor.clone();
                        next.last_step = 11;
                        matches!(
                            store
                                .swap_second_factor("alice", Some(&read), Some(&next), &[])
                                .unwrap(),
                            Swap::Done
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(outcomes.iter().filter(|done| **done).count(), 1);
        assert_eq!(
            store
                .second_factor("alice")
                .unwrap()
                .unwrap()
                .factor
                .last_step,
            11
        );
    }

    #[test]
    fn factors_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .swap_second_factor("alice", None, Some(&factor(FactorState::Active, 42)), &[])
                .unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store
                .second_factor("alice")
                .unwrap()
                .unwrap()
                .factor
                .last_step,
            42
        );
    }
}
