//! The store: what jitca must never forget.
//!
//! Requests and each of their state changes, and the certificate serial counter. The authority
//! sees only the [`Store`] trait: the handful of operations the request lifecycle needs, so that
//! a second backend (a replicated database, for several daemons behind one name) can stand in
//! for [`SledStore`] without the lifecycle changing. Every state change is a compare-and-swap
//! against the exact record the caller read, so two approvers racing change a request once.

mod model;
mod sled_store;

pub use model::{Approval, Issuance, Request, State};
pub use sled_store::SledStore;

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
/// later reads at once, and durable once [`Store::flush`] returns.
pub trait Store: Send + Sync {
    /// Stores a new request; fails with [`StoreError::Exists`] if its id is taken.
    fn create_request(&self, request: &Request) -> Result<(), StoreError>;
    /// One request, with its compare-and-swap token.
    fn request(&self, id: &str) -> Result<Option<Versioned>, StoreError>;
    /// Every request, newest first.
    fn requests(&self) -> Result<Vec<Request>, StoreError>;
    /// Replaces `current` by `next` only if the stored record is still exactly `current`.
    fn replace_request(&self, current: &Versioned, next: &Request) -> Result<Swap, StoreError>;
    /// The next certificate serial: never 0, never handed out twice, also across restarts
    /// (once the write that took it is flushed).
    fn next_serial(&self) -> Result<u64, StoreError>;
    /// Makes every write done before this call durable.
    fn flush(&self) -> Result<(), StoreError>;
}
