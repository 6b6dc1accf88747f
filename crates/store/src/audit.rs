//! The audit log's records and their hash chain.
//!
//! Each record is one JSON object on one line. Its last member is `"hash"`: the SHA-256 of the
//! line's own bytes without that member, and the line holds `"prev"`, the hash of the record
//! before it. So the line an auditor ships to a SIEM is exactly what the hash covers: any
//! changed byte, any removed, inserted or reordered record breaks the chain at that record.
//! The chain's head (last seq and hash) is kept apart from the records, so cutting records off
//! the end is seen too, unless the head is rewritten with them (see `docs/audit.md`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The daemon started serving.
    DaemonStarted,
    /// The daemon stopped on a signal.
    DaemonStopped,
    /// A new config took effect.
    ConfigReloaded,
    /// A connection ended without authenticating.
    AuthFailed,
    /// How many failed authentications were not recorded one by one (rate limit).
    AuthFailuresSuppressed,
    /// A request was made.
    Requested,
    /// One approval was recorded.
    Approved,
    /// An approver ended a request.
    Denied,
    /// Nobody decided in time.
    Lapsed,
    /// A certificate was signed and stored.
    Issued,
    /// The requester fetched an issued certificate again (`get`).
    CertificateFetched,
    /// The requester ended their access early.
    Done,
    /// A certificate was revoked.
    Revoked,
    /// A command was refused.
    Refused,
    /// The audit log was read.
    AuditRead,
    /// The audit chain was verified.
    AuditVerified,
    /// An ended grant's post-access review was recorded.
    Reviewed,
    /// A grant that needs a review ended without one (announced once).
    ReviewDue,
    /// Logins with a grant's certificate were read from an sshd log.
    UsageRecorded,
    /// A person started second-factor enrolment (a new secret, not yet confirmed).
    MfaEnrolled,
    /// A person confirmed their second factor with a first code; it is in force from now.
    MfaConfirmed,
    /// An operator removed a person's second factor.
    MfaReset,
    /// A one-time code was wrong or replayed.
    MfaFailed,
    /// A signed checkpoint of the chain was made (by the daemon, or by an auditor).
    Checkpoint,
    /// A kind this version does not know (written by a newer jitca).
    #[serde(other)]
    Other,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::DaemonStarted => "daemon_started",
            EventKind::DaemonStopped => "daemon_stopped",
            EventKind::ConfigReloaded => "config_reloaded",
            EventKind::AuthFailed => "auth_failed",
            EventKind::AuthFailuresSuppressed => "auth_failures_suppressed",
            EventKind::Requested => "requested",
            EventKind::Approved => "approved",
            EventKind::Denied => "denied",
            EventKind::Lapsed => "lapsed",
            EventKind::Issued => "issued",
            EventKind::CertificateFetched => "certificate_fetched",
            EventKind::Done => "done",
            EventKind::Revoked => "revoked",
            EventKind::Refused => "refused",
            EventKind::AuditRead => "audit_read",
            EventKind::AuditVerified => "audit_verified",
            EventKind::Reviewed => "reviewed",
            EventKind::ReviewDue => "review_due",
            EventKind::UsageRecorded => "usage_recorded",
            EventKind::MfaEnrolled => "mfa_enrolled",
            EventKind::MfaConfirmed => "mfa_confirmed",
            EventKind::MfaReset => "mfa_reset",
            EventKind::MfaFailed => "mfa_failed",
            EventKind::Checkpoint => "checkpoint",
            EventKind::Other => "other",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit record. The lifecycle fills in what happened ([`AuditRecord::new`] and the
/// fields); the store gives it `seq`, `time`, `prev` and `hash` when it appends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1, without gaps.
    #[serde(default)]
    pub seq: u64,
    /// When it was recorded; never earlier than the record before.
    #[serde(default = "epoch")]
    pub time: DateTime<Utc>,
    pub event: EventKind,
    /// Who did it: a user name, `jitca` for the daemon, `-` for an unknown peer.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// Text a user typed (a request's or a denial's reason), kept exactly as typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Everything else this kind of event carries (key id, validity, approvers...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
    /// Hash of the record before (GENESIS for the first).
    #[serde(default)]
    pub prev: String,
    /// Hash of this record's line without this member. Always the last member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

fn epoch() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

impl AuditRecord {
    pub fn new(event: EventKind, actor: impl Into<String>) -> Self {
        Self {
            seq: 0,
            time: epoch(),
            event,
            actor: actor.into(),
            source: None,
            request: None,
            requester: None,
            serial: None,
            reason: None,
            hosts: Vec::new(),
            logins: Vec::new(),
            principals: Vec::new(),
            details: BTreeMap::new(),
            prev: String::new(),
            hash: None,
        }
    }

    /// Adds one detail.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.details.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
        self
    }

    /// The people this record is about: the actor and, when it differs, the requester.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.actor.as_str()).chain(
            self.requester
                .as_deref()
                .filter(|r| *r != self.actor.as_str()),
        )
    }
}

/// The end of the chain: the last record's seq, hash and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    pub time: DateTime<Utc>,
}

impl Head {
    pub fn genesis() -> Self {
        Head {
            seq: 0,
            hash: GENESIS.to_string(),
            time: epoch(),
        }
    }
}

const HASH_MEMBER: &[u8] = b",\"hash\":\"";

/// Gives `record` its place after `head` and returns its line and the new head.
pub fn seal(head: &Head, mut record: AuditRecord, now: DateTime<Utc>) -> (Vec<u8>, Head) {
    record.seq = head.seq + 1;
    record.time = now.max(head.time);
    record.prev = head.hash.clone();
    record.hash = None;
    let mut line = serde_json::to_vec(&record).expect("a record always serialises");
    let hash = hex::encode(Sha256::digest(&line));
    line.pop(); // the closing brace
    line.extend_from_slice(HASH_MEMBER);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}");
    let head = Head {
        seq: record.seq,
        hash,
        time: record.time,
    };
    (line, head)
}

/// What is wrong with a record, found by `check` or [`Verifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first bad record.
    pub seq: u64,
    pub problem: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}: {}", self.seq, self.problem)
    }
}

/// Decodes a stored line and checks that its hash covers its bytes.
pub fn open(seq: u64, line: &[u8]) -> Result<AuditRecord, ChainBreak> {
    let broken = |problem: &str| ChainBreak {
        seq,
        problem: problem.to_string(),
    };
    let record: AuditRecord =
        serde_json::from_slice(line).map_err(|_| broken("unreadable: it was changed"))?;
    let Some(hash) = record.hash.as_deref() else {
        return Err(broken("has no hash: it was changed"));
    };
    let suffix_len = HASH_MEMBER.len() + hash.len() + 2;
    if line.len() < suffix_len || !line.ends_with(b"\"}") {
        return Err(broken("malformed: it was changed"));
    }
    let body_end = line.len() - suffix_len;
    if &line[body_end..body_end + HASH_MEMBER.len()] != HASH_MEMBER {
        return Err(broken("malformed: it was changed"));
    }
    let mut hasher = Sha256::new();
    hasher.update(&line[..body_end]);
    hasher.update(b"}");
    if hex::encode(hasher.finalize()) != hash {
        return Err(broken(
            "its content does not match its hash: it was changed",
        ));
    }
    Ok(record)
}

/// Walks the chain record by record, in key order, and finds the first break.
pub struct Verifier {
    head: Head,
    count: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        Self {
            head: Head::genesis(),
            count: 0,
        }
    }

    /// The next stored record: `key` is the seq it is stored under.
    pub fn next(&mut self, key: u64, line: &[u8]) -> Result<(), ChainBreak> {
        self.next_record(key, line).map(drop)
    }

    /// [`Verifier::next`], giving back the record it decoded.
    pub fn next_record(&mut self, key: u64, line: &[u8]) -> Result<AuditRecord, ChainBreak> {
        self.next_opened(key, || open(key, line))
    }

    /// [`Verifier::next_record`] for a line already decoded and checked by [`open`] (on
    /// another thread, say): `opened` gives [`open`]'s outcome for the line stored at `key`.
    pub fn next_opened(
        &mut self,
        key: u64,
        opened: impl FnOnce() -> Result<AuditRecord, ChainBreak>,
    ) -> Result<AuditRecord, ChainBreak> {
        let expected = self.head.seq + 1;
        if key != expected {
            return Err(ChainBreak {
                seq: expected,
                problem: if key > expected {
                    "is missing (deleted)".into()
                } else {
                    format!(
                        "is stored twice or out of order (found {key} after {})",
                        self.head.seq
                    )
                },
            });
        }
        let record = opened()?;
        if record.seq != key {
            return Err(ChainBreak {
                seq: key,
                problem: format!("is out of order: it holds record {}", record.seq),
            });
        }
        if record.prev != self.head.hash {
            return Err(ChainBreak {
                seq: key,
                problem: format!(
                    "does not follow record {}: a record was removed, inserted or reordered",
                    self.head.seq
                ),
            });
        }
        if record.time < self.head.time {
            return Err(ChainBreak {
                seq: key,
                problem: "is out of time order".into(),
            });
        }
        self.head = Head {
            seq: key,
            hash: record.hash.clone().unwrap_or_default(),
            time: record.time,
        };
        self.count += 1;
        Ok(record)
    }

    /// After the last record: the stored head must name it.
    pub fn finish(self, stored_head: Option<&Head>) -> Result<Head, ChainBreak> {
        let genesis = Head::genesis();
        let stored = stored_head.unwrap_or(&genesis);
        if stored.seq > self.head.seq {
            return Err(ChainBreak {
                seq: self.head.seq + 1,
                problem: format!(
                    "is missing: the log ends at record {} but its head says {} (records were cut off the end)",
                    self.head.seq, stored.seq
                ),
            });
        }
        if stored.seq < self.head.seq || stored.hash != self.head.hash {
            return Err(ChainBreak {
                seq: self.head.seq,
                problem: "does not match the log's head: the end of the log was changed".into(),
            });
        }
        Ok(self.head)
    }

    /// After the last record of a log that may have grown during the scan: `before` and
    /// `after` are the stored heads read before and after it, `at_before` the verified head at
    /// `before`'s seq (if the scan got there). Records up to `before` must all be there and end
    /// in it; records past it chain on (checked by [`Verifier::next`]) and reach no further
    /// than `after`. With nothing appended meanwhile this is [`Verifier::finish`].
    pub fn finish_live(
        self,
        before: &Head,
        at_before: Option<&Head>,
        after: &Head,
    ) -> Result<Head, ChainBreak> {
        if self.head.seq <= before.seq {
            // Nothing appended during the scan (or the tail was cut): the plain check.
            return self.finish(Some(before));
        }
        if at_before.is_none_or(|h| h.hash != before.hash) {
            return Err(ChainBreak {
                seq: before.seq,
                problem: "does not match the log's head: the end of the log was changed".into(),
            });
        }
        if self.head.seq > after.seq || (self.head.seq == after.seq && self.head.hash != after.hash)
        {
            return Err(ChainBreak {
                seq: self.head.seq,
                problem: "does not match the log's head: the end of the log was changed".into(),
            });
        }
        Ok(self.head)
    }

    /// The last record verified so far (genesis before any).
    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Which records an audit query returns. Every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Records before this time.
    pub until: Option<DateTime<Utc>>,
    /// Records whose actor or requester is this user.
    pub user: Option<String>,
    /// Records naming this host.
    pub host: Option<String>,
    pub serial: Option<u64>,
    pub request: Option<String>,
    /// Records after this seq (for followers such as the JSON-lines file).
    pub after_seq: Option<u64>,
}

impl AuditQuery {
    pub fn matches(&self, r: &AuditRecord) -> bool {
        self.since.is_none_or(|t| r.time >= t)
            && self.until.is_none_or(|t| r.time < t)
            && self.after_seq.is_none_or(|s| r.seq > s)
            && self
                .user
                .as_deref()
                .is_none_or(|u| r.users().any(|x| x == u))
            && self
                .host
                .as_deref()
                .is_none_or(|h| r.hosts.iter().any(|x| x == h))
            && self.serial.is_none_or(|s| r.serial == Some(s))
            && self
                .request
                .as_deref()
                .is_none_or(|id| r.request.as_deref() == Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    /// Verifies `lines` as a scan that started when the head was `before` and ended when it
    /// was `after`.
    fn verify_live(lines: &[Vec<u8>], before: &Head, after: &Head) -> Result<Head, ChainBreak> {
        let mut v = Verifier::new();
        let mut at_before = (before.seq == 0).then(Head::genesis);
        for (i, line) in lines.iter().enumerate() {
            v.next(i as u64 + 1, line)?;
            if i as u64 + 1 == before.seq {
                at_before = Some(v.head().clone());
            }
        }
        v.finish_live(before, at_before.as_ref(), after)
    }

    #[test]
    fn a_log_that_grows_during_the_scan_is_intact() {
        let (lines, _) = chain(10);
        let heads: Vec<Head> = (0..=10)
            .map(|n| {
                let mut v = Verifier::new();
                for (i, line) in lines[..n].iter().enumerate() {
                    v.next(i as u64 + 1, line).unwrap();
                }
                v.head().clone()
            })
            .collect();
        // Head 4 before the scan, 10 after; the scan saw 7 records, or all 10.
        assert_eq!(
            verify_live(&lines[..7], &heads[4], &heads[10]).unwrap().seq,
            7
        );
        assert_eq!(verify_live(&lines, &heads[4], &heads[10]).unwrap().seq, 10);
        assert_eq!(verify_live(&lines, &heads[0], &heads[10]).unwrap().seq, 10);
        // Nothing appended: as before.
        assert_eq!(verify_live(&lines, &heads[10], &heads[10]).unwrap().seq, 10);
        // Records cut below the head read first.
        let cut = verify_live(&lines[..3], &heads[4], &heads[10]).unwrap_err();
        assert_eq!(cut.seq, 4, "{cut}");
        // A record beyond any head ever stored.
        let beyond = verify_live(&lines, &heads[4], &heads[8]).unwrap_err();
        assert!(beyond.problem.contains("head"), "{beyond}");
        // The head read first does not match what the log holds at its seq.
        let mut forged = heads[4].clone();
        forged.hash = heads[5].hash.clone();
        let changed = verify_live(&lines, &forged, &heads[10]).unwrap_err();
        assert_eq!(changed.seq, 4, "{changed}");
    }

    fn chain(n: u64) -> (Vec<Vec<u8>>, Head) {
        let mut head = Head::genesis();
        let mut lines = Vec::new();
        for i in 0..n {
            let record = AuditRecord::new(EventKind::Requested, "alice")
                .with("i", i)
                .clone();
            let (line, next) = seal(&head, record, t(i as i64));
            lines.push(line);
            head = next;
        }
        (lines, head)
    }

    fn verify(lines: &[(u64, Vec<u8>)], head: &Head) -> Result<Head, ChainBreak> {
        let mut v = Verifier::new();
        for (key, line) in lines {
            v.next(*key, line)?;
        }
        v.finish(Some(head))
    }

    fn keyed(lines: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.clone()))
            .collect()
    }

    #[test]
    fn a_sealed_line_is_json_with_the_hash_last() {
        let (lines, head) = chain(2);
        let text = std::str::from_utf8(&lines[1]).unwrap();
        assert!(text.starts_with("{\"seq\":2,"), "{text}");
        assert!(
            text.ends_with(&format!(",\"hash\":\"{}\"}}", head.hash)),
            "{text}"
        );
        let record = open(2, &lines[1]).unwrap();
        assert_eq!(record.actor, "alice");
        assert_eq!(record.prev, open(1, &lines[0]).unwrap().hash.unwrap());
    }

    /// The canonical line of a fixed record, and so its hash, is part of the store's format:
    /// every stored chain is verified against it. A change here breaks every existing store.
    #[test]
    fn a_records_line_and_hash_never_change_between_versions() {
        let mut record = AuditRecord::new(EventKind::Issued, "bob")
            .with("key_id", "jitca:r1:alice:approvers=bob")
            .with("valid_secs", 3600);
        record.source = Some("10.0.0.1:52814".into());
        record.request = Some("r1".into());
        record.requester = Some("alice".into());
        record.serial = Some(42);
        record.reason = Some("INC-7 \"disk\" full\nsee ticket".into());
        record.hosts = vec!["web1".into(), "db1".into()];
        record.logins = vec!["deploy".into()];
        record.principals = vec!["deploy@web1".into()];
        let head = Head {
            seq: 6,
            hash: "ab".repeat(32),
            time: t(5),
        };
        let (line, next) = seal(&head, record, t(7));
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            concat!(
                r#"{"seq":7,"time":"2027-01-15T08:00:07Z","event":"issued","actor":"bob","#,
                r#""source":"10.0.0.1:52814","request":"r1","requester":"alice","serial":42,"#,
                r#""reason":"INC-7 \"disk\" full\nsee ticket","hosts":["web1","db1"],"#,
                r#""logins":["deploy"],"principals":["deploy@web1"],"#,
                r#""details":{"key_id":"jitca:r1:alice:approvers=bob","valid_secs":3600},"#,
                r#""prev":"abababababababababababababababababababababababababababababababab","#,
                r#""hash":"HASH"}"#
            )
            .replace("HASH", &next.hash)
        );
        assert_eq!(
            next.hash,
            "bea7e511b580ff7800e20fbf7b9b4eedcce0099eaa7e5f13298d3a0cfea22ed9"
        );
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (lines, head) = chain(5);
        assert_eq!(verify(&keyed(&lines), &head).unwrap(), head);
    }

    #[test]
    fn a_changed_byte_names_its_record() {
        let (mut lines, head) = chain(5);
        let pos = lines[2].iter().position(|b| *b == b'a').unwrap();
        lines[2][pos] = b'm'; // "alice" -> "mlice"
        let err = verify(&keyed(&lines), &head).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(err.problem.contains("changed"), "{err}");
    }

    #[test]
    fn a_deleted_record_is_missing() {
        let (lines, head) = chain(5);
        let mut k = keyed(&lines);
        k.remove(1);
        let err = verify(&k, &head).unwrap_err();
        assert_eq!(err.seq, 2);
        assert!(err.problem.contains("missing"), "{err}");
    }

    #[test]
    fn swapped_records_are_out_of_order() {
        let (lines, head) = chain(5);
        let mut k = keyed(&lines);
        let (a, b) = (k[1].1.clone(), k[2].1.clone());
        k[1].1 = b;
        k[2].1 = a;
        let err = verify(&k, &head).unwrap_err();
        assert_eq!(err.seq, 2);
        assert!(err.problem.contains("out of order"), "{err}");
    }

    #[test]
    fn a_deleted_and_renumbered_record_breaks_the_chain() {
        // Remove record 2 and re-seal nothing: record 3 stored as 2 still says seq 3.
        let (lines, head) = chain(4);
        let k: Vec<(u64, Vec<u8>)> = vec![
            (1, lines[0].clone()),
            (2, lines[2].clone()),
            (3, lines[3].clone()),
        ];
        assert_eq!(verify(&k, &head).unwrap_err().seq, 2);
    }

    #[test]
    fn a_cut_off_end_is_seen_against_the_head() {
        let (lines, head) = chain(5);
        let k = keyed(&lines[..3]);
        let err = verify(&k, &head).unwrap_err();
        assert_eq!(err.seq, 4);
        assert!(err.problem.contains("cut off"), "{err}");
    }

    #[test]
    fn time_never_goes_backwards() {
        let head = Head::genesis();
        let (_, h1) = seal(&head, AuditRecord::new(EventKind::Requested, "a"), t(10));
        let (line, h2) = seal(&h1, AuditRecord::new(EventKind::Requested, "a"), t(5));
        assert_eq!(h2.time, t(10));
        assert_eq!(open(2, &line).unwrap().time, t(10));
    }

    #[test]
    fn queries_match_every_filter_given() {
        let mut r = AuditRecord::new(EventKind::Approved, "bob");
        r.requester = Some("alice".into());
        r.hosts = vec!["web1".into()];
        r.serial = Some(7);
        r.time = t(100);
        r.seq = 9;
        let q = |f: fn(&mut AuditQuery)| {
            let mut q = AuditQuery::default();
            f(&mut q);
            q.matches(&r)
        };
        assert!(q(|_| {}));
        assert!(q(|q| q.user = Some("alice".into())));
        assert!(q(|q| q.user = Some("bob".into())));
        assert!(!q(|q| q.user = Some("carol".into())));
        assert!(q(|q| q.host = Some("web1".into())));
        assert!(!q(|q| q.host = Some("web2".into())));
        assert!(q(|q| q.serial = Some(7)));
        assert!(!q(|q| q.serial = Some(8)));
        assert!(q(|q| q.since = Some(t(100))));
        assert!(!q(|q| q.until = Some(t(100))));
        assert!(!q(|q| q.after_seq = Some(9)));
        assert!(!q(|q| q.request = Some("x".into())));
    }
}
