//! After access: the post-access review of every grant that needs one, the announcement that
//! a review is due, and whether a grant was used at all (read from `sshd`'s own logs).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::BufRead;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeDelta, Utc};
use jitca_store::{AuditRecord, EventKind, Review, ReviewOutcome, State, Store, Usage};
use sha2::{Digest, Sha256};

use crate::audit::{self, truncate};
use crate::swap::{self, Attempt, Changed, Step};
use crate::{Authority, AuthorityError, Caller, Notice};

/// Longest review note kept.
pub const MAX_NOTE: usize = 1000;
/// Most distinct logins kept per grant (each as a digest of its log line, so reading the same
/// log twice counts nothing twice); more are counted in `logins` only.
const MAX_SEEN_PER_GRANT: usize = 1000;
/// Longest sshd log line looked at; longer lines are not sshd's.
const MAX_LOG_LINE: usize = 8192;

impl Authority {
    /// Records the post-access review of an ended grant: by an approver of its rule or an
    /// auditor, never the requester; once.
    pub fn review(
        &self,
        caller: &Caller,
        id: &str,
        outcome: ReviewOutcome,
        note: &str,
    ) -> Result<jitca_store::Request, AuthorityError> {
        let policy = self.policy();
        let Changed::Written(next) = self.change_request::<Infallible>(id, |current| {
            let request = &current.request;
            if !policy.may_view(&caller.user, &request.requester, &crate::grant_of(request)) {
                return Err(AuthorityError::NotFound(id.to_string()));
            }
            if request.requester == caller.user {
                return Err(AuthorityError::Refused(format!(
                    "you cannot review your own access (request {id}); an approver of rule {} or an auditor does",
                    request.rule
                )));
            }
            if !policy.is_approver_of(&caller.user, &request.rule)
                && !policy.is_auditor(&caller.user)
            {
                return Err(AuthorityError::Refused(format!(
                    "only approvers of rule {} and auditors may review request {id}",
                    request.rule
                )));
            }
            let now = Utc::now();
            if let Some(review) = &request.review {
                return Err(AuthorityError::Conflict(format!(
                    "request {id} was reviewed already by {} ({})",
                    review.by,
                    review.outcome.as_str()
                )));
            }
            if request.issuance().is_none() {
                return Err(AuthorityError::Conflict(format!(
                    "request {id} was never issued, so there is no access to review: it is {}",
                    request.state_name(now)
                )));
            }
            if !request.ended(now) {
                return Err(AuthorityError::Conflict(format!(
                    "request {id}'s access has not ended yet; review it after it expires or is revoked (done, revoke)"
                )));
            }
            let mut next = request.clone();
            next.review = Some(Review {
                by: caller.user.clone(),
                at: now,
                outcome,
                note: note.to_string(),
            });
            let events: Vec<AuditRecord> = audit::reviewed(&next, caller).into_iter().collect();
            Ok(Step::Write(next, events))
        })?;
        self.durable()?;
        tracing::info!(%id, reviewer = %caller.user, outcome = outcome.as_str(), "grant reviewed");
        self.announce(id);
        Ok(next)
    }

    /// Announces (once) that an expired grant needs its review.
    pub(crate) fn announce_review_due(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AuthorityError> {
        let changed = self.change_request(id, |current| {
            let request = &current.request;
            if request.deadline().is_none_or(|d| now < d)
                || !matches!(request.state, State::Issued(_))
            {
                // Changed meanwhile (revoked, reviewed, announced), or not due.
                return Ok(Step::Keep(()));
            }
            let mut next = request.clone();
            next.review_due_announced = true;
            let events = vec![audit::review_due(&next)];
            Ok(Step::Write(next, events))
        })?;
        if let Changed::Written(next) = changed {
            self.durable()?;
            tracing::info!(id = %next.id, break_glass = next.break_glass, "review due");
            self.tell(Notice::ReviewDue, &next, None);
        }
        Ok(())
    }

    /// Reads an `sshd` log (for auditors) and records which grants were used.
    pub fn record_usage(
        &self,
        caller: &Caller,
        log: &mut dyn BufRead,
    ) -> Result<UsageReport, AuthorityError> {
        self.ensure_auditor(caller)?;
        let mut cas = vec![
            self.signer
                .public_key()
                .fingerprint(ssh_key::HashAlg::Sha256)
                .to_string(),
        ];
        cas.extend(
            self.earlier_cas
                .iter()
                .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string()),
        );
        let sightings = read_sshd_log(log, Utc::now())
            .map_err(|e| AuthorityError::Invalid(format!("cannot read the log: {e}")))?;
        let report = record_usage(
            self.store.as_ref(),
            &caller.user,
            Some(&caller.source),
            &sightings,
            &cas,
        )?;
        self.durable()?;
        for id in report.updated.keys() {
            self.announce(id);
        }
        Ok(report)
    }
}

/// One accepted login with a certificate, as an `sshd` log line tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The certificate's key id and serial.
    pub key_id: String,
    pub serial: u64,
    /// The CA key's fingerprint (`SHA256:...`), when the line names it.
    pub ca: Option<String>,
    /// The line's time, when it carries one (syslog or ISO 8601 prefix).
    pub at: Option<DateTime<Utc>>,
    /// The line's host name, when it carries one (syslog prefix).
    pub host: Option<String>,
    /// The login account.
    pub login: String,
    /// A digest of the whole line: the same line read twice is one login.
    pub digest: String,
    /// The line number in the log.
    pub line: usize,
}

/// What a log read found.
#[derive(Debug, Clone, Default)]
pub struct UsageReport {
    /// Certificate logins in the log.
    pub certificate_logins: usize,
    /// Of those, logins with jitca certificates no stored grant matches (another CA, or a key
    /// id and serial that do not go together).
    pub unmatched: usize,
    /// Of those, logins already recorded by an earlier read.
    pub already_recorded: usize,
    /// Grants with new logins: request id -> usage after this read.
    pub updated: BTreeMap<String, Usage>,
}

/// Reads `Accepted publickey for LOGIN from ADDR port N ssh2: TYPE-CERT SHA256:... ID KEYID
/// (serial N) CA TYPE SHA256:...` lines (sshd at `LogLevel VERBOSE` or `INFO`), from a file
/// written by syslog (`Mon DD HH:MM:SS host sshd[pid]: ...`), by rsyslog or journald in ISO
/// 8601 (`2026-11-30T01:02:03+00:00 host sshd[pid]: ...`), or by `sshd -E` (no time). Other
/// lines are skipped.
pub fn read_sshd_log(log: &mut dyn BufRead, now: DateTime<Utc>) -> std::io::Result<Vec<Sighting>> {
    let mut found = Vec::new();
    let mut buffer = Vec::new();
    let mut number = 0;
    loop {
        buffer.clear();
        if log.read_until(b'\n', &mut buffer)? == 0 {
            break;
        }
        number += 1;
        if buffer.len() > MAX_LOG_LINE {
            continue;
        }
        let line = String::from_utf8_lossy(&buffer);
        let line = line.trim_end_matches(['\n', '\r']);
        if let Some(sighting) = parse_line(line, number, now) {
            found.push(sighting);
        }
    }
    Ok(found)
}

fn parse_line(line: &str, number: usize, now: DateTime<Utc>) -> Option<Sighting> {
    let start = line.find("Accepted publickey for ")?;
    let (prefix, message) = line.split_at(start);
    // sshd's own message starts the line (`sshd -e`) or follows its syslog tag (`sshd[812]: `,
    // `sshd-session[812]: `). Anywhere else it is text someone else got logged, such as a
    // user name in "Invalid user ...": never counted.
    let tag = prefix.trim_end();
    if !tag.is_empty()
        && !tag
            .rsplit(' ')
            .next()
            .is_some_and(|t| t.starts_with("sshd") && t.ends_with(':'))
    {
        return None;
    }
    let rest = &message["Accepted publickey for ".len()..];
    let (login, rest) = rest.split_once(" from ")?;
    let (_, info) = rest.split_once(" ssh2: ")?;
    let mut words = info.split(' ');
    let key_type = words.next()?;
    if !key_type.ends_with("-CERT") {
        return None;
    }
    let _fingerprint = words.next()?;
    if words.next()? != "ID" {
        return None;
    }
    let key_id = words.next()?.to_string();
    let serial = words.next()?.strip_prefix("(serial")?;
    let serial = if serial.is_empty() {
        words.next()?.strip_suffix(')')?
    } else {
        return None;
    };
    let serial: u64 = serial.parse().ok()?;
    let ca = match (words.next(), words.next(), words.next()) {
        (Some("CA"), Some(_), Some(fp)) => Some(fp.to_string()),
        _ => None,
    };
    let (at, host) = parse_prefix(prefix.trim_end(), now);
    Some(Sighting {
        key_id,
        serial,
        ca,
        at,
        host,
        login: login.to_string(),
        digest: hex::encode(&Sha256::digest(line.as_bytes())[..12]),
        line: number,
    })
}

/// The time and host of a syslog-style prefix: `Nov 30 01:02:03 web1 sshd[12]:` or
/// `2026-11-30T01:02:03.123+00:00 web1 sshd[12]:`. A classic syslog time has no year: the
/// latest year that does not put it more than a day after `now`.
fn parse_prefix(prefix: &str, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<String>) {
    let words: Vec<&str> = prefix.split_whitespace().collect();
    if words.is_empty() {
        return (None, None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(words[0]) {
        let host = words
            .get(1)
            .filter(|h| !h.contains('['))
            .map(|h| h.to_string());
        return (Some(t.with_timezone(&Utc)), host);
    }
    if words.len() >= 3 {
        let text = format!("{} {} {} {}", now.year(), words[0], words[1], words[2]);
        if let Ok(naive) = NaiveDateTime::parse_from_str(&text, "%Y %b %d %H:%M:%S") {
            let mut t = naive.and_utc();
            if t > now + TimeDelta::days(1) {
                t = t.with_year(now.year() - 1).unwrap_or(t);
            }
            let host = words
                .get(3)
                .filter(|h| !h.contains('['))
                .map(|h| h.to_string());
            return (Some(t), host);
        }
    }
    (None, None)
}

/// What one grant's sightings came to.
enum Found {
    /// No issued request has this id.
    Unmatched,
    /// Sightings of another certificate, already recorded ones, and the usage written.
    Counted {
        unmatched: usize,
        already: usize,
        updated: Option<Usage>,
    },
}

/// Records sightings on the grants they belong to: a jitca key id names the request
/// (`jitca:ID:...`), and the key id and serial must both be the issuance's, from one of `cas`
/// (fingerprints; all when empty). Each grant with new logins gets one `usage_recorded` event.
pub fn record_usage(
    store: &dyn Store,
    actor: &str,
    source: Option<&str>,
    sightings: &[Sighting],
    cas: &[String],
) -> Result<UsageReport, AuthorityError> {
    let mut report = UsageReport {
        certificate_logins: sightings.len(),
        ..UsageReport::default()
    };
    let mut by_request: BTreeMap<String, Vec<&Sighting>> = BTreeMap::new();
    for s in sightings {
        let ours =
            s.ca.as_ref()
                .is_none_or(|ca| cas.is_empty() || cas.contains(ca));
        let id = s
            .key_id
            .strip_prefix("jitca:")
            .and_then(|rest| rest.split(':').next())
            .filter(|id| {
                !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        match id {
            Some(id) if ours => by_request.entry(id.to_string()).or_default().push(s),
            _ => report.unmatched += 1,
        }
    }
    for (id, seen) in by_request {
        // What this grant adds to the report: counted only once the pass is final (a lost
        // swap reads again and counts again).
        let found = swap::retry(
            || Ok(store.request(&id)?),
            |current| {
                let Some(current) = current else {
                    return Ok(Attempt::Done(Found::Unmatched));
                };
                let request = &current.request;
                let Some(issuance) = request.issuance() else {
                    return Ok(Attempt::Done(Found::Unmatched));
                };
                let matching: Vec<&&Sighting> = seen
                    .iter()
                    .filter(|s| s.key_id == issuance.key_id && s.serial == issuance.serial)
                    .collect();
                let unmatched = seen.len() - matching.len();
                let mut already = 0;
                let mut usage = request.usage.clone().unwrap_or(Usage {
                    logins: 0,
                    first: None,
                    last: None,
                    hosts: Vec::new(),
                    seen: Vec::new(),
                });
                let mut new = 0;
                for s in &matching {
                    if usage.seen.contains(&s.digest) {
                        already += 1;
                        continue;
                    }
                    new += 1;
                    usage.logins += 1;
                    if usage.seen.len() < MAX_SEEN_PER_GRANT {
                        usage.seen.push(s.digest.clone());
                    }
                    if let Some(at) = s.at {
                        usage.first = Some(usage.first.map_or(at, |f| f.min(at)));
                        usage.last = Some(usage.last.map_or(at, |l| l.max(at)));
                    }
                    if let Some(host) = &s.host
                        && !usage.hosts.contains(host)
                        && usage.hosts.len() < 64
                    {
                        usage.hosts.push(truncate(host, 255));
                    }
                }
                if new == 0 {
                    return Ok(Attempt::Done(Found::Counted {
                        unmatched,
                        already,
                        updated: None,
                    }));
                }
                let mut next = request.clone();
                next.usage = Some(usage.clone());
                let mut event = audit::about(EventKind::UsageRecorded, actor, &next)
                    .with("new_logins", new)
                    .with("logins", usage.logins)
                    .with("first", usage.first)
                    .with("last", usage.last)
                    .with("login_accounts", {
                        let mut logins: Vec<&str> =
                            matching.iter().map(|s| s.login.as_str()).collect();
                        logins.sort();
                        logins.dedup();
                        logins
                            .into_iter()
                            .map(|l| truncate(l, 64))
                            .collect::<Vec<_>>()
                    });
                event.serial = Some(issuance.serial);
                event.source = source.map(str::to_string);
                let swap = store.replace_request(&current, &next, &[event])?;
                Ok((
                    swap,
                    Found::Counted {
                        unmatched,
                        already,
                        updated: Some(usage),
                    },
                )
                    .into())
            },
        )?;
        match found {
            Found::Unmatched => report.unmatched += seen.len(),
            Found::Counted {
                unmatched,
                already,
                updated,
            } => {
                report.unmatched += unmatched;
                report.already_recorded += already;
                if let Some(usage) = updated {
                    report.updated.insert(id, usage);
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "Accepted publickey for root from 127.0.0.1 port 40162 ssh2: \
        ED25519-CERT SHA256:AbCd ID jitca:r7k2m9x4ab:alice:approvers=bob (serial 12) \
        CA ED25519 SHA256:CaFp";

    fn now() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    fn read(text: &str) -> Vec<Sighting> {
        read_sshd_log(&mut text.as_bytes(), now()).unwrap()
    }

    #[test]
    fn certificate_logins_are_read_from_every_log_format() {
        // sshd -E / -e: no time, no host.
        let plain = read(&format!("{INFO}\n"));
        assert_eq!(plain.len(), 1);
        let s = &plain[0];
        assert_eq!(s.key_id, "jitca:r7k2m9x4ab:alice:approvers=bob");
        assert_eq!(s.serial, 12);
        assert_eq!(s.ca.as_deref(), Some("SHA256:CaFp"));
        assert_eq!(s.login, "root");
        assert_eq!((s.at, s.host.as_deref()), (None, None));

        // Classic syslog: no year; the latest year not in the future.
        let syslog = read(&format!("Nov 30 11:58:01 web1 sshd[812]: {INFO}\n"));
        let session = read(&format!("Nov 30 11:58:01 web1 sshd-session[812]: {INFO}\n"));
        assert_eq!(session.len(), 1);
        assert_eq!(syslog[0].at, Some("2026-11-30T11:58:01Z".parse().unwrap()));
        assert_eq!(syslog[0].host.as_deref(), Some("web1"));
        let december = read(&format!("Dec 31 23:00:00 web1 sshd[812]: {INFO}\n"));
        assert_eq!(
            december[0].at,
            Some("2025-12-31T23:00:00Z".parse().unwrap())
        );

        // rsyslog / journalctl -o short-iso.
        let iso = read(&format!(
            "2026-11-30T12:58:01.123456+01:00 web2 sshd[9]: {INFO}\r\n"
        ));
        assert_eq!(
            iso[0].at,
            Some("2026-11-30T11:58:01.123456Z".parse().unwrap())
        );
        assert_eq!(iso[0].host.as_deref(), Some("web2"));
    }

    #[test]
    fn other_lines_are_skipped() {
        let log = "\
Accepted publickey for root from 127.0.0.1 port 1 ssh2: ED25519 SHA256:AbCd
Failed publickey for root from 127.0.0.1 port 1 ssh2: ED25519-CERT SHA256:AbCd ID x (serial 1) CA ED25519 SHA256:c
Accepted publickey for root from 127.0.0.1 port 1 ssh2: ED25519-CERT SHA256:AbCd ID x (serial nope) CA ED25519 SHA256:c
Accepted password for root from 127.0.0.1 port 1 ssh2
Server listening on 0.0.0.0 port 22.
Nov 30 11:58:01 web1 sshd[812]: Invalid user Accepted publickey for root from 1.2.3.4 port 1 ssh2: ED25519-CERT SHA256:x ID jitca:r7k2m9x4ab:alice:approvers=bob (serial 12) CA ED25519 SHA256:CaFp
Nov 30 11:58:01 web1 cron[9]: Accepted publickey for root from 1.2.3.4 port 1 ssh2: ED25519-CERT SHA256:x ID jitca:r7k2m9x4ab:alice:approvers=bob (serial 12) CA ED25519 SHA256:CaFp
";
        assert!(read(log).is_empty());
        // Not UTF-8 and overlong lines do not stop the read.
        let mut bytes = b"\xff\xfe garbage\n".to_vec();
        bytes.extend(vec![b'x'; MAX_LOG_LINE + 1]);
        bytes.push(b'\n');
        bytes.extend(format!("{INFO}\n").as_bytes());
        let found = read_sshd_log(&mut bytes.as_slice(), now()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 3);
    }

    #[test]
    fn the_same_line_has_the_same_digest() {
        let twice = read(&format!("{INFO}\n{INFO}\n"));
        assert_eq!(twice[0].digest, twice[1].digest);
        let other = read(&format!("{}\n", INFO.replace("40162", "40163")));
        assert_ne!(twice[0].digest, other[0].digest);
    }
}
