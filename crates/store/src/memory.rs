//! The in-memory backend: plain maps behind one mutex, with the guarantees of the [`Store`]
//! trait and nothing else.
//!
//! It exists so that the request lifecycle can be exercised (and its races provoked) without a
//! data folder, and so that every guarantee a backend owes the lifecycle is stated by a second,
//! simple implementation of it (the conformance suite in `tests/conformance.rs` runs against
//! both). Each operation takes the one lock for its whole length, computes everything it will
//! write first and then writes it, so a change and its audit records land together or not at
//! all. The audit chain is sealed by [`audit::seal`], exactly as [`crate::SledStore`] seals
//! it, so [`crate::verify_audit`] checks it the same way. Nothing survives the process:
//! [`Store::flush`] has nothing to do, and this backend is not for a daemon whose
//! certificates must be remembered after a restart.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::audit::{self, AuditQuery, AuditRecord, Head};
use crate::{KrlState, Request, SecondFactor, Store, StoreError, Swap, Versioned, VersionedFactor};

/// A store that lives in process memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

/// Everything the store holds.
#[derive(Default)]
struct Memory {
    /// Every write of a request or a second factor takes the next version; the version is the
    /// compare-and-swap token. A store-wide counter never hands out a version twice, so a
    /// token read before any later write never matches again, even when a record is written
    /// back to exactly what it was.
    writes: u64,
    requests: HashMap<String, Stored<Request>>,
    /// The audit chain: the record at seq `n` is at index `n - 1`, with its stored line.
    audit: Vec<(AuditRecord, Vec<u8>)>,
    /// The chain's end (genesis while `audit` is empty).
    head: Option<Head>,
    /// The last serial handed out (0: none yet).
    serial: u64,
    krl: Option<KrlState>,
    marks: HashMap<String, u64>,
    factors: HashMap<String, Stored<SecondFactor>>,
}

/// A record with the version it was written at.
struct Stored<T> {
    value: T,
    version: u64,
}

impl<T> Stored<T> {
    fn token(&self) -> Vec<u8> {
        self.version.to_be_bytes().to_vec()
    }
}

impl Memory {
    fn head(&self) -> Head {
        self.head.clone().unwrap_or_else(Head::genesis)
    }

    fn next_version(&mut self) -> u64 {
        self.writes += 1;
        self.writes
    }

    /// Seals `events` onto the chain at `now` without storing them yet: the caller stores them
    /// with [`Memory::append`] once nothing else can fail.
    fn seal(
        &self,
        events: &[AuditRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<(AuditRecord, Vec<u8>)>, StoreError> {
        let mut head = self.head();
        let mut sealed = Vec::with_capacity(events.len());
        for event in events {
            let (line, next) = audit::seal(&head, event.clone(), now);
            // The record kept is the one its line holds, as a backend that stores only the
            // line would read it back.
            let record = serde_json::from_slice(&line).map_err(|e| StoreError::Corrupt {
                key: format!("audit record {}", next.seq),
                reason: e.to_string(),
            })?;
            sealed.push((record, line));
            head = next;
        }
        Ok(sealed)
    }

    /// Stores records sealed by [`Memory::seal`] against the current head.
    fn append(&mut self, sealed: Vec<(AuditRecord, Vec<u8>)>) -> Head {
        if let Some((record, _)) = sealed.last() {
            self.head = Some(Head {
                seq: record.seq,
                hash: record.hash.clone().unwrap_or_default(),
                time: record.time,
            });
        }
        self.audit.extend(sealed);
        self.head()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Memory> {
        // A panic while the lock was held happened before anything was written (every
        // operation writes only once it cannot fail), so what the lock guards is intact.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn create_request(&self, request: &Request, events: &[AuditRecord]) -> Result<(), StoreError> {
        let mut memory = self.lock();
        if memory.requests.contains_key(&request.id) {
            return Err(StoreError::Exists(request.id.clone()));
        }
        let sealed = memory.seal(events, Utc::now())?;
        let version = memory.next_version();
        memory.requests.insert(
            request.id.clone(),
            Stored {
                value: request.clone(),
                version,
            },
        );
        memory.append(sealed);
        Ok(())
    }

    fn request(&self, id: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self
            .lock()
            .requests
            .get(id)
            .map(|stored| Versioned::new(stored.value.clone(), stored.token())))
    }

    fn requests(&self) -> Result<Vec<Request>, StoreError> {
        let mut all: Vec<Request> = self
            .lock()
            .requests
            .values()
            .map(|stored| stored.value.clone())
            .collect();
        // The order SledStore gives: newest first, ties by id, so both list alike.
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    fn replace_request(
        &self,
        current: &Versioned,
        next: &Request,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError> {
        let mut memory = self.lock();
        let id = &current.request.id;
        match memory.requests.get(id) {
            None => return Err(StoreError::Missing(id.clone())),
            Some(stored) if stored.token() != current.token() => return Ok(Swap::Conflict),
            Some(_) => {}
        }
        let sealed = memory.seal(events, Utc::now())?;
        let version = memory.next_version();
        memory.requests.insert(
            id.clone(),
            Stored {
                value: next.clone(),
                version,
            },
        );
        memory.append(sealed);
        Ok(Swap::Done)
    }

    fn next_serial(&self) -> Result<u64, StoreError> {
        let mut memory = self.lock();
        let serial = memory
            .serial
            .checked_add(1)
            .ok_or(StoreError::SerialsExhausted)?;
        memory.serial = serial;
        Ok(serial)
    }

    fn append_audit(&self, events: &[AuditRecord]) -> Result<Head, StoreError> {
        let mut memory = self.lock();
        let sealed = memory.seal(events, Utc::now())?;
        Ok(memory.append(sealed))
    }

    fn audit_head(&self) -> Result<Head, StoreError> {
        Ok(self.lock().head())
    }

    fn scan_audit(
        &self,
        query: &AuditQuery,
        visit: &mut dyn FnMut(&AuditRecord, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let memory = self.lock();
        let first = query
            .after_seq
            .map_or(0, |seq| usize::try_from(seq).unwrap_or(usize::MAX));
        for (record, line) in memory.audit.iter().skip(first) {
            if query.matches(record) && !visit(record, line) {
                break;
            }
        }
        Ok(())
    }

    fn raw_audit(&self, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        let memory = self.lock();
        for (seq, (_, line)) in (1..).zip(memory.audit.iter()) {
            if !visit(seq, line) {
                break;
            }
        }
        Ok(())
    }

    fn krl_state(&self) -> Result<KrlState, StoreError> {
        Ok(self.lock().krl.unwrap_or(KrlState {
            version: 0,
            generated_at: DateTime::UNIX_EPOCH,
        }))
    }

    fn bump_krl(&self, now: DateTime<Utc>) -> Result<KrlState, StoreError> {
        let mut memory = self.lock();
        let next = KrlState {
            version: memory.krl.map_or(0, |k| k.version) + 1,
            generated_at: now,
        };
        memory.krl = Some(next);
        Ok(next)
    }

    fn mark(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.lock().marks.get(name).copied().unwrap_or(0))
    }

    fn set_mark(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.lock().marks.insert(name.to_string(), value);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write is visible at once, and none outlives the process: nothing to do.
        Ok(())
    }

    fn second_factor(&self, user: &str) -> Result<Option<VersionedFactor>, StoreError> {
        Ok(self
            .lock()
            .factors
            .get(user)
            .map(|stored| VersionedFactor::new(stored.value.clone(), stored.token())))
    }

    fn swap_second_factor(
        &self,
        user: &str,
        current: Option<&VersionedFactor>,
        next: Option<&SecondFactor>,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError> {
        let mut memory = self.lock();
        let same = match (memory.factors.get(user), current) {
            (None, None) => true,
            (Some(stored), Some(read)) => stored.token() == read.token(),
            _ => false,
        };
        if !same {
            return Ok(Swap::Conflict);
        }
        let sealed = memory.seal(events, Utc::now())?;
        match next {
            Some(factor) => {
                let version = memory.next_version();
                memory.factors.insert(
                    user.to_string(),
                    Stored {
                        value: factor.clone(),
                        version,
                    },
                );
            }
            None => {
                memory.factors.remove(user);
            }
        }
        memory.append(sealed);
        Ok(Swap::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Approval, EventKind, State, verify_audit};
    use chrono::TimeZone;

    fn request(id: &str) -> Request {
        let t = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        Request {
            id: id.into(),
            requester: "alice".into(),
            public_key: "ssh-ed25519 AAAA".into(),
            fingerprint: "SHA256:x".into(),
            hosts: vec!["web1".into()],
            logins: vec!["deploy".into()],
            principals: vec!["deploy@web1".into()],
            duration_secs: 3600,
            reason: "INC-1".into(),
            rule: "dev-web".into(),
            approvals_needed: 1,
            extensions: vec![],
            critical_options: Default::default(),
            source: "127.0.0.1:1".into(),
            created_at: t,
            lapses_at: t,
            approvals: vec![],
            state: State::Pending,
            break_glass: false,
            review_required: false,
            requester_mfa: false,
            review: None,
            review_due_announced: false,
            usage: None,
        }
    }

    fn approved_by(request: &Request, who: &str) -> Request {
        let mut next = request.clone();
        next.approvals.push(Approval {
            by: who.into(),
            at: next.created_at,
            mfa: false,
        });
        next
    }

    #[test]
    fn a_record_written_back_unchanged_still_invalidates_older_reads() {
        // Sled's token is the stored bytes, so there writing back the same bytes would let an
        // old read win; here every write is a new version, which is stricter and still right.
        let store = MemoryStore::new();
        store.create_request(&request("a"), &[]).unwrap();
        let first = store.request("a").unwrap().unwrap();
        let changed = approved_by(&first.request, "bob");
        assert!(matches!(
            store.replace_request(&first, &changed, &[]).unwrap(),
            Swap::Done
        ));
        let second = store.request("a").unwrap().unwrap();
        assert!(matches!(
            store.replace_request(&second, &first.request, &[]).unwrap(),
            Swap::Done
        ));
        assert_eq!(store.request("a").unwrap().unwrap().request, first.request);
        assert!(matches!(
            store.replace_request(&first, &changed, &[]).unwrap(),
            Swap::Conflict
        ));
    }

    #[test]
    fn a_swap_of_a_request_never_stored_is_missing_and_appends_nothing() {
        let store = MemoryStore::new();
        let ghost = Versioned::new(request("ghost"), 1u64.to_be_bytes().to_vec());
        let event = AuditRecord::new(EventKind::Approved, "bob");
        assert!(matches!(
            store.replace_request(&ghost, &request("ghost"), &[event]),
            Err(StoreError::Missing(id)) if id == "ghost"
        ));
        assert_eq!(store.audit_head().unwrap(), Head::genesis());
    }

    #[test]
    fn serials_end_at_the_maximum() {
        let store = MemoryStore::new();
        assert_eq!(store.next_serial().unwrap(), 1);
        store.lock().serial = u64::MAX - 1;
        assert_eq!(store.next_serial().unwrap(), u64::MAX);
        assert!(matches!(
            store.next_serial(),
            Err(StoreError::SerialsExhausted)
        ));
        // Exhausted stays exhausted: no wrap to 0 or 1.
        assert!(matches!(
            store.next_serial(),
            Err(StoreError::SerialsExhausted)
        ));
    }

    #[test]
    fn tampering_with_the_kept_chain_is_found() {
        let store = MemoryStore::new();
        for who in ["a", "b", "c", "d"] {
            store
                .append_audit(&[AuditRecord::new(EventKind::Refused, who)])
                .unwrap();
        }
        assert_eq!(verify_audit(&store).unwrap().unwrap().seq, 4);
        let original = store.lock().audit[1].1.clone();
        let changed = String::from_utf8(original.clone())
            .unwrap()
            .replace("\"actor\":\"b\"", "\"actor\":\"x\"");
        store.lock().audit[1].1 = changed.into_bytes();
        let broken = verify_audit(&store).unwrap().unwrap_err();
        assert_eq!(broken.seq, 2, "{broken}");
        store.lock().audit[1].1 = original;
        assert!(verify_audit(&store).unwrap().is_ok());
        store.lock().audit.pop();
        let cut = verify_audit(&store).unwrap().unwrap_err();
        assert_eq!(cut.seq, 4, "{cut}");
    }

    #[test]
    fn the_kept_record_is_the_one_its_line_holds() {
        let store = MemoryStore::new();
        let mut event = AuditRecord::new(EventKind::Requested, "alice").with("rule", "dev-web");
        event.request = Some("a".into());
        store.create_request(&request("a"), &[event]).unwrap();
        let memory = store.lock();
        let (record, line) = &memory.audit[0];
        assert_eq!(*record, audit::open(1, line).unwrap());
        assert_eq!(record.seq, 1);
        assert_eq!(record.prev, audit::GENESIS);
        assert_eq!(record.hash.as_deref(), Some(memory.head().hash.as_str()));
    }
}
