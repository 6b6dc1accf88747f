//! The audit chain in the sled store: a packed part and a tail.
//!
//! A record is appended on its own, in the transaction of the change it records: its line in
//! the `audit` tree under its seq, and one `audit_index` entry per user, host, request and
//! serial it names (the tail; a store written before packing existed is all tail). Each full
//! [`BLOCK`] of the tail is then packed in one transaction of its own: its lines, byte for byte,
//! go into `audit_frames` as zstd frames of [`FRAME`] lines each (keyed by the frame's first
//! seq), its index entries become four postings values in `audit_postings` (one per kind of
//! name, keyed by kind and the block's first seq: each name in the block with the offsets of
//! its records), and its tail entries are removed. sled spends a large part of a small entry's
//! size on the entry itself (a store of one line and four index entries per record took 4.3
//! times the lines' size), so few entries of many records each are what makes a year of audit
//! fit (docs/benchmarks.md). The lines are unchanged, so the chain's hashes are too.
//!
//! A query reads the postings of the blocks its range covers and decompresses only the frames
//! that hold a match; a scan by time decompresses the frames of its range. Packing never runs
//! while a query or verification of this process reads the chain (a try-lock: an append that
//! finds a reader leaves the block for a later append), so a reader never sees a block
//! half-moved.

use std::collections::BTreeMap;
use std::sync::TryLockError;

use chrono::{DateTime, Utc};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::StoreError;
use crate::audit::{self, AuditQuery, AuditRecord, Head};
use crate::sled_store::{Abort, HEAD_KEY, SledStore, TxResult, io, tx_error};

/// Records per packed block: the unit of the postings and of one packing transaction.
pub(crate) const BLOCK: u64 = 1024;
/// Records per zstd frame: a query decompresses whole frames, so a small frame reads little
/// beside its match; a large one compresses better. With 8 lines of about 390 bytes a store
/// takes about 215 bytes per event in all (docs/benchmarks.md).
pub(crate) const FRAME: u64 = 8;
/// The last packed seq (8 bytes big-endian; absent: nothing packed).
const PACKED_KEY: &[u8] = b"audit_packed";
/// The first byte of every frame and postings value: their layout's version.
const FORMAT: u8 = 1;
/// zstd's level: its default, fast to write (other levels were not measured).
const LEVEL: i32 = 3;
/// Threads reading the packed chain for one query, whatever the host has: on the 2-core
/// machine measured, two made a query 30% faster and three were no faster than two
/// (docs/benchmarks.md).
const READERS: u64 = 2;
/// The kinds of names indexed: user, host, request id, serial.
const TAGS: [u8; 4] = [b'u', b'h', b'r', b's'];

pub(crate) fn decode_record(seq: u64, bytes: &[u8]) -> Result<AuditRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: format!("audit record {seq}"),
        reason: e.to_string(),
    })
}

/// The names a record is indexed under, as (tag, name): users, hosts, its request, and its
/// serial (8 bytes big-endian).
fn terms(record: &AuditRecord) -> Vec<(u8, Vec<u8>)> {
    let mut terms: Vec<(u8, Vec<u8>)> = record
        .users()
        .map(|u| (b'u', u.as_bytes().to_vec()))
        .collect();
    terms.extend(record.hosts.iter().map(|h| (b'h', h.as_bytes().to_vec())));
    if let Some(id) = &record.request {
        terms.push((b'r', id.as_bytes().to_vec()));
    }
    if let Some(serial) = record.serial {
        terms.push((b's', serial.to_be_bytes().to_vec()));
    }
    terms
}

/// A tail index key's prefix: `u`/`h`/`r` + name + NUL, and `s` + serial. Names never hold
/// NUL (they are validated), so one name is never a prefix of another's keys.
fn index_prefix_of(tag: u8, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 10);
    k.push(tag);
    k.extend_from_slice(name);
    if tag != b's' {
        k.push(0);
    }
    k
}

/// Tail index keys of a sealed record: each term's prefix + seq.
fn index_keys(record: &AuditRecord) -> Vec<Vec<u8>> {
    terms(record)
        .into_iter()
        .map(|(tag, name)| {
            let mut k = index_prefix_of(tag, &name);
            k.extend_from_slice(&record.seq.to_be_bytes());
            k
        })
        .collect()
}

/// The term a query looks up, if any filter has one (most selective first).
fn query_term(query: &AuditQuery) -> Option<(u8, Vec<u8>)> {
    if let Some(id) = &query.request {
        return Some((b'r', id.as_bytes().to_vec()));
    }
    if let Some(serial) = query.serial {
        return Some((b's', serial.to_be_bytes().to_vec()));
    }
    if let Some(user) = &query.user {
        return Some((b'u', user.as_bytes().to_vec()));
    }
    query.host.as_deref().map(|h| (b'h', h.as_bytes().to_vec()))
}

fn read_head(meta: &TransactionalTree) -> TxResult<Head> {
    match meta.get(HEAD_KEY)? {
        None => Ok(Head::genesis()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|_| ConflictableTransactionError::Abort(Abort::Corrupt("audit head".into()))),
    }
}

/// Appends `events` to the chain's tail inside a transaction, at the clock reading `now`
/// (never earlier than the chain's last record).
pub(crate) fn append(
    meta: &TransactionalTree,
    audit: &TransactionalTree,
    index: &TransactionalTree,
    events: &[AuditRecord],
    now: DateTime<Utc>,
) -> TxResult<Head> {
    let mut head = read_head(meta)?;
    for event in events {
        let (line, next) = audit::seal(&head, event.clone(), now);
        let mut sealed = event.clone();
        sealed.seq = next.seq;
        for key in index_keys(&sealed) {
            index.insert(key, &[] as &[u8])?;
        }
        audit.insert(&next.seq.to_be_bytes(), line)?;
        head = next;
    }
    if !events.is_empty() {
        meta.insert(
            HEAD_KEY,
            serde_json::to_vec(&head).expect("a head serialises"),
        )?;
    }
    Ok(head)
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

fn corrupt(key: String, reason: &str) -> StoreError {
    StoreError::Corrupt {
        key,
        reason: reason.to_string(),
    }
}

/// A packed value: the format byte, then the text as one zstd frame (whose header holds the
/// text's length). One compressor serves a whole block: making a zstd context for each small
/// frame cost more than compressing it.
fn pack_value(zstd: &mut zstd::bulk::Compressor<'_>, text: &[u8]) -> Vec<u8> {
    let mut value = vec![FORMAT];
    value.extend(zstd.compress(text).expect("compressing to memory"));
    value
}

/// The most text one packed value may claim: more is a damaged length, not a frame of 8 lines.
const MAX_TEXT: usize = 256 << 20;

/// Decompresses packed values with one zstd context: a query may open thousands of small
/// values, and a context made for each took most of its time.
struct Unpacker(zstd::bulk::Decompressor<'static>);

impl Unpacker {
    fn new() -> Result<Self, StoreError> {
        zstd::bulk::Decompressor::new()
            .map(Self)
            .map_err(|e| StoreError::Io(format!("cannot start zstd: {e}")))
    }

    /// The text of a value made by [`pack_value`]; `what` names it in an error.
    fn open(&mut self, value: &[u8], what: impl Fn() -> String) -> Result<Vec<u8>, StoreError> {
        let mut text = Vec::new();
        self.open_into(value, &mut text, what)?;
        Ok(text)
    }

    /// [`Unpacker::open`] into `text` (cleared first), reusing its allocation.
    fn open_into(
        &mut self,
        value: &[u8],
        text: &mut Vec<u8>,
        what: impl Fn() -> String,
    ) -> Result<(), StoreError> {
        let bad = |reason: &str| corrupt(what(), reason);
        let (&format, rest) = value.split_first().ok_or_else(|| bad("empty"))?;
        if format != FORMAT {
            return Err(bad("unknown format"));
        }
        let len = match zstd::zstd_safe::get_frame_content_size(rest) {
            Ok(Some(len)) if len <= MAX_TEXT as u64 => len as usize,
            _ => return Err(bad("unreadable")),
        };
        text.clear();
        text.reserve(len);
        let written = self
            .0
            .decompress_to_buffer(rest, text)
            .map_err(|_| bad("unreadable"))?;
        if written != len || text.len() != len {
            return Err(bad("unreadable"));
        }
        Ok(())
    }
}

/// A frame's text: its lines joined by `\n` (a JSON line never holds a raw newline).
fn frame_text(lines: &[sled::IVec]) -> Vec<u8> {
    lines.join(&b'\n')
}

/// A postings value's text: each name (sorted) with the offsets in its block of the records
/// naming it: `u16` name length, name, `u16` count, `u16` offsets, all little-endian.
fn postings_text(postings: &BTreeMap<Vec<u8>, Vec<u16>>) -> Vec<u8> {
    let mut raw = Vec::new();
    for (name, offsets) in postings {
        let len = u16::try_from(name.len()).expect("names are short");
        raw.extend_from_slice(&len.to_le_bytes());
        raw.extend_from_slice(name);
        let count = u16::try_from(offsets.len()).expect("a block is under 65536 records");
        raw.extend_from_slice(&count.to_le_bytes());
        for offset in offsets {
            raw.extend_from_slice(&offset.to_le_bytes());
        }
    }
    raw
}

/// The offsets that `name` has in a postings value.
fn lookup_postings(
    unpacker: &mut Unpacker,
    block: u64,
    value: &[u8],
    name: &[u8],
) -> Result<Vec<u16>, StoreError> {
    let what = || format!("audit postings of block {block}");
    let raw = unpacker.open(value, what)?;
    let bad = || corrupt(what(), "unreadable");
    let mut rest = raw.as_slice();
    let mut take = |n: usize| -> Result<&[u8], StoreError> {
        if rest.len() < n {
            return Err(bad());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let u16_at = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) as usize;
    loop {
        let Ok(len) = take(2).map(u16_at) else {
            return Ok(Vec::new());
        };
        let this = take(len)? == name;
        let count = u16_at(take(2)?);
        let offsets = take(2 * count)?;
        if this {
            return Ok(offsets
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect());
        }
    }
}

/// The lines a query's reader found in one block, in one buffer: handing back one buffer
/// per block, and decoding on the thread that visits, keeps the readers' allocations on their
/// own threads (a record decoded on one thread and freed on another cost more than decoding).
#[derive(Default)]
struct Found {
    text: Vec<u8>,
    /// Each line's seq and where it ends in `text` (it starts where the one before ends).
    lines: Vec<(u64, usize)>,
}

impl Found {
    fn push(&mut self, seq: u64, line: &[u8]) {
        self.text.extend_from_slice(line);
        self.lines.push((seq, self.text.len()));
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0;
        self.lines.iter().map(move |&(seq, end)| {
            let line = &self.text[start..end];
            start = end;
            (seq, line)
        })
    }
}

/// The first seq of the packed block holding `seq`.
fn block_of(seq: u64) -> u64 {
    (seq - 1) / BLOCK * BLOCK + 1
}

/// The last frame read, kept so that the matches of one frame decompress it once.
struct FrameCache {
    unpacker: Unpacker,
    first: u64,
    /// The frame's decompressed text and where each of its lines starts.
    text: Vec<u8>,
    starts: Vec<usize>,
}

impl FrameCache {
    fn new() -> Result<Self, StoreError> {
        Ok(Self {
            unpacker: Unpacker::new()?,
            first: 0,
            text: Vec::new(),
            starts: Vec::new(),
        })
    }

    fn line(&self, i: usize) -> &[u8] {
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.text.len(), |next| next - 1);
        &self.text[self.starts[i]..end]
    }

    fn load(&mut self, first: u64, value: &[u8]) -> Result<(), StoreError> {
        // Forget the frame before reading another: a failed read leaves nothing held.
        self.starts.clear();
        self.unpacker
            .open_into(value, &mut self.text, || format!("audit frame {first}"))?;
        self.first = first;
        self.starts.push(0);
        self.starts
            .extend(memchr::memchr_iter(b'\n', &self.text).map(|i| i + 1));
        Ok(())
    }

    fn holds(&self, seq: u64) -> bool {
        !self.starts.is_empty() && seq >= self.first && seq - self.first < self.starts.len() as u64
    }
}

impl SledStore {
    /// The last packed seq (0: nothing packed).
    fn packed(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(PACKED_KEY)
            .map_err(io)?
            .and_then(|b| be_u64(&b))
            .unwrap_or(0))
    }

    /// Packs the oldest full block of the tail, unless a reader of this process is reading
    /// the chain (then a later append does it). Called after each append's transaction:
    /// packing is a transaction of its own, and one block at most, so an append never waits
    /// for more than one block. A backlog (a store written before packing existed) is packed
    /// by [`SledStore::pack_backlog`].
    pub(crate) fn pack_due(&self) -> Result<(), StoreError> {
        let _packing = match self.packing.try_write() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(()),
        };
        self.pack_next()?;
        Ok(())
    }

    /// Packs every full block of the tail, one transaction each, letting readers in between
    /// blocks; `progress` hears the last packed seq and the chain's length after each block.
    /// Returns how many blocks it packed. The daemon runs it in the background at start, so
    /// a store written before packing existed answers at once and is packed meanwhile; every
    /// query and `audit verify` give the same answer at any point of it.
    pub fn pack_backlog(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<u64, StoreError> {
        let mut blocks = 0;
        loop {
            let packed = {
                let _packing = self.packing.write().unwrap_or_else(|p| p.into_inner());
                match self.pack_next()? {
                    Some(packed) => packed,
                    None => return Ok(blocks),
                }
            };
            blocks += 1;
            progress(packed, self.audit_head_now()?.seq);
        }
    }

    /// Packs the block after the last packed one if it is full; the new last packed seq.
    /// The caller holds the packing lock.
    fn pack_next(&self) -> Result<Option<u64>, StoreError> {
        let packed = self.packed()?;
        if self.audit_head_now()?.seq.saturating_sub(packed) < BLOCK {
            return Ok(None);
        }
        Ok(self.pack_block(packed + 1)?.then_some(packed + BLOCK))
    }

    fn audit_head_now(&self) -> Result<Head, StoreError> {
        crate::Store::audit_head(self)
    }

    /// Packs the block starting at `first`. False if the tail there is not a whole block of
    /// readable records (a damaged log stays as it is, for verification to name).
    fn pack_block(&self, first: u64) -> Result<bool, StoreError> {
        let last = first + BLOCK - 1;
        let mut lines = Vec::with_capacity(BLOCK as usize);
        let mut records = Vec::with_capacity(BLOCK as usize);
        for item in self.audit.range(first.to_be_bytes()..=last.to_be_bytes()) {
            let (key, line) = item.map_err(io)?;
            let seq = first + lines.len() as u64;
            if be_u64(&key) != Some(seq) {
                return Ok(false);
            }
            match audit::open(seq, &line) {
                Ok(record) if record.seq == seq => records.push(record),
                _ => return Ok(false),
            }
            lines.push(line);
        }
        if lines.len() as u64 != BLOCK {
            return Ok(false);
        }
        let mut postings: [BTreeMap<Vec<u8>, Vec<u16>>; 4] = Default::default();
        let mut stale = Vec::new();
        for (offset, record) in records.iter().enumerate() {
            for (tag, name) in terms(record) {
                let kind = TAGS.iter().position(|t| *t == tag).expect("a known tag");
                let offsets = postings[kind].entry(name).or_default();
                // A record naming one host twice is listed once.
                if offsets.last() != Some(&(offset as u16)) {
                    offsets.push(offset as u16);
                }
            }
            stale.extend(index_keys(record));
        }
        let mut zstd = zstd::bulk::Compressor::new(LEVEL)
            .map_err(|e| StoreError::Io(format!("cannot start zstd: {e}")))?;
        let frames: Vec<(u64, Vec<u8>)> = lines
            .chunks(FRAME as usize)
            .enumerate()
            .map(|(i, chunk)| {
                let key = first + i as u64 * FRAME;
                (key, pack_value(&mut zstd, &frame_text(chunk)))
            })
            .collect();
        let postings: Vec<(Vec<u8>, Vec<u8>)> = TAGS
            .iter()
            .zip(&postings)
            .map(|(tag, p)| {
                let mut key = vec![*tag];
                key.extend_from_slice(&first.to_be_bytes());
                (key, pack_value(&mut zstd, &postings_text(p)))
            })
            .collect();
        let outcome = (
            &self.meta,
            &self.audit,
            &self.index,
            &self.frames,
            &self.postings,
        )
            .transaction(|(meta, audit, index, frame_tree, posting_tree)| {
                let packed = meta.get(PACKED_KEY)?.and_then(|b| be_u64(&b)).unwrap_or(0);
                if packed + 1 != first {
                    return Err(ConflictableTransactionError::Abort(Abort::Conflict));
                }
                for (key, value) in &frames {
                    frame_tree.insert(&key.to_be_bytes(), value.as_slice())?;
                }
                for (key, value) in &postings {
                    posting_tree.insert(key.as_slice(), value.as_slice())?;
                }
                for seq in first..=last {
                    audit.remove(&seq.to_be_bytes())?;
                }
                for key in &stale {
                    index.remove(key.as_slice())?;
                }
                meta.insert(PACKED_KEY, &last.to_be_bytes())?;
                Ok(())
            });
        match outcome {
            Ok(()) => Ok(true),
            Err(sled::transaction::TransactionError::Abort(Abort::Conflict)) => Ok(false),
            Err(e) => Err(tx_error(e, "-")),
        }
    }

    /// Reads the packed frame holding `seq` into `cache` (unless it is there); false if no
    /// frame holds it.
    fn frame_for(&self, seq: u64, cache: &mut FrameCache) -> Result<bool, StoreError> {
        if cache.holds(seq) {
            return Ok(true);
        }
        // Frames start every FRAME seqs from 1, so the key is known: a point read, which sled
        // answers much faster than the backward range a damaged layout would need.
        let first = (seq - 1) / FRAME * FRAME + 1;
        let (first, value) = match self.frames.get(first.to_be_bytes()).map_err(io)? {
            Some(value) => (first, value),
            None => {
                let Some(item) = self.frames.range(..=seq.to_be_bytes()).next_back() else {
                    return Ok(false);
                };
                let (key, value) = item.map_err(io)?;
                let first =
                    be_u64(&key).ok_or_else(|| corrupt("audit frame key".into(), "not a seq"))?;
                (first, value)
            }
        };
        cache.load(first, &value)?;
        Ok(cache.holds(seq))
    }

    fn record_at(
        &self,
        seq: u64,
        packed: u64,
        cache: &mut FrameCache,
    ) -> Result<Option<AuditRecord>, StoreError> {
        if seq <= packed {
            if !self.frame_for(seq, cache)? {
                return Ok(None);
            }
            return decode_record(seq, cache.line((seq - cache.first) as usize)).map(Some);
        }
        match self.audit.get(seq.to_be_bytes()).map_err(io)? {
            None => Ok(None),
            Some(bytes) => decode_record(seq, &bytes).map(Some),
        }
    }

    /// The smallest seq in `lo..=hi` whose record's time is at or after `t`, or `hi + 1`.
    /// Times never decrease along the chain, so this is a binary search.
    fn first_at_or_after(
        &self,
        t: DateTime<Utc>,
        mut lo: u64,
        hi: u64,
        packed: u64,
        cache: &mut FrameCache,
    ) -> Result<u64, StoreError> {
        let mut end = hi + 1;
        while lo < end {
            let mid = lo + (end - lo) / 2;
            match self.record_at(mid, packed, cache)? {
                Some(r) if r.time >= t => end = mid,
                Some(_) => lo = mid + 1,
                // A hole (only in a damaged log): look further on.
                None => lo = mid + 1,
            }
        }
        Ok(lo)
    }

    /// [`crate::Store::scan_audit`]: the packed blocks, then the tail.
    pub(crate) fn scan_chain(
        &self,
        query: &AuditQuery,
        visit: &mut dyn FnMut(&AuditRecord, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let _reading = self.packing.read().unwrap_or_else(|e| e.into_inner());
        let head = self.audit_head_now()?;
        let packed = self.packed()?;
        let mut cache = FrameCache::new()?;
        let mut lo = query.after_seq.map_or(1, |s| s.saturating_add(1));
        let mut hi = head.seq;
        if let Some(since) = query.since {
            lo = self.first_at_or_after(since, lo, hi, packed, &mut cache)?;
        }
        if let Some(until) = query.until {
            hi = self
                .first_at_or_after(until, lo, hi, packed, &mut cache)?
                .saturating_sub(1);
        }
        if lo > hi {
            return Ok(());
        }
        let tail_lo = lo.max(packed + 1);
        let term = query_term(query);
        if lo <= packed && !self.scan_packed(query, term.as_ref(), lo, hi.min(packed), visit)? {
            return Ok(());
        }
        if tail_lo > hi {
            return Ok(());
        }
        let mut emit = |seq: u64, line: &[u8]| -> Result<bool, StoreError> {
            let record = decode_record(seq, line)?;
            Ok(!query.matches(&record) || visit(&record, line))
        };
        match term {
            Some((tag, name)) => {
                let prefix = index_prefix_of(tag, &name);
                let key = |seq: u64| [prefix.as_slice(), &seq.to_be_bytes()].concat();
                for item in self.index.range(key(tail_lo)..=key(hi)) {
                    let (k, _) = item.map_err(io)?;
                    let seq = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8 bytes"));
                    let Some(line) = self.audit.get(seq.to_be_bytes()).map_err(io)? else {
                        continue;
                    };
                    if !emit(seq, &line)? {
                        break;
                    }
                }
            }
            None => {
                for item in self.audit.range(tail_lo.to_be_bytes()..=hi.to_be_bytes()) {
                    let (k, line) = item.map_err(io)?;
                    let seq = be_u64(&k).ok_or_else(|| corrupt("audit key".into(), "not a seq"))?;
                    if !emit(seq, &line)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The packed records in `lo..=hi` (all packed) that match `query`, visited in seq order;
    /// false if `visit` asked to stop. With a `term`, only the frames its postings name are
    /// read. The reading and decompressing run on [`READERS`] threads, each taking
    /// every [`READERS`]th block and handing its matches back in order, at most two blocks
    /// ahead (a block's matches are at most its 1,024 lines, about 400 KB): a query over a
    /// year reads tens of thousands of frames, each a sled read and a decompression, and one
    /// thread doing all of it was the whole of the query's time (docs/benchmarks.md).
    fn scan_packed(
        &self,
        query: &AuditQuery,
        term: Option<&(u8, Vec<u8>)>,
        lo: u64,
        hi: u64,
        visit: &mut dyn FnMut(&AuditRecord, &[u8]) -> bool,
    ) -> Result<bool, StoreError> {
        type Chunk = Result<Found, StoreError>;
        let first_block = block_of(lo);
        let chunks = (hi - first_block) / BLOCK + 1;
        // Chunk `i` is the block `first_block + i * BLOCK` clipped to `lo..=hi`.
        let range_of = |i: u64| {
            let start = first_block + i * BLOCK;
            (start.max(lo), (start + BLOCK - 1).min(hi))
        };
        let scanned = std::thread::scope(|s| {
            let mut readers = Vec::new();
            for r in 0..READERS.min(chunks) {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(1);
                s.spawn(move || {
                    let mut cache = match FrameCache::new() {
                        Ok(cache) => cache,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let mut i = r;
                    while i < chunks {
                        let (a, b) = range_of(i);
                        let mut found = Found::default();
                        let read = match term {
                            Some((tag, name)) => {
                                self.read_postings_range(*tag, name, a, b, &mut cache, &mut found)
                            }
                            None => self.read_frames_range(a, b, &mut cache, &mut found),
                        };
                        let failed = read.is_err();
                        if tx.send(read.map(|()| found)).is_err() || failed {
                            return;
                        }
                        i += READERS;
                    }
                });
                readers.push(rx);
            }
            for i in 0..chunks {
                let chunk = readers[(i % READERS) as usize]
                    .recv()
                    .map_err(|_| StoreError::Io("an audit reader thread stopped".into()))??;
                for (seq, line) in chunk.iter() {
                    let record = decode_record(seq, line)?;
                    if query.matches(&record) && !visit(&record, line) {
                        // Dropping the receivers stops the readers at their next chunk.
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        });
        // The readers are gone; what they freed stays in their allocator arenas.
        if chunks > 1 {
            crate::release_free_memory();
        }
        scanned
    }

    /// Into `found`: the lines of `a..=b` (packed) whose postings under `tag` name `name`.
    fn read_postings_range(
        &self,
        tag: u8,
        name: &[u8],
        a: u64,
        b: u64,
        cache: &mut FrameCache,
        found: &mut Found,
    ) -> Result<(), StoreError> {
        let key = |seq: u64| [&[tag][..], &seq.to_be_bytes()].concat();
        for item in self.postings.range(key(block_of(a))..=key(b)) {
            let (k, value) = item.map_err(io)?;
            let block =
                be_u64(&k[1..]).ok_or_else(|| corrupt("audit postings key".into(), "not a seq"))?;
            for offset in lookup_postings(&mut cache.unpacker, block, &value, name)? {
                let seq = block + u64::from(offset);
                if seq < a || seq > b || !self.frame_for(seq, cache)? {
                    continue;
                }
                found.push(seq, cache.line((seq - cache.first) as usize));
            }
        }
        Ok(())
    }

    /// Into `found`: the lines of `a..=b` (packed).
    fn read_frames_range(
        &self,
        a: u64,
        b: u64,
        cache: &mut FrameCache,
        found: &mut Found,
    ) -> Result<(), StoreError> {
        let mut seq = a;
        while seq <= b {
            // A seq no frame holds is a hole (only in a damaged log): look further on.
            if self.frame_for(seq, cache)? {
                found.push(seq, cache.line((seq - cache.first) as usize));
            }
            seq += 1;
        }
        Ok(())
    }

    /// [`crate::Store::raw_audit`]: every packed line under the seq its place gives it, then
    /// the tail's lines under the seq they are stored under.
    pub(crate) fn raw_chain(
        &self,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let _reading = self.packing.read().unwrap_or_else(|e| e.into_inner());
        let mut cache = FrameCache::new()?;
        for item in self.frames.iter() {
            let (key, value) = item.map_err(io)?;
            // A key that is not 8 bytes cannot be a seq: its lines go as seq 0, so the
            // verifier names them.
            let first = be_u64(&key).unwrap_or(0);
            cache.load(first, &value)?;
            for i in 0..cache.starts.len() {
                let seq = if first == 0 { 0 } else { first + i as u64 };
                if !visit(seq, cache.line(i)) {
                    return Ok(());
                }
            }
        }
        for item in self.audit.iter() {
            let (k, line) = item.map_err(io)?;
            let seq = be_u64(&k).unwrap_or(0);
            if !visit(seq, &line) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, Store, StoreOptions, verify_audit};
    use chrono::TimeZone;

    fn record(i: u64) -> AuditRecord {
        let mut r = AuditRecord::new(EventKind::Issued, format!("u{}", i % 7));
        r.requester = Some(format!("u{}", i % 5));
        r.hosts = vec![format!("h{}", i % 11)];
        r.request = Some(format!("r{}", i / 4));
        r.serial = Some(i + 1);
        r
    }

    fn at(i: u64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + i as i64, 0).unwrap()
    }

    /// Appends `count` records the way the release before packing did: tail only.
    fn append_unpacked(store: &SledStore, count: u64) {
        for i in 0..count {
            (&store.meta, &store.audit, &store.index)
                .transaction(|(meta, audit, index)| append(meta, audit, index, &[record(i)], at(i)))
                .map_err(|e| tx_error(e, "-"))
                .unwrap();
        }
    }

    fn every_line(store: &SledStore) -> Vec<(u64, Vec<u8>)> {
        let mut lines = Vec::new();
        store
            .raw_audit(&mut |seq, line| {
                lines.push((seq, line.to_vec()));
                true
            })
            .unwrap();
        lines
    }

    fn by_user(store: &SledStore, user: &str) -> Vec<u64> {
        let query = AuditQuery {
            user: Some(user.into()),
            ..Default::default()
        };
        let mut seqs = Vec::new();
        store
            .scan_audit(&query, &mut |r, _| {
                seqs.push(r.seq);
                true
            })
            .unwrap();
        seqs
    }

    #[test]
    fn a_store_written_before_packing_reads_as_it_is_and_verifies_the_same_once_packed() {
        let dir = tempfile::tempdir().unwrap();
        let (head, lines, alice) = {
            let store = SledStore::open(dir.path()).unwrap();
            append_unpacked(&store, 2 * BLOCK + 100);
            assert_eq!(store.packed().unwrap(), 0);
            assert_eq!(store.audit.len() as u64, 2 * BLOCK + 100);
            let head = verify_audit(&store).unwrap().unwrap();
            store.flush().unwrap();
            (head, every_line(&store), by_user(&store, "u3"))
        };
        assert_eq!(head.seq, 2 * BLOCK + 100);
        let store = SledStore::open(dir.path()).unwrap();
        // Opening writes nothing: the old layout is read as it is.
        assert_eq!(store.packed().unwrap(), 0);
        assert_eq!(store.audit.len() as u64, 2 * BLOCK + 100);
        assert_eq!(verify_audit(&store).unwrap().unwrap(), head);
        assert_eq!(by_user(&store, "u3"), alice);
        let mut heard = Vec::new();
        let blocks = store
            .pack_backlog(&mut |packed, length| heard.push((packed, length)))
            .unwrap();
        assert_eq!(blocks, 2);
        assert_eq!(
            heard,
            [(BLOCK, 2 * BLOCK + 100), (2 * BLOCK, 2 * BLOCK + 100)]
        );
        assert_eq!(
            store.pack_backlog(&mut |_, _| {}).unwrap(),
            0,
            "nothing left"
        );
        assert_eq!(store.packed().unwrap(), 2 * BLOCK);
        assert_eq!(
            store.audit.len(),
            100,
            "only the last, partial block stays in the tail"
        );
        assert_eq!(store.frames.len() as u64, 2 * BLOCK / FRAME);
        assert_eq!(store.postings.len(), 2 * TAGS.len());
        // The packed blocks' index entries went with them.
        assert!(store.index.iter().all(|item| {
            let (k, _) = item.unwrap();
            u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap()) > 2 * BLOCK
        }));
        assert_eq!(verify_audit(&store).unwrap().unwrap(), head);
        assert_eq!(every_line(&store), lines, "every line kept byte for byte");
        assert_eq!(by_user(&store, "u3"), alice);
    }

    /// The seqs `query` finds, stopping after `stop` of them.
    fn found(store: &SledStore, query: &AuditQuery, stop: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        store
            .scan_audit(query, &mut |r, line| {
                assert_eq!(
                    decode_record(r.seq, line).unwrap(),
                    *r,
                    "the line is the record's"
                );
                seqs.push(r.seq);
                seqs.len() < stop
            })
            .unwrap();
        seqs
    }

    #[test]
    fn queries_over_packed_blocks_and_the_tail_find_what_a_filter_of_every_line_finds() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let count = 5 * BLOCK + 300;
        for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
            let batch: Vec<AuditRecord> = chunk.iter().map(|i| record(*i)).collect();
            store.append_audit(&batch).unwrap();
        }
        assert_eq!(store.packed().unwrap(), 5 * BLOCK);
        let every: Vec<AuditRecord> = every_line(&store)
            .iter()
            .map(|(seq, line)| decode_record(*seq, line).unwrap())
            .collect();
        let time = |seq: u64| every[seq as usize - 1].time;
        let queries = [
            AuditQuery {
                user: Some("u3".into()),
                ..Default::default()
            },
            AuditQuery {
                host: Some("h4".into()),
                since: Some(time(BLOCK + 17)),
                until: Some(time(5 * BLOCK + 120)),
                ..Default::default()
            },
            AuditQuery {
                request: Some(format!("r{}", (3 * BLOCK + 9) / 4)),
                ..Default::default()
            },
            AuditQuery {
                serial: Some(2 * BLOCK + 2),
                ..Default::default()
            },
            AuditQuery {
                since: Some(time(BLOCK - 3)),
                until: Some(time(4 * BLOCK + 5)),
                ..Default::default()
            },
            AuditQuery {
                after_seq: Some(2 * BLOCK + 700),
                user: Some("u1".into()),
                ..Default::default()
            },
            AuditQuery::default(),
        ];
        for query in &queries {
            let want: Vec<u64> = every
                .iter()
                .filter(|r| query.matches(r))
                .map(|r| r.seq)
                .collect();
            assert!(!want.is_empty(), "{query:?} finds something");
            assert_eq!(found(&store, query, usize::MAX), want, "{query:?}");
            // A reader that stops early gets exactly the first ones, in order.
            for stop in [1, 3, want.len().div_ceil(2)] {
                assert_eq!(
                    found(&store, query, stop),
                    want[..stop.min(want.len())],
                    "{query:?}"
                );
            }
        }
    }

    #[test]
    fn appends_pack_each_full_block_and_a_reader_defers_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let batch: Vec<AuditRecord> = (0..BLOCK - 1).map(record).collect();
        store.append_audit(&batch).unwrap();
        assert_eq!(store.packed().unwrap(), 0);
        {
            let _reading = store.packing.read().unwrap();
            store.append_audit(&[record(BLOCK)]).unwrap();
            assert_eq!(store.packed().unwrap(), 0, "not while the chain is read");
        }
        store.append_audit(&[record(BLOCK + 1)]).unwrap();
        assert_eq!(store.packed().unwrap(), BLOCK);
        assert_eq!(store.audit.len(), 1);
        assert_eq!(verify_audit(&store).unwrap().unwrap().seq, BLOCK + 1);
    }

    #[test]
    fn a_changed_or_missing_packed_record_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let batch: Vec<AuditRecord> = (0..BLOCK + 5).map(record).collect();
        store.append_audit(&batch).unwrap();
        assert_eq!(store.packed().unwrap(), BLOCK);
        // Record 42 is the second line of the frame at 41: change one byte of it.
        let frame = store.frames.get(41u64.to_be_bytes()).unwrap().unwrap();
        let mut unpacker = Unpacker::new().unwrap();
        let text = String::from_utf8(unpacker.open(&frame, String::new).unwrap()).unwrap();
        let mut lines: Vec<sled::IVec> = text.split('\n').map(|l| l.as_bytes().into()).collect();
        let changed = String::from_utf8(lines[1].to_vec())
            .unwrap()
            .replace("\"serial\":42", "\"serial\":43");
        lines[1] = changed.as_bytes().into();
        store
            .frames
            .insert(
                41u64.to_be_bytes(),
                pack_value(
                    &mut zstd::bulk::Compressor::new(LEVEL).unwrap(),
                    &frame_text(&lines),
                ),
            )
            .unwrap();
        let broken = verify_audit(&store).unwrap().unwrap_err();
        assert_eq!(broken.seq, 42, "{broken}");
        // A whole frame removed: its first record is missing.
        store.frames.insert(41u64.to_be_bytes(), frame).unwrap();
        assert!(verify_audit(&store).unwrap().is_ok());
        store.frames.remove(49u64.to_be_bytes()).unwrap();
        let missing = verify_audit(&store).unwrap().unwrap_err();
        assert_eq!(missing.seq, 49, "{missing}");
        assert!(missing.problem.contains("missing"), "{missing}");
    }

    #[test]
    fn the_page_cache_is_bounded_by_the_option() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(StoreOptions::default().cache_bytes, 32 * 1024 * 1024);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.cache_bytes(), StoreOptions::DEFAULT_CACHE_BYTES);
        drop(store);
        let options = StoreOptions {
            cache_bytes: 8 * 1024 * 1024,
        };
        let store = SledStore::open_with(dir.path(), &options).unwrap();
        assert_eq!(store.cache_bytes(), 8 * 1024 * 1024);
    }
}
