//! What the lifecycle records in the audit log, the optional JSON-lines copy for log shippers,
//! and the rate limit on failed authentications.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use jitca_store::{AuditQuery, AuditRecord, ChainBreak, EventKind, Head, Issuance, Request, Store};

use crate::{AuthorityError, Caller};

/// The actor of events the daemon causes itself (start, stop, lapses).
pub const DAEMON: &str = "jitca";
/// The actor of events by a peer that never authenticated.
pub const UNKNOWN: &str = "-";

/// Failed authentications recorded one by one per minute; the rest are counted.
const AUTH_FAILURES_PER_MINUTE: u32 = 60;
const AUTH_WINDOW: Duration = Duration::from_secs(60);
/// Longest text from an unauthenticated peer that is recorded.
const MAX_PEER_TEXT: usize = 64;
/// The store's mark of the last record written to the JSON-lines file.
const FILE_MARK: &str = "audit_file";
/// Longest refused command line recorded.
const MAX_RECORDED_LINE: usize = 1024;

/// An event about a request, with the request's identifying fields filled in.
pub(crate) fn about(kind: EventKind, actor: &str, request: &Request) -> AuditRecord {
    let mut r = AuditRecord::new(kind, actor);
    r.request = Some(request.id.clone());
    r.requester = Some(request.requester.clone());
    r.hosts = request.hosts.clone();
    r.logins = request.logins.clone();
    r
}

pub(crate) fn requested(request: &Request) -> AuditRecord {
    let mut r = about(EventKind::Requested, &request.requester, request)
        .with("duration_secs", request.duration_secs)
        .with("fingerprint", &request.fingerprint)
        .with("rule", &request.rule)
        .with("approvals_needed", request.approvals_needed)
        .with("lapses_at", request.lapses_at)
        .with("break_glass", request.break_glass)
        .with("review_required", request.review_required)
        .with("mfa", request.requester_mfa);
    r.source = Some(request.source.clone());
    r.reason = Some(request.reason.clone());
    r.principals = request.principals.clone();
    r
}

pub(crate) fn approved(request: &Request, caller: &Caller) -> AuditRecord {
    let mut r = about(EventKind::Approved, &caller.user, request)
        .with("approvals", request.approvals.len())
        .with("approvals_needed", request.approvals_needed)
        .with("mfa", caller.factor.verified());
    r.source = Some(caller.source.clone());
    r
}

/// The issuance record's event: everything the certificate carries.
pub(crate) fn issued(request: &Request, i: &Issuance, actor: &str) -> AuditRecord {
    let mut r = about(EventKind::Issued, actor, request)
        .with("key_id", &i.key_id)
        .with("valid_after", i.valid_after)
        .with("valid_before", i.valid_before)
        .with("extensions", &request.extensions)
        .with("critical_options", &request.critical_options)
        .with("approvers", request.approvers().collect::<Vec<_>>())
        .with("fingerprint", &request.fingerprint)
        .with("break_glass", request.break_glass);
    r.serial = Some(i.serial);
    r.principals = request.principals.clone();
    r
}

pub(crate) fn denied(request: &Request, caller: &Caller, reason: &str) -> AuditRecord {
    let mut r = about(EventKind::Denied, &caller.user, request);
    r.source = Some(caller.source.clone());
    r.reason = Some(reason.to_string());
    r
}

pub(crate) fn review_due(request: &Request) -> AuditRecord {
    about(EventKind::ReviewDue, DAEMON, request)
        .with("rule", &request.rule)
        .with("break_glass", request.break_glass)
}

pub(crate) fn reviewed(request: &Request, caller: &Caller) -> Option<AuditRecord> {
    let review = request.review.as_ref()?;
    let mut r = about(EventKind::Reviewed, &caller.user, request)
        .with("outcome", review.outcome.as_str())
        .with("note", &review.note)
        .with("break_glass", request.break_glass);
    r.source = Some(caller.source.clone());
    r.serial = request.issuance().map(|i| i.serial);
    Some(r)
}

pub(crate) fn lapsed(request: &Request) -> AuditRecord {
    about(EventKind::Lapsed, DAEMON, request).with("lapses_at", request.lapses_at)
}

pub(crate) fn fetched(request: &Request, caller: &Caller, serial: u64) -> AuditRecord {
    let mut r = about(EventKind::CertificateFetched, &caller.user, request);
    r.source = Some(caller.source.clone());
    r.serial = Some(serial);
    r
}

pub(crate) fn refused(caller: &Caller, line: &str, message: &str) -> AuditRecord {
    let mut r = AuditRecord::new(EventKind::Refused, &caller.user)
        .with("command", truncate(line, MAX_RECORDED_LINE));
    r.source = Some(caller.source.clone());
    r.reason = Some(message.to_string());
    r
}

/// A verification of the chain by `caller` (`event`: an `audit_verified` record, with what
/// was checked against), and what it found.
pub(crate) fn verified(
    mut event: AuditRecord,
    caller: &Caller,
    outcome: &Result<Head, ChainBreak>,
) -> AuditRecord {
    event.source = Some(caller.source.clone());
    match outcome {
        Ok(head) => event.with("result", "intact").with("records", head.seq),
        Err(b) => event.with("result", b.to_string()),
    }
}

pub(crate) fn audit_read(caller: &Caller, query: &AuditQuery) -> AuditRecord {
    let mut r = AuditRecord::new(EventKind::AuditRead, &caller.user)
        .with("since", query.since)
        .with("until", query.until)
        .with("user", &query.user)
        .with("host", &query.host)
        .with("serial", query.serial)
        .with("request", &query.request);
    r.source = Some(caller.source.clone());
    r
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A failed authentication as the control channel saw it.
#[derive(Debug, Clone, Default)]
pub struct AuthFailure {
    pub source: String,
    /// The user name the client sent (attacker-controlled text; kept short).
    pub user: String,
    /// Fingerprints of the keys it offered.
    pub keys: Vec<String>,
}

/// Records failed authentications one by one up to a rate, and counts the rest, so a flood
/// cannot fill the disk but is still seen.
pub(crate) struct AuthFailureLimiter {
    window_start: Instant,
    recorded: u32,
    suppressed: u64,
}

impl AuthFailureLimiter {
    pub(crate) fn new() -> Self {
        Self {
            window_start: Instant::now(),
            recorded: 0,
            suppressed: 0,
        }
    }

    /// The records to append for this failure (maybe none, maybe a summary of the last window).
    pub(crate) fn admit(
        &mut self,
        failure: Option<&AuthFailure>,
        now: Instant,
    ) -> Vec<AuditRecord> {
        let mut out = Vec::new();
        if now.duration_since(self.window_start) >= AUTH_WINDOW {
            if self.suppressed > 0 {
                out.push(
                    AuditRecord::new(EventKind::AuthFailuresSuppressed, UNKNOWN)
                        .with("count", self.suppressed)
                        .with("window_secs", AUTH_WINDOW.as_secs()),
                );
            }
            self.window_start = now;
            self.recorded = 0;
            self.suppressed = 0;
        }
        if let Some(f) = failure {
            if self.recorded < AUTH_FAILURES_PER_MINUTE {
                self.recorded += 1;
                let mut r = AuditRecord::new(EventKind::AuthFailed, UNKNOWN)
                    .with("user", truncate(&f.user, MAX_PEER_TEXT))
                    .with("keys", f.keys.iter().take(8).collect::<Vec<_>>());
                r.source = Some(f.source.clone());
                out.push(r);
            } else {
                self.suppressed += 1;
            }
        }
        out
    }
}

/// The JSON-lines copy of the audit log. It follows the store: before a certificate leaves,
/// every record up to its issuance is appended and synced here too. Reopened for each batch,
/// so a log rotation is picked up.
pub(crate) struct AuditFile {
    path: PathBuf,
    /// The last seq written to the file.
    written: Mutex<u64>,
}

impl AuditFile {
    /// Opens (or creates) the file and finds where it ends: its last line, or, when it is
    /// empty (rotated away), the last record the daemon wrote to it before, so a rotation
    /// never makes the whole log be written again. A file that is ahead of the store
    /// belongs to another store: refused.
    pub(crate) fn open(path: &Path, store: &dyn Store) -> Result<Self, AuthorityError> {
        let err = |e: std::io::Error| AuthorityError::AuditLog(format!("{}: {e}", path.display()));
        let mut file = append_handle(path).map_err(err)?;
        let last = match last_seq(&mut file).map_err(err)? {
            0 => store.mark(FILE_MARK)?,
            seq => seq,
        };
        let head = store.audit_head()?.seq;
        if last > head {
            return Err(AuthorityError::AuditLog(format!(
                "{} ends at record {last} but the store's log ends at {head}: it belongs to another store; move it away",
                path.display()
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            written: Mutex::new(last),
        })
    }

    /// Appends and syncs every record of the store after the last one written.
    pub(crate) fn catch_up(&self, store: &dyn Store) -> Result<(), AuthorityError> {
        let mut written = self.written.lock().expect("audit file lock");
        let mut batch = Vec::new();
        let mut last = *written;
        store.scan_audit(
            &AuditQuery {
                after_seq: Some(*written),
                ..Default::default()
            },
            &mut |record, line| {
                batch.extend_from_slice(line);
                batch.push(b'\n');
                last = record.seq;
                true
            },
        )?;
        if batch.is_empty() {
            return Ok(());
        }
        let write = || -> std::io::Result<()> {
            let mut file = append_handle(&self.path)?;
            file.write_all(&batch)?;
            file.sync_data()
        };
        write().map_err(|e| {
            AuthorityError::AuditLog(format!("cannot write {}: {e}", self.path.display()))
        })?;
        *written = last;
        store.set_mark(FILE_MARK, last)?;
        Ok(())
    }
}

fn append_handle(path: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o640)
        .open(path)
}

/// The seq of the file's last complete line (0 for an empty file). A torn last line (a crash
/// mid-write) is cut off: the store still has it, and it is written again.
fn last_seq(file: &mut std::fs::File) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(0);
    }
    let tail_len = len.min(1 << 16);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::with_capacity(tail_len as usize);
    file.take(tail_len).read_to_end(&mut tail)?;
    let complete = match tail.iter().rposition(|b| *b == b'\n') {
        Some(end) => end + 1,
        None => 0,
    };
    if complete < tail.len() {
        file.set_len(len - (tail.len() - complete) as u64)?;
    }
    let lines = &tail[..complete];
    let last_line = lines[..lines.len().saturating_sub(1)]
        .rsplit(|b| *b == b'\n')
        .next()
        .unwrap_or_default();
    if last_line.is_empty() {
        return Ok(0);
    }
    serde_json::from_slice::<AuditRecord>(last_line)
        .map(|r| r.seq)
        .map_err(|e| std::io::Error::other(format!("its last line is not an audit record: {e}")))
}

/// A time as users write it in `--since` and `--until`: RFC 3339 (`2026-11-29T10:00:00Z`), a
/// date (`2026-11-29`, midnight UTC), or a duration ago (`90m`, `2h`, `7d`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    if let Ok(ago) = jitca_policy::parse_duration(text) {
        let ago = TimeDelta::from_std(ago).map_err(|_| format!("{text} is too long ago"))?;
        return now
            .checked_sub_signed(ago)
            .ok_or_else(|| format!("{text} is too long ago"));
    }
    Err(format!(
        "{} is not a time: write 2026-11-29T10:00:00Z, 2026-11-29, or a duration ago like 2h",
        jitca_policy::names::show(text)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_users_write() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_time("2026-11-29T10:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2026-11-29T10:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-11-28", now).unwrap().to_rfc3339(),
            "2026-11-28T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2h", now).unwrap().to_rfc3339(),
            "2026-11-29T10:00:00+00:00"
        );
        assert!(
            parse_time("yesterday", now)
                .unwrap_err()
                .contains("not a time")
        );
    }

    #[test]
    fn auth_failures_are_rate_limited_and_counted() {
        let mut limiter = AuthFailureLimiter::new();
        let start = Instant::now();
        let failure = AuthFailure {
            source: "127.0.0.1:1".into(),
            user: "x".repeat(500),
            keys: vec![],
        };
        let mut recorded = 0;
        for _ in 0..100 {
            recorded += limiter.admit(Some(&failure), start).len();
        }
        assert_eq!(recorded, AUTH_FAILURES_PER_MINUTE as usize);
        let later = limiter.admit(None, start + AUTH_WINDOW);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].event, EventKind::AuthFailuresSuppressed);
        assert_eq!(later[0].details["count"], 40);
        let first = limiter.admit(Some(&failure), start + AUTH_WINDOW);
        assert_eq!(first.len(), 1);
        assert!(first[0].details["user"].as_str().unwrap().len() < 100);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut r = AuditRecord::new(EventKind::Refused, "a");
        r.seq = 7;
        let line = serde_json::to_string(&r).unwrap();
        std::fs::write(&path, format!("{line}\n{{\"seq\":8,\"ti")).unwrap();
        let mut file = append_handle(&path).unwrap();
        assert_eq!(last_seq(&mut file).unwrap(), 7);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{line}\n"));
    }
}
