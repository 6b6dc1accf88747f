//! The sled backend: a tree of requests keyed by id, the ids of the pending ones, the audit
//! chain (its packed blocks and its tail, `crate::sled_audit`), and a tree of counters and the
//! chain's head. Changes that touch several trees are one sled transaction.

use std::path::Path;

use chrono::Utc;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::audit::{AuditQuery, AuditRecord, Head};
use crate::sled_audit::append;
use crate::{KrlState, Request, Store, StoreError, Swap, Versioned};

const SERIAL_KEY: &[u8] = b"serial";
pub(crate) const HEAD_KEY: &[u8] = b"audit_head";
const KRL_KEY: &[u8] = b"krl";
/// Serials reserved in the store at a time (see [`SledStore::next_serial`]).
const SERIAL_BLOCK: u64 = 1024;
/// Set once the `pending` tree lists every pending request (stores made before it existed get
/// it built when opened).
const PENDING_INDEXED_KEY: &[u8] = b"pending_indexed";

/// The store on a local sled database. One process at a time: sled locks its folder.
pub struct SledStore {
    db: sled::Db,
    /// The serials reserved in the store and not yet handed out, taken one at a time. sled's
    /// compare-and-swap waits for a transaction in progress by spinning (`sched_yield`); with
    /// 32 issuances at once the spinning took a quarter of the daemon's CPU
    /// (docs/benchmarks.md). Waiters here sleep instead.
    serials: std::sync::Mutex<Reserved>,
    requests: sled::Tree,
    /// The pending requests: id -> deadline (`lapses_at` in microseconds, big-endian), kept
    /// with every change of a request, so the sweeper reads only those past their deadline.
    pending: sled::Tree,
    pub(crate) meta: sled::Tree,
    /// The chain's tail (`crate::sled_audit`): lines by seq, and an entry per name per line.
    pub(crate) audit: sled::Tree,
    pub(crate) index: sled::Tree,
    /// The chain's packed blocks: zstd frames of lines, and each block's postings.
    pub(crate) frames: sled::Tree,
    pub(crate) postings: sled::Tree,
    /// Held to read the chain, taken (if free) to pack it: a reader never sees a block move.
    pub(crate) packing: std::sync::RwLock<()>,
    /// The page cache's size it was opened with.
    cache_bytes: u64,
    /// Second factors by user name (`crate::mfa`).
    pub(crate) mfa: sled::Tree,
}

/// How long opening waits for a lock that a store closed a moment ago still holds:
/// `LOCK_TRIES` times `LOCK_WAIT`.
const LOCK_TRIES: u32 = 20;
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// How a [`SledStore`] is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The most memory sled keeps for its page cache, in bytes. sled's own default (1 GiB)
    /// let the daemon hold most of a large store in memory; pages not cached are read again
    /// from the file (and the kernel's page cache) when needed. sled evicts lazily (each of
    /// its 256 cache shards settles its accounts every 64 pages read into it), so a long scan
    /// such as `audit verify` leaves up to some thousands of pages above this for a while
    /// (docs/benchmarks.md, memory).
    pub cache_bytes: u64,
}

impl StoreOptions {
    /// The page cache's default size: 32 MiB.
    pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
        }
    }
}

/// Serials `next..=last` are reserved in the store and not handed out yet (none when `next`
/// is 0, as at start, or past `last`).
#[derive(Default)]
struct Reserved {
    next: u64,
    last: u64,
}

pub(crate) fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn encode(request: &Request) -> Vec<u8> {
    serde_json::to_vec(request).expect("a request always serialises")
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Request, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// A request's value in the deadline index (the `pending` tree): its
/// [`Request::deadline`]. Only requests with one are in the index.
fn deadline(request: &Request) -> [u8; 8] {
    request
        .deadline()
        .unwrap_or(request.lapses_at)
        .timestamp_micros()
        .to_be_bytes()
}

/// Why a transaction gave up on its own.
pub(crate) enum Abort {
    Exists,
    Conflict,
    Missing,
    Corrupt(String),
}

pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<Abort>>;

pub(crate) fn tx_error(e: TransactionError<Abort>, id: &str) -> StoreError {
    match e {
        TransactionError::Abort(Abort::Exists) => StoreError::Exists(id.to_string()),
        TransactionError::Abort(Abort::Missing) => StoreError::Missing(id.to_string()),
        TransactionError::Abort(Abort::Corrupt(what)) => StoreError::Corrupt {
            key: what,
            reason: "unreadable".into(),
        },
        TransactionError::Abort(Abort::Conflict) => {
            unreachable!("a swap conflict is an outcome, not an error")
        }
        TransactionError::Storage(e) => io(e),
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir` with the default [`StoreOptions`].
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir`. Opening writes nothing to the audit chain: a
    /// store written before the chain was packed (`crate::sled_audit`) is read as it is, and
    /// packed by [`SledStore::pack_backlog`] (the daemon runs it in the background) or a block
    /// at a time by later appends; `audit verify` gives the same head and count throughout.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: dir.display().to_string(),
            reason,
        };
        // sled wraps the failed flock in an `Other` error whose text is the only sign.
        let locked = |e: &sled::Error| {
            matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock"))
        };
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_bytes);
        // A store closed a moment ago may still be locked: sled's flusher thread lets go of
        // the file after the last handle is dropped. Wait for that briefly, not for a holder
        // that stays.
        let mut tries = 0;
        let db = loop {
            match config.open() {
                Err(e) if locked(&e) && tries < LOCK_TRIES => {
                    tries += 1;
                    std::thread::sleep(LOCK_WAIT);
                }
                Err(e) if locked(&e) => {
                    return Err(open_err(
                        "another process (a running jitca?) holds its lock".into(),
                    ));
                }
                Err(other) => return Err(open_err(other.to_string())),
                Ok(db) => break db,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(io);
        let store = Self {
            requests: tree("requests")?,
            pending: tree("pending")?,
            meta: tree("meta")?,
            audit: tree("audit")?,
            index: tree("audit_index")?,
            mfa: tree("mfa")?,
            frames: tree("audit_frames")?,
            postings: tree("audit_postings")?,
            packing: std::sync::RwLock::new(()),
            cache_bytes: options.cache_bytes,
            db,
            serials: std::sync::Mutex::new(Reserved::default()),
        };
        store.index_pending()?;
        Ok(store)
    }

    /// Builds the pending index of a store made before it existed (once; no other writer runs
    /// while the store opens). sled recovers a prefix of its log, so a crash before the mark
    /// is durable only means building it again.
    fn index_pending(&self) -> Result<(), StoreError> {
        if self.meta.get(PENDING_INDEXED_KEY).map_err(io)?.is_some() {
            return Ok(());
        }
        self.pending.clear().map_err(io)?;
        for item in self.requests.iter() {
            let (key, bytes) = item.map_err(io)?;
            let request = decode(&key, &bytes)?;
            if request.deadline().is_some() {
                self.pending.insert(key, &deadline(&request)).map_err(io)?;
            }
        }
        self.meta
            .insert(PENDING_INDEXED_KEY, &[] as &[u8])
            .map_err(io)?;
        Ok(())
    }

    /// Appends audit records as if the clock read `now`. For filling a store with a history
    /// (benchmarks, migrations); the daemon always appends at the real time.
    pub fn append_audit_at(
        &self,
        events: &[AuditRecord],
        now: chrono::DateTime<Utc>,
    ) -> Result<Head, StoreError> {
        let head = (&self.meta, &self.audit, &self.index)
            .transaction(|(meta, audit, index)| append(meta, audit, index, events, now))
            .map_err(|e| tx_error(e, "-"))?;
        self.pack_due()?;
        Ok(head)
    }

    /// The serial counter as stored: every serial handed out (or reserved) is at most this,
    /// so a copy of the store that starts above it never repeats one. For `store copy`.
    pub fn serial_counter(&self) -> Result<u64, StoreError> {
        match self.meta.get(SERIAL_KEY).map_err(io)? {
            None => Ok(0),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    key: "serial".into(),
                    reason: "not 8 bytes".into(),
                }),
        }
    }

    /// Every named counter ([`Store::mark`]), by name. For `store copy`.
    pub fn marks(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut marks = Vec::new();
        for item in self.meta.scan_prefix(b"mark:") {
            let (key, value) = item.map_err(io)?;
            let name = String::from_utf8_lossy(&key[b"mark:".len()..]).into_owned();
            if let Ok(bytes) = <[u8; 8]>::try_from(value.as_ref()) {
                marks.push((name, u64::from_be_bytes(bytes)));
            }
        }
        Ok(marks)
    }

    /// Every person's second factor, by user name. For `store copy`.
    pub fn second_factors(&self) -> Result<Vec<(String, crate::SecondFactor)>, StoreError> {
        let mut factors = Vec::new();
        for item in self.mfa.iter() {
            let (key, _) = item.map_err(io)?;
            let user = String::from_utf8_lossy(&key).into_owned();
            if let Some(read) = self.read_second_factor(&user)? {
                factors.push((user, read.factor));
            }
        }
        Ok(factors)
    }

    /// The most memory sled's page cache takes ([`StoreOptions::cache_bytes`]).
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Reserves the next block of serials: moves the counter in `meta` up by at most
    /// [`SERIAL_BLOCK`] and returns the serials between. Never 0; exhausted at `u64::MAX`.
    fn reserve_serials(&self) -> Result<Reserved, StoreError> {
        let mut next = None;
        let value = self
            .meta
            .update_and_fetch(SERIAL_KEY, |old| {
                let last = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                next = last.checked_add(1);
                match next {
                    Some(_) => Some(last.saturating_add(SERIAL_BLOCK).to_be_bytes().to_vec()),
                    None => old.map(<[u8]>::to_vec),
                }
            })
            .map_err(io)?;
        let next = next.ok_or(StoreError::SerialsExhausted)?;
        let bytes = value.ok_or(StoreError::SerialsExhausted)?;
        let last = <[u8; 8]>::try_from(bytes.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt {
                key: "serial".into(),
                reason: "not an 8-byte counter".into(),
            })?;
        Ok(Reserved { next, last })
    }
}

impl Store for SledStore {
    fn create_request(&self, request: &Request, events: &[AuditRecord]) -> Result<(), StoreError> {
        let id = request.id.as_bytes();
        let bytes = encode(request);
        let create = |requests: &TransactionalTree,
                      meta: &TransactionalTree,
                      audit: &TransactionalTree,
                      index: &TransactionalTree| {
            if requests.get(id)?.is_some() {
                return Err(ConflictableTransactionError::Abort(Abort::Exists));
            }
            requests.insert(id, bytes.as_slice())?;
            append(meta, audit, index, events, Utc::now())?;
            Ok(())
        };
        // The deadline index joins the transaction only when the request goes into it.
        if request.deadline().is_some() {
            (
                &self.requests,
                &self.meta,
                &self.audit,
                &self.index,
                &self.pending,
            )
                .transaction(|(requests, meta, audit, index, pending)| {
                    create(requests, meta, audit, index)?;
                    pending.insert(id, &deadline(request))?;
                    Ok(())
                })
        } else {
            (&self.requests, &self.meta, &self.audit, &self.index)
                .transaction(|(requests, meta, audit, index)| create(requests, meta, audit, index))
        }
        .map_err(|e| tx_error(e, &request.id))?;
        self.pack_due()
    }

    fn request(&self, id: &str) -> Result<Option<Versioned>, StoreError> {
        match self.requests.get(id.as_bytes()).map_err(io)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(Versioned::new(
                decode(id.as_bytes(), &bytes)?,
                bytes.to_vec(),
            ))),
        }
    }

    fn requests(&self) -> Result<Vec<Request>, StoreError> {
        let mut all = self
            .requests
            .iter()
            .map(|item| {
                let (key, bytes) = item.map_err(io)?;
                decode(&key, &bytes)
            })
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    fn due(&self, now: chrono::DateTime<Utc>) -> Result<Vec<Request>, StoreError> {
        let now_micros = now.timestamp_micros();
        let mut due = Vec::new();
        for item in self.pending.iter() {
            let (key, value) = item.map_err(io)?;
            // An unreadable deadline is read from the request itself.
            let at = <[u8; 8]>::try_from(value.as_ref()).map_or(i64::MIN, i64::from_be_bytes);
            if at > now_micros {
                continue;
            }
            if let Some(bytes) = self.requests.get(&key).map_err(io)? {
                let request = decode(&key, &bytes)?;
                if request.deadline().is_some_and(|d| now >= d) {
                    due.push(request);
                }
            }
        }
        Ok(due)
    }

    fn replace_request(
        &self,
        current: &Versioned,
        next: &Request,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError> {
        let id = current.request.id.as_str();
        let bytes = encode(next);
        let swap = |requests: &TransactionalTree,
                    meta: &TransactionalTree,
                    audit: &TransactionalTree,
                    index: &TransactionalTree| {
            match requests.get(id.as_bytes())? {
                None => return Err(ConflictableTransactionError::Abort(Abort::Missing)),
                Some(stored) if stored.as_ref() != current.token() => {
                    return Err(ConflictableTransactionError::Abort(Abort::Conflict));
                }
                Some(_) => {}
            }
            requests.insert(id.as_bytes(), bytes.as_slice())?;
            append(meta, audit, index, events, Utc::now())?;
            Ok(())
        };
        // The token is the stored record, so `current` says whether it is in the deadline index.
        let was_pending = current.request.deadline().is_some();
        let is_pending = next.deadline().is_some();
        let outcome = if was_pending || is_pending {
            (
                &self.requests,
                &self.meta,
                &self.audit,
                &self.index,
                &self.pending,
            )
                .transaction(|(requests, meta, audit, index, pending)| {
                    swap(requests, meta, audit, index)?;
                    if is_pending {
                        pending.insert(id.as_bytes(), &deadline(next))?;
                    } else {
                        pending.remove(id.as_bytes())?;
                    }
                    Ok(())
                })
        } else {
            (&self.requests, &self.meta, &self.audit, &self.index)
                .transaction(|(requests, meta, audit, index)| swap(requests, meta, audit, index))
        };
        match outcome {
            Ok(()) => {
                self.pack_due()?;
                Ok(Swap::Done)
            }
            Err(TransactionError::Abort(Abort::Conflict)) => Ok(Swap::Conflict),
            Err(e) => Err(tx_error(e, id)),
        }
    }

    /// The counter in `meta` holds the last serial reserved, not the last one used: serials
    /// are reserved `SERIAL_BLOCK` at a time and handed out from memory. A write of the
    /// counter for every issuance cost sled a log buffer of its own before the issuance's
    /// transaction (sled writes what is pending before a transaction starts): one more
    /// `pwrite`, `sync_file_range` and wake-up of its IO threads per certificate
    /// (docs/bench-notes-cpu.md). The reservation is written to the log before any
    /// certificate with one of its serials is stored, and sled recovers a prefix of its log,
    /// so the flush that makes a certificate durable makes its reservation durable too: after
    /// a restart or a crash the counter starts past every serial that may have left. Serials
    /// left unused at a restart are skipped: they stay unique, not dense (docs/design.md).
    fn next_serial(&self) -> Result<u64, StoreError> {
        // A poisoned lock guards nothing lost: at worst a reserved serial is skipped.
        let mut reserved = self.serials.lock().unwrap_or_else(|e| e.into_inner());
        if reserved.next == 0 || reserved.next > reserved.last {
            *reserved = self.reserve_serials()?;
        }
        let serial = reserved.next;
        // Past u64::MAX nothing is reserved: the next call finds the counter exhausted.
        reserved.next = serial.checked_add(1).unwrap_or(0);
        Ok(serial)
    }

    fn append_audit(&self, events: &[AuditRecord]) -> Result<Head, StoreError> {
        let head = (&self.meta, &self.audit, &self.index)
            .transaction(|(meta, audit, index)| append(meta, audit, index, events, Utc::now()))
            .map_err(|e| tx_error(e, "-"))?;
        self.pack_due()?;
        Ok(head)
    }

    fn audit_head(&self) -> Result<Head, StoreError> {
        match self.meta.get(HEAD_KEY).map_err(io)? {
            None => Ok(Head::genesis()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                key: "audit head".into(),
                reason: e.to_string(),
            }),
        }
    }

    fn scan_audit(
        &self,
        query: &AuditQuery,
        visit: &mut dyn FnMut(&AuditRecord, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.scan_chain(query, visit)
    }

    fn raw_audit(&self, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        self.raw_chain(visit)
    }

    fn krl_state(&self) -> Result<KrlState, StoreError> {
        match self.meta.get(KRL_KEY).map_err(io)? {
            None => Ok(KrlState {
                version: 0,
                generated_at: chrono::DateTime::UNIX_EPOCH,
            }),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                key: "krl".into(),
                reason: e.to_string(),
            }),
        }
    }

    fn bump_krl(&self, now: chrono::DateTime<Utc>) -> Result<KrlState, StoreError> {
        let mut corrupt = false;
        let bytes = self
            .meta
            .update_and_fetch(KRL_KEY, |old| {
                let version = match old.map(serde_json::from_slice::<KrlState>) {
                    None => 0,
                    Some(Ok(state)) => state.version,
                    Some(Err(_)) => {
                        corrupt = true;
                        return old.map(<[u8]>::to_vec);
                    }
                };
                let next = KrlState {
                    version: version + 1,
                    generated_at: now,
                };
                Some(serde_json::to_vec(&next).expect("a krl state serialises"))
            })
            .map_err(io)?;
        if corrupt {
            return Err(StoreError::Corrupt {
                key: "krl".into(),
                reason: "unreadable".into(),
            });
        }
        let bytes = bytes.expect("just written");
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            key: "krl".into(),
            reason: e.to_string(),
        })
    }

    fn mark(&self, name: &str) -> Result<u64, StoreError> {
        let key = format!("mark:{name}");
        Ok(self
            .meta
            .get(key.as_bytes())
            .map_err(io)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    fn set_mark(&self, name: &str, value: u64) -> Result<(), StoreError> {
        let key = format!("mark:{name}");
        self.meta
            .insert(key.as_bytes(), &value.to_be_bytes())
            .map(|_| ())
            .map_err(io)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }

    fn second_factor(&self, user: &str) -> Result<Option<crate::VersionedFactor>, StoreError> {
        self.read_second_factor(user)
    }

    fn swap_second_factor(
        &self,
        user: &str,
        current: Option<&crate::VersionedFactor>,
        next: Option<&crate::SecondFactor>,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError> {
        self.swap_second_factor_of(user, current, next, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Approval, State};
    use chrono::{TimeZone, Utc};

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
            extensions: vec!["permit-pty".into()],
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

    #[test]
    fn a_held_store_is_refused_and_a_closed_one_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        let held = SledStore::open(dir.path()).unwrap();
        let refused = SledStore::open(dir.path())
            .err()
            .expect("a second open is refused");
        assert!(
            refused
                .to_string()
                .contains("another process (a running jitca?) holds its lock"),
            "{refused}"
        );
        drop(held);
        // The lock may outlive the drop for a moment (sled's flusher): opening waits for it.
        for _ in 0..5 {
            drop(SledStore::open(dir.path()).unwrap());
        }
    }

    #[test]
    fn create_is_unique_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.create_request(&request("a"), &[]).unwrap();
            assert!(matches!(
                store.create_request(&request("a"), &[]),
                Err(StoreError::Exists(_))
            ));
            assert_eq!(store.next_serial().unwrap(), 1);
            assert_eq!(store.next_serial().unwrap(), 2);
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.request("a").unwrap().unwrap().request, request("a"));
        // Past the block reserved before: unique, not dense.
        assert_eq!(store.next_serial().unwrap(), SERIAL_BLOCK + 1);
        assert!(store.request("b").unwrap().is_none());
    }

    #[test]
    fn serials_are_unique_across_blocks_and_reopens_and_end_at_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let store = SledStore::open(dir.path()).unwrap();
            for _ in 0..SERIAL_BLOCK + 3 {
                seen.push(store.next_serial().unwrap());
            }
            store.flush().unwrap();
        }
        assert_eq!(seen[0], 1);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "not increasing");
        // The second opening starts past everything the first reserved.
        assert_eq!(seen[SERIAL_BLOCK as usize + 3], 2 * SERIAL_BLOCK + 1);

        let store = SledStore::open(dir.path()).unwrap();
        store
            .meta
            .insert(SERIAL_KEY, &(u64::MAX - 2).to_be_bytes())
            .unwrap();
        *store.serials.lock().unwrap() = Reserved::default();
        assert_eq!(store.next_serial().unwrap(), u64::MAX - 1);
        assert_eq!(store.next_serial().unwrap(), u64::MAX);
        assert!(matches!(
            store.next_serial(),
            Err(StoreError::SerialsExhausted)
        ));
    }

    #[test]
    fn second_open_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        let err = SledStore::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("cannot open the store"), "{err}");
    }

    #[test]
    fn compare_and_swap_changes_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.create_request(&request("a"), &[]).unwrap();
        let seen_by_bob = store.request("a").unwrap().unwrap();
        let seen_by_carol = store.request("a").unwrap().unwrap();
        let mut bob = seen_by_bob.request.clone();
        bob.approvals.push(Approval {
            by: "bob".into(),
            at: bob.created_at,
            mfa: false,
        });
        let mut carol = seen_by_carol.request.clone();
        carol.approvals.push(Approval {
            by: "carol".into(),
            at: carol.created_at,
            mfa: false,
        });
        assert!(matches!(
            store.replace_request(&seen_by_bob, &bob, &[]).unwrap(),
            Swap::Done
        ));
        assert!(matches!(
            store.replace_request(&seen_by_carol, &carol, &[]).unwrap(),
            Swap::Conflict
        ));
        assert_eq!(store.request("a").unwrap().unwrap().request, bob);
    }

    #[test]
    fn newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut old = request("z");
        old.created_at -= chrono::Duration::seconds(10);
        store.create_request(&old, &[]).unwrap();
        store.create_request(&request("a"), &[]).unwrap();
        let ids: Vec<_> = store
            .requests()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a", "z"]);
    }

    fn event(kind: crate::EventKind, actor: &str, host: &str) -> AuditRecord {
        let mut r = AuditRecord::new(kind, actor);
        r.hosts = vec![host.to_string()];
        r
    }

    fn collect(store: &SledStore, q: &AuditQuery) -> Vec<u64> {
        let mut seqs = Vec::new();
        store
            .scan_audit(q, &mut |r, _| {
                seqs.push(r.seq);
                true
            })
            .unwrap();
        seqs
    }

    #[test]
    fn audit_records_go_with_their_change_or_not_at_all() {
        use crate::EventKind::*;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut made = event(Requested, "alice", "web1");
        made.request = Some("a".into());
        store
            .create_request(&request("a"), &[made.clone()])
            .unwrap();
        // A clash appends nothing.
        assert!(store.create_request(&request("a"), &[made]).is_err());
        assert_eq!(store.audit_head().unwrap().seq, 1);
        let seen = store.request("a").unwrap().unwrap();
        let mut next = seen.request.clone();
        next.approvals.push(Approval {
            by: "bob".into(),
            at: next.created_at,
            mfa: false,
        });
        let mut approved = event(Approved, "bob", "web1");
        approved.requester = Some("alice".into());
        approved.serial = Some(9);
        assert!(matches!(
            store
                .replace_request(&seen, &next, &[approved.clone()])
                .unwrap(),
            Swap::Done
        ));
        // A lost race appends nothing.
        assert!(matches!(
            store.replace_request(&seen, &next, &[approved]).unwrap(),
            Swap::Conflict
        ));
        assert_eq!(store.audit_head().unwrap().seq, 2);
        store
            .append_audit(&[event(Refused, "carol", "db1")])
            .unwrap();
        assert_eq!(crate::verify_audit(&store).unwrap().unwrap().seq, 3);

        let q = |f: fn(&mut AuditQuery)| {
            let mut q = AuditQuery::default();
            f(&mut q);
            collect(&store, &q)
        };
        assert_eq!(q(|_| {}), [1, 2, 3]);
        assert_eq!(q(|q| q.user = Some("alice".into())), [1, 2]);
        assert_eq!(q(|q| q.user = Some("bob".into())), [2]);
        assert_eq!(q(|q| q.host = Some("db1".into())), [3]);
        assert_eq!(q(|q| q.serial = Some(9)), [2]);
        assert_eq!(q(|q| q.request = Some("a".into())), [1]);
        assert_eq!(q(|q| q.after_seq = Some(1)), [2, 3]);
        assert_eq!(
            q(|q| {
                q.user = Some("alice".into());
                q.host = Some("db1".into())
            }),
            Vec::<u64>::new()
        );
        assert_eq!(
            q(|q| q.since = Some(Utc::now() + chrono::Duration::hours(1))),
            Vec::<u64>::new()
        );
        assert_eq!(
            q(|q| q.until = Some(Utc::now() - chrono::Duration::hours(1))),
            Vec::<u64>::new()
        );
        assert_eq!(
            q(|q| q.since = Some(Utc::now() - chrono::Duration::hours(1))),
            [1, 2, 3]
        );
    }

    #[test]
    fn the_pending_index_follows_every_change_and_is_built_for_older_stores() {
        let dir = tempfile::tempdir().unwrap();
        // Long after the test requests' deadline.
        let later = request("a").lapses_at + chrono::Duration::days(1);
        let ids = |store: &SledStore| {
            let mut ids: Vec<String> = store
                .due(later)
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect();
            ids.sort();
            ids
        };
        {
            let store = SledStore::open(dir.path()).unwrap();
            for id in ["a", "b", "c"] {
                store.create_request(&request(id), &[]).unwrap();
            }
            let mut decided = request("d");
            decided.state = State::Lapsed {
                at: decided.lapses_at,
            };
            store.create_request(&decided, &[]).unwrap();
            assert_eq!(ids(&store), ["a", "b", "c"]);
            // Still pending after an approval; out of the index once decided.
            let current = store.request("a").unwrap().unwrap();
            let mut approved = current.request.clone();
            approved.approvals.push(Approval {
                by: "bob".into(),
                at: approved.created_at,
                mfa: false,
            });
            assert!(matches!(
                store.replace_request(&current, &approved, &[]).unwrap(),
                Swap::Done
            ));
            let current = store.request("b").unwrap().unwrap();
            let mut lapsed = current.request.clone();
            lapsed.state = State::Lapsed {
                at: lapsed.lapses_at,
            };
            store.replace_request(&current, &lapsed, &[]).unwrap();
            assert_eq!(ids(&store), ["a", "c"]);
            assert_eq!(ids(&store).len(), store.pending.len());
            // A store from before the index: no mark, no index.
            store.meta.remove(PENDING_INDEXED_KEY).unwrap();
            store.pending.clear().unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(ids(&store), ["a", "c"]);
        assert_eq!(store.pending.len(), 2);
        // Not yet due: not read.
        let before = request("a").lapses_at - chrono::Duration::seconds(1);
        assert!(store.due(before).unwrap().is_empty());
        assert_eq!(store.due(request("a").lapses_at).unwrap().len(), 2);
    }

    #[test]
    fn tampering_with_the_stored_chain_is_found() {
        use crate::EventKind::*;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for who in ["a", "b", "c", "d"] {
            store.append_audit(&[event(Refused, who, "web1")]).unwrap();
        }
        let line = store.audit.get(2u64.to_be_bytes()).unwrap().unwrap();
        let changed = String::from_utf8(line.to_vec())
            .unwrap()
            .replace("\"actor\":\"b\"", "\"actor\":\"x\"");
        store
            .audit
            .insert(2u64.to_be_bytes(), changed.as_bytes())
            .unwrap();
        let broken = crate::verify_audit(&store).unwrap().unwrap_err();
        assert_eq!(broken.seq, 2, "{broken}");
        store.audit.insert(2u64.to_be_bytes(), line).unwrap();
        assert!(crate::verify_audit(&store).unwrap().is_ok());
        store.audit.remove(4u64.to_be_bytes()).unwrap();
        let cut = crate::verify_audit(&store).unwrap().unwrap_err();
        assert_eq!(cut.seq, 4, "{cut}");
    }
}
