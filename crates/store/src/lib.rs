//! The store: what jitca must never forget.
//!
//! Requests and each of their state changes, the certificate serial counter, and the audit
//! log: a hash chain of every event (see [`audit`]), appended in the same transaction as the
//! state change it records, so neither can exist without the other. The authority
//! sees only the [`Store`] trait: the handful of operations the request lifecycle needs, so that
//! a second backend (a replicated database, for several daemons behind one name) can stand in
//! for [`SledStore`] without the lifecycle changing. Every state change is a compare-and-swap
//! against the exact record the caller read, so two approvers racing change a request once.

pub mod audit;
mod memory;
mod mfa;
mod model;
pub mod postgres;
mod sled_audit;
mod sled_store;
mod trim;

pub use audit::{AuditQuery, AuditRecord, ChainBreak, EventKind, Head};
pub use memory::MemoryStore;
pub use mfa::{FactorState, SecondFactor, VersionedFactor};
pub use model::{Approval, Issuance, Request, Review, ReviewOutcome, Revocation, State, Usage};
pub use postgres::{PgOptions, PgStore};
pub use sled_store::{SledStore, StoreOptions};
pub use trim::release_free_memory;

/// A record as read, with the token a later compare-and-swap must present.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub request: Request,
    token: Vec<u8>,
}

impl Versioned {
    pub fn new(request: Request, token: Vec<u8>) -> Self {
        Self { request, token }
    }

    pub fn token(&self) -> &[u8] {
        &self.token
    }
}

/// The outcome of a compare-and-swap.
#[derive(Debug)]
pub enum Swap {
    /// The record was replaced.
    Done,
    /// Someone changed the record first; read it again.
    Conflict,
}

/// Why the store could not do what was asked. None of these are the user's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data folder could not be opened (missing permissions, another daemon holds it).
    #[error("cannot open the store in {path}: {reason}")]
    Open { path: String, reason: String },
    /// A read, write or flush failed.
    #[error("store I/O failed: {0}")]
    Io(String),
    /// The database did not answer (in time): nothing was changed by this operation, or, at
    /// worst, a change committed that the caller is not told of (it reads it back later).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A stored record does not decode: the store is damaged or from an unknown version.
    #[error("stored record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    /// A request with this id exists already.
    #[error("request {0} exists already")]
    Exists(String),
    /// A compare-and-swap named a request that is not stored.
    #[error("request {0} is not stored")]
    Missing(String),
    /// The serial counter cannot grow any more.
    #[error("the certificate serial counter is exhausted")]
    SerialsExhausted,
}

/// The operations of the request lifecycle. Implementations must make every write visible to
/// later reads at once, and durable once [`Store::flush`] returns. Audit records passed with a
/// change are appended to the chain in the same atomic step as the change.
pub trait Store: Send + Sync {
    /// Stores a new request and its audit records; fails with [`StoreError::Exists`] if its
    /// id is taken (and then appends nothing).
    fn create_request(&self, request: &Request, events: &[AuditRecord]) -> Result<(), StoreError>;
    /// One request, with its compare-and-swap token.
    fn request(&self, id: &str) -> Result<Option<Versioned>, StoreError>;
    /// Every request, newest first.
    fn requests(&self) -> Result<Vec<Request>, StoreError>;
    /// The requests whose [`Request::deadline`] is at or before `now`, in no set order: the
    /// pending ones to lapse and the ended grants whose review is due, found without reading
    /// every request ever made.
    fn due(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<Request>, StoreError> {
        Ok(self
            .requests()?
            .into_iter()
            .filter(|r| r.deadline().is_some_and(|d| now >= d))
            .collect())
    }
    /// Replaces `current` by `next`, and appends `events`, only if the stored record is still
    /// exactly `current`.
    fn replace_request(
        &self,
        current: &Versioned,
        next: &Request,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError>;
    /// The next certificate serial: never 0, never handed out twice, also across restarts
    /// (once the write that took it is flushed).
    fn next_serial(&self) -> Result<u64, StoreError>;
    /// Appends audit records that go with no request change.
    fn append_audit(&self, events: &[AuditRecord]) -> Result<Head, StoreError>;
    /// The end of the audit chain.
    fn audit_head(&self) -> Result<Head, StoreError>;
    /// Calls `visit` with each record matching `query` (and its stored line), in seq order,
    /// until it returns false.
    fn scan_audit(
        &self,
        query: &AuditQuery,
        visit: &mut dyn FnMut(&AuditRecord, &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Calls `visit` with every stored audit line and the seq it is stored under, in order,
    /// without decoding or checking anything (for verification).
    fn raw_audit(&self, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError>;
    /// The revocation list's version and the time its contents were fixed.
    fn krl_state(&self) -> Result<KrlState, StoreError>;
    /// Starts a new revocation list version, fixed at `now`: called on every change of what
    /// it revokes. The version only grows.
    fn bump_krl(&self, now: chrono::DateTime<chrono::Utc>) -> Result<KrlState, StoreError>;
    /// A named counter kept for a follower of the store (0 until first set), such as the
    /// last audit record written to the JSON-lines file.
    fn mark(&self, name: &str) -> Result<u64, StoreError>;
    /// Sets a named counter.
    fn set_mark(&self, name: &str, value: u64) -> Result<(), StoreError>;
    /// Makes every write done before this call durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// A person's second factor, with its compare-and-swap token.
    fn second_factor(&self, user: &str) -> Result<Option<VersionedFactor>, StoreError>;
    /// Stores (`Some`) or removes (`None`) a person's second factor, and appends `events`, only
    /// if the stored one is still exactly `current` (`None`: none is stored).
    fn swap_second_factor(
        &self,
        user: &str,
        current: Option<&VersionedFactor>,
        next: Option<&SecondFactor>,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError>;
    /// Calls `on_change` with the id of each request that changes from now on, in this
    /// process or in any other sharing the store, so waiters and watchers here learn of changes
    /// made by another daemon. A store only one process can open has nothing to add to what
    /// the process announces itself: the default does nothing.
    fn follow(&self, on_change: ChangeHook) {
        let _ = on_change;
    }
    /// Whether other processes may change the store while this one runs (several daemons on
    /// one database): what this process keeps from it (the KRL it serves, gauges) must then be
    /// read again now and then.
    fn shared(&self) -> bool {
        false
    }
}

/// What [`Store::follow`] calls with a changed request's id.
pub type ChangeHook = Box<dyn Fn(&str) + Send + Sync>;

/// Which revocation list is current: its version, and the time that decides which revoked
/// certificates have expired long enough to leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KrlState {
    pub version: u64,
    pub generated_at: chrono::DateTime<chrono::Utc>,
}

/// What a verification found: the intact chain's head, or the first broken record.
pub fn verify_audit(store: &dyn Store) -> Result<Result<Head, ChainBreak>, StoreError> {
    verify_audit_visit(store, &mut |_| {})
}

/// [`verify_audit`], calling `visit` with each record once it is verified, in seq order (up
/// to the first break): one pass for a report or a checkpoint check that also proves the chain.
pub fn verify_audit_visit(
    store: &dyn Store,
    visit: &mut dyn FnMut(&AuditRecord),
) -> Result<Result<Head, ChainBreak>, StoreError> {
    // One consistent view of a log that may grow while it is read: the head read first names
    // records that all exist before the scan starts; records appended during the scan must
    // chain on from it, and none may lie beyond the head read last. Reading the head only at
    // the end took records that landed meanwhile for a cut-off tail.
    let before = store.audit_head()?;
    let mut verifier = audit::Verifier::new();
    let mut at_before = (before.seq == 0).then(Head::genesis);
    let mut broken = None;
    // Three stages on their own threads, in batches: reading the store, decoding and hashing
    // each line, and linking the chain (with `visit`) here. A long log verifies in about the
    // time of its slowest stage (docs/benchmarks.md). At most two batches wait between
    // stages (they were eight): each holds about a megabyte of lines or records, part of the
    // daemon's peak memory during a verification.
    const BATCH: usize = 1024;
    type Opened = Vec<(u64, Result<AuditRecord, ChainBreak>)>;
    let scanned = std::thread::scope(|s| {
        let (raw_tx, raw_rx) = std::sync::mpsc::sync_channel::<Vec<(u64, Vec<u8>)>>(2);
        let (open_tx, open_rx) = std::sync::mpsc::sync_channel::<Opened>(2);
        let reader = s.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let mut wanted = true;
            let read = store.raw_audit(&mut |seq, line| {
                batch.push((seq, line.to_vec()));
                if batch.len() == BATCH {
                    wanted = raw_tx.send(std::mem::take(&mut batch)).is_ok();
                    batch.reserve(BATCH);
                }
                wanted
            });
            if !batch.is_empty() {
                let _ = raw_tx.send(batch);
            }
            read
        });
        s.spawn(move || {
            for batch in raw_rx {
                let opened = batch
                    .into_iter()
                    .map(|(seq, line)| (seq, audit::open(seq, &line)))
                    .collect();
                if open_tx.send(opened).is_err() {
                    break;
                }
            }
        });
        'link: for batch in open_rx {
            for (seq, opened) in batch {
                match verifier.next_opened(seq, || opened) {
                    Ok(record) => {
                        visit(&record);
                        if seq == before.seq {
                            at_before = Some(verifier.head().clone());
                        }
                    }
                    Err(e) => {
                        broken = Some(e);
                        break 'link;
                    }
                }
            }
        }
        reader.join().expect("the audit reader thread panicked")
    });
    // The stages' threads are gone; what they freed stays in their allocator arenas.
    release_free_memory();
    scanned?;
    if let Some(b) = broken {
        return Ok(Err(b));
    }
    let after = store.audit_head()?;
    Ok(verifier.finish_live(&before, at_before.as_ref(), &after))
}
