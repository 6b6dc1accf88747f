//! The audit chain's decoder and verifier: `audit::open` and `audit::Verifier` fed what a damaged
//! or tampered store could hold.
//!
//! Three parts, each from the same input:
//! 1. Arbitrary stored `(seq, line)` pairs: `open` and the verifier must never panic; a line
//!    `open` accepts must really end in `,"hash":"H"}` with H the SHA-256 of the rest (checked
//!    here independently); a sequence the verifier accepts must be keyed 1..=n, each record
//!    naming the hash of the one before.
//! 2. A chain sealed from fuzzed records (any text in every field, any times): every line opens
//!    back to exactly the record sealed, and the verifier accepts the chain against its head.
//! 3. That chain tampered with once (a changed byte, a deleted, swapped, inserted or re-keyed
//!    record, a cut-off end): the verifier must report a break.

#![no_main]

use arbitrary::Arbitrary;
use chrono::{DateTime, Utc};
use jitca_store::audit::{AuditRecord, EventKind, Head, Verifier, open, seal};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

#[derive(Arbitrary, Debug)]
struct Input {
    raw: Vec<(u64, Vec<u8>)>,
    records: Vec<Rec>,
    tamper: Tamper,
}

#[derive(Arbitrary, Debug)]
struct Rec {
    event: u8,
    actor: String,
    source: Option<String>,
    request: Option<String>,
    requester: Option<String>,
    serial: Option<u64>,
    reason: Option<String>,
    hosts: Vec<String>,
    logins: Vec<String>,
    principals: Vec<String>,
    details: Vec<(String, Detail)>,
    secs: i64,
    nanos: u32,
}

#[derive(Arbitrary, Debug)]
enum Detail {
    Text(String),
    Signed(i64),
    Unsigned(u64),
    Bool(bool),
    List(Vec<String>),
    Null,
}

#[derive(Arbitrary, Debug)]
enum Tamper {
    Byte { line: usize, pos: usize, value: u8 },
    Delete(usize),
    Swap(usize, usize),
    Insert { at: usize, line: Vec<u8> },
    Rekey { line: usize, key: u64 },
    CutEnd(usize),
}

const EVENTS: [EventKind; 17] = [
    EventKind::DaemonStarted,
    EventKind::DaemonStopped,
    EventKind::ConfigReloaded,
    EventKind::AuthFailed,
    EventKind::AuthFailuresSuppressed,
    EventKind::Requested,
    EventKind::Approved,
    EventKind::Denied,
    EventKind::Lapsed,
    EventKind::Issued,
    EventKind::CertificateFetched,
    EventKind::Done,
    EventKind::Revoked,
    EventKind::Refused,
    EventKind::AuditRead,
    EventKind::AuditVerified,
    EventKind::Other,
];

fn record(r: &Rec) -> (AuditRecord, DateTime<Utc>) {
    let mut a = AuditRecord::new(EVENTS[r.event as usize % EVENTS.len()], r.actor.clone());
    a.source = r.source.clone();
    a.request = r.request.clone();
    a.requester = r.requester.clone();
    a.serial = r.serial;
    a.reason = r.reason.clone();
    a.hosts = r.hosts.clone();
    a.logins = r.logins.clone();
    a.principals = r.principals.clone();
    for (key, value) in &r.details {
        a = match value {
            Detail::Text(s) => a.with(key, s),
            Detail::Signed(n) => a.with(key, n),
            Detail::Unsigned(n) => a.with(key, n),
            Detail::Bool(b) => a.with(key, b),
            Detail::List(v) => a.with(key, v),
            Detail::Null => a.with(key, ()),
        };
    }
    let time =
        DateTime::from_timestamp(r.secs, r.nanos % 1_000_000_000).unwrap_or(DateTime::UNIX_EPOCH);
    (a, time)
}

/// What `open` promises, checked without it: the line ends with the hash member, and the hash
/// is the SHA-256 of the line without that member.
fn hash_covers_line(line: &[u8], hash: &str) -> bool {
    let suffix = format!(",\"hash\":\"{hash}\"}}");
    let Some(body) = line.strip_suffix(suffix.as_bytes()) else {
        return false;
    };
    let mut body = body.to_vec();
    body.push(b'}');
    let digest: String = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    digest == hash
}

/// Runs the verifier over `lines` and checks the end against `head`.
fn verify(lines: &[(u64, Vec<u8>)], head: &Head) -> bool {
    let mut verifier = Verifier::new();
    for (key, line) in lines {
        if verifier.next(*key, line).is_err() {
            return false;
        }
    }
    verifier.finish(Some(head)).is_ok()
}

fuzz_target!(|input: Input| {
    // 1. Arbitrary stored pairs.
    let mut verifier = Verifier::new();
    let mut previous = Head::genesis();
    let mut accepted = 0u64;
    for (key, line) in &input.raw {
        if let Ok(record) = open(*key, line) {
            let hash = record.hash.as_deref().expect("open gives the hash");
            assert!(
                hash_covers_line(line, hash),
                "open accepted a line its hash does not cover"
            );
        }
        if verifier.next(*key, line).is_err() {
            break;
        }
        accepted += 1;
        let record = open(*key, line).expect("the verifier accepted it");
        assert_eq!(*key, accepted, "accepted out of sequence");
        assert_eq!(record.seq, *key);
        assert_eq!(
            record.prev, previous.hash,
            "accepted a record that does not follow"
        );
        assert!(
            record.time >= previous.time,
            "accepted a record out of time order"
        );
        previous = Head {
            seq: record.seq,
            hash: record.hash.clone().unwrap_or_default(),
            time: record.time,
        };
    }
    assert_eq!(verifier.count(), accepted);

    // 2. A sealed chain opens back to what was sealed and verifies.
    let mut head = Head::genesis();
    let mut lines: Vec<(u64, Vec<u8>)> = Vec::new();
    for r in input.records.iter().take(16) {
        let (sealed, now) = record(r);
        let (line, next) = seal(&head, sealed.clone(), now);
        let mut expected = sealed;
        expected.seq = head.seq + 1;
        expected.time = now.max(head.time);
        expected.prev = head.hash.clone();
        expected.hash = Some(next.hash.clone());
        let opened = open(expected.seq, &line).expect("a sealed line opens");
        assert_eq!(opened, expected, "a sealed record changed when opened");
        assert!(!line.contains(&b'\n'), "a sealed record is not one line");
        lines.push((next.seq, line));
        head = next;
    }
    assert!(verify(&lines, &head), "an intact chain did not verify");

    // 3. Any one change is found.
    let n = lines.len();
    let mut tampered = lines.clone();
    let changed = match &input.tamper {
        &Tamper::Byte { line, pos, value } if n > 0 => {
            let bytes = &mut tampered[line % n].1;
            let pos = pos % bytes.len();
            let old = bytes[pos];
            bytes[pos] = value;
            old != value
        }
        &Tamper::Delete(i) if n > 0 => {
            tampered.remove(i % n);
            true
        }
        &Tamper::Swap(i, j) if n > 0 => {
            let (i, j) = (i % n, j % n);
            let (a, b) = (tampered[i].1.clone(), tampered[j].1.clone());
            tampered[i].1 = b;
            tampered[j].1 = a;
            tampered[i].1 != tampered[j].1
        }
        Tamper::Insert { at, line } => {
            let at = at % (n + 1);
            tampered.insert(at, (at as u64 + 1, line.clone()));
            for (i, entry) in tampered.iter_mut().enumerate() {
                entry.0 = i as u64 + 1;
            }
            true
        }
        &Tamper::Rekey { line, key } if n > 0 => {
            let entry = &mut tampered[line % n];
            let old = entry.0;
            entry.0 = key;
            old != key
        }
        &Tamper::CutEnd(k) if n > 0 => {
            tampered.truncate(n - 1 - k % n);
            true
        }
        _ => false,
    };
    if changed {
        assert!(
            !verify(&tampered, &head),
            "a tampered chain verified: {:?}",
            input.tamper
        );
    }
});
