//! Period reports: the evidence an auditor hands in, built from the audit chain alone.
//!
//! One pass over the chain both verifies it and folds every record into what happened to each
//! request; the report then keeps what falls in the period: every grant with its requester,
//! approvers, reason, certificate, how it ended, whether it was used and reviewed; denials,
//! lapses, revocations, break-glass uses, failed authentications; the rules in force; and the
//! chain's verification. The same [`build`] serves the control channel and the offline
//! `jitca report`, and [`Report`] renders as text, JSON ([`VERSION`]) or one self-contained
//! HTML file ([`html`]).

pub mod html;
mod text;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use jitca_policy::Policy;
use jitca_store::{AuditQuery, AuditRecord, EventKind, Store, StoreError};
use serde::Serialize;
use serde_json::Value;

pub use text::render as text;

/// The JSON's `version`: raised only when a field changes meaning or goes away.
pub const VERSION: u32 = 1;

/// The time range a report covers: records at or after `since` and before `until`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Period {
    fn contains(&self, t: DateTime<Utc>) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

/// A whole report. Every field is documented in `docs/audit.md`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: u32,
    pub generated_at: DateTime<Utc>,
    pub period: PeriodOut,
    pub chain: Chain,
    pub totals: Totals,
    pub grants: Vec<GrantRow>,
    pub denials: Vec<Decision>,
    pub lapses: Vec<Decision>,
    pub revocations: Vec<RevocationRow>,
    /// Ids of the grants taken by break-glass.
    pub break_glass: Vec<String>,
    /// Ids of the grants that ended without a review.
    pub unreviewed: Vec<String>,
    /// Ids of the grants that ended without a login seen in the sshd logs read.
    pub unused: Vec<String>,
    pub rules: Vec<RuleRow>,
    /// Whether `rules` is the policy in force (false offline without a config).
    pub rules_known: bool,
    /// Host group -> hosts, as configured (for the per-group chart).
    pub host_groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeriodOut {
    pub since: Option<DateTime<Utc>>,
    /// The end asked for, or the time of the report.
    pub until: DateTime<Utc>,
}

/// The chain's verification, done in the same pass that read it.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    pub records: u64,
    pub head: String,
    pub intact: bool,
    /// The first bad record, when not intact.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub requested: u64,
    pub issued: u64,
    pub denied: u64,
    pub lapsed: u64,
    pub revoked: u64,
    pub break_glass: u64,
    pub unreviewed: u64,
    pub unused: u64,
    pub reviewed: u64,
    pub failed_authentications: u64,
}

/// One grant: an issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRow {
    pub id: String,
    pub requester: String,
    pub approvers: Vec<String>,
    pub hosts: Vec<String>,
    pub logins: Vec<String>,
    pub reason: String,
    pub rule: String,
    pub serial: Option<u64>,
    pub requested_at: Option<DateTime<Utc>>,
    pub issued_at: DateTime<Utc>,
    pub valid_before: Option<DateTime<Utc>>,
    pub duration_secs: u64,
    pub break_glass: bool,
    pub review_required: bool,
    /// `live`, `expired`, `done` (ended by the requester) or `revoked`, as of the period's end.
    pub ended: &'static str,
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
    /// Whether sshd logged a login with the certificate (`usage`).
    pub used: bool,
    pub logins_seen: u64,
    pub review: Option<ReviewRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewRow {
    pub by: String,
    pub at: DateTime<Utc>,
    pub outcome: String,
    pub note: String,
}

/// A request that ended without a certificate: denied or lapsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub requester: String,
    pub hosts: Vec<String>,
    pub logins: Vec<String>,
    pub reason: String,
    pub rule: String,
    pub requested_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
    /// Who denied it (`jitca` for a lapse).
    pub by: String,
    /// The denier's reason (none for a lapse).
    pub decision_reason: Option<String>,
}

/// A certificate ended early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationRow {
    pub id: String,
    pub serial: Option<u64>,
    pub requester: String,
    /// `done` (the requester) or `revoked`.
    pub kind: &'static str,
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A rule of the policy in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRow {
    pub name: String,
    pub requesters: Vec<String>,
    pub host_groups: Vec<String>,
    pub hosts: Vec<String>,
    pub logins: Vec<String>,
    pub max_duration_secs: u64,
    pub approvals: u32,
    pub approvers: Vec<String>,
    pub break_glass: bool,
    pub review_required: bool,
    pub reason_pattern: Option<String>,
}

/// What the chain says about one request, as folded so far.
#[derive(Debug, Default)]
struct Facts {
    requester: String,
    hosts: Vec<String>,
    logins: Vec<String>,
    reason: String,
    rule: String,
    duration_secs: u64,
    break_glass: bool,
    review_required: bool,
    requested_at: Option<DateTime<Utc>>,
    approvers: Vec<String>,
    issued_at: Option<DateTime<Utc>>,
    serial: Option<u64>,
    valid_before: Option<DateTime<Utc>>,
    ended: Option<(&'static str, DateTime<Utc>, String, String)>,
    review: Option<ReviewRow>,
    logins_seen: u64,
    denied: Option<(DateTime<Utc>, String, Option<String>)>,
}

/// Folds audit records, in chain order, into a report.
pub struct Builder {
    period: Period,
    requests: HashMap<String, Facts>,
    requested: u64,
    failed_auth: u64,
    lapses: Vec<(String, DateTime<Utc>)>,
    denials: Vec<String>,
    revocations: Vec<RevocationRow>,
}

fn detail_str(r: &AuditRecord, key: &str) -> Option<String> {
    r.details
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn detail_time(r: &AuditRecord, key: &str) -> Option<DateTime<Utc>> {
    r.details
        .get(key)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn detail_u64(r: &AuditRecord, key: &str) -> Option<u64> {
    r.details.get(key).and_then(Value::as_u64)
}

fn detail_bool(r: &AuditRecord, key: &str) -> bool {
    r.details.get(key).and_then(Value::as_bool).unwrap_or(false)
}

impl Builder {
    pub fn new(period: Period) -> Self {
        Self {
            period,
            requests: HashMap::new(),
            requested: 0,
            failed_auth: 0,
            lapses: Vec::new(),
            denials: Vec::new(),
            revocations: Vec::new(),
        }
    }

    /// The next record of the chain. Records after the period are left out: the report
    /// shows how things stood at its end.
    pub fn add(&mut self, r: &AuditRecord) {
        if self.period.until.is_some_and(|u| r.time >= u) {
            return;
        }
        let within = self.period.contains(r.time);
        match r.event {
            EventKind::AuthFailed if within => self.failed_auth += 1,
            EventKind::AuthFailuresSuppressed if within => {
                self.failed_auth += detail_u64(r, "count").unwrap_or(0)
            }
            _ => {}
        }
        let Some(id) = r.request.as_deref() else {
            return;
        };
        if !matches!(
            r.event,
            EventKind::Requested
                | EventKind::Approved
                | EventKind::Issued
                | EventKind::Denied
                | EventKind::Lapsed
                | EventKind::Done
                | EventKind::Revoked
                | EventKind::Reviewed
                | EventKind::UsageRecorded
        ) {
            return;
        }
        // Looked up before inserting: no allocation for the id of a request seen before.
        if !self.requests.contains_key(id) {
            self.requests.insert(
                id.to_string(),
                Facts {
                    requester: r.requester.clone().unwrap_or_default(),
                    hosts: r.hosts.clone(),
                    logins: r.logins.clone(),
                    ..Facts::default()
                },
            );
        }
        let facts = self.requests.get_mut(id).expect("inserted above");
        match r.event {
            EventKind::Requested => {
                facts.reason = r.reason.clone().unwrap_or_default();
                facts.rule = detail_str(r, "rule").unwrap_or_default();
                facts.duration_secs = detail_u64(r, "duration_secs").unwrap_or(0);
                facts.break_glass = detail_bool(r, "break_glass");
                facts.review_required = detail_bool(r, "review_required");
                facts.requested_at = Some(r.time);
                if within {
                    self.requested += 1;
                }
            }
            EventKind::Approved if !facts.approvers.contains(&r.actor) => {
                facts.approvers.push(r.actor.clone());
            }
            EventKind::Issued => {
                facts.issued_at = Some(r.time);
                facts.serial = r.serial;
                facts.valid_before = detail_time(r, "valid_before");
                facts.break_glass |= detail_bool(r, "break_glass");
                if let Some(Value::Array(names)) = r.details.get("approvers") {
                    let names: Vec<String> = names
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect();
                    if !names.is_empty() {
                        facts.approvers = names;
                    }
                }
            }
            EventKind::Denied => {
                facts.denied = Some((r.time, r.actor.clone(), r.reason.clone()));
                if within {
                    self.denials.push(id.to_string());
                }
            }
            EventKind::Lapsed if within => self.lapses.push((id.to_string(), r.time)),
            EventKind::Done | EventKind::Revoked => {
                let kind = if r.event == EventKind::Done {
                    "done"
                } else {
                    "revoked"
                };
                let reason = r.reason.clone().unwrap_or_default();
                facts.ended = Some((kind, r.time, r.actor.clone(), reason.clone()));
                if within {
                    self.revocations.push(RevocationRow {
                        id: id.to_string(),
                        serial: r.serial.or(facts.serial),
                        requester: facts.requester.clone(),
                        kind,
                        by: r.actor.clone(),
                        at: r.time,
                        reason,
                    });
                }
            }
            EventKind::Reviewed => {
                facts.review = Some(ReviewRow {
                    by: r.actor.clone(),
                    at: r.time,
                    outcome: detail_str(r, "outcome").unwrap_or_default(),
                    note: detail_str(r, "note").unwrap_or_default(),
                });
            }
            EventKind::UsageRecorded => {
                facts.logins_seen = detail_u64(r, "logins").unwrap_or(facts.logins_seen);
            }
            _ => {}
        }
    }

    /// The report, with the chain's verification and the policy in force (if known).
    pub fn finish(self, chain: Chain, policy: Option<&Policy>, now: DateTime<Utc>) -> Report {
        let end = self.period.until.map_or(now, |u| u.min(now));
        let decision = |id: &str, f: &Facts, at, by: String, why| Decision {
            id: id.to_string(),
            requester: f.requester.clone(),
            hosts: f.hosts.clone(),
            logins: f.logins.clone(),
            reason: f.reason.clone(),
            rule: f.rule.clone(),
            requested_at: f.requested_at,
            at,
            by,
            decision_reason: why,
        };
        let mut grants: Vec<GrantRow> = self
            .requests
            .iter()
            .filter_map(|(id, f)| {
                let issued_at = f.issued_at.filter(|t| self.period.contains(*t))?;
                let (ended, ended_at, ended_by, end_reason) = match &f.ended {
                    Some((kind, at, by, why)) => {
                        (*kind, Some(*at), Some(by.clone()), Some(why.clone()))
                    }
                    None => match f.valid_before {
                        Some(v) if v <= end => ("expired", Some(v), None, None),
                        _ => ("live", None, None, None),
                    },
                };
                Some(GrantRow {
                    id: id.clone(),
                    requester: f.requester.clone(),
                    approvers: f.approvers.clone(),
                    hosts: f.hosts.clone(),
                    logins: f.logins.clone(),
                    reason: f.reason.clone(),
                    rule: f.rule.clone(),
                    serial: f.serial,
                    requested_at: f.requested_at,
                    issued_at,
                    valid_before: f.valid_before,
                    duration_secs: f.duration_secs,
                    break_glass: f.break_glass,
                    review_required: f.review_required,
                    ended,
                    ended_at,
                    ended_by,
                    end_reason,
                    used: f.logins_seen > 0,
                    logins_seen: f.logins_seen,
                    review: f.review.clone(),
                })
            })
            .collect();
        grants.sort_by(|a, b| (a.issued_at, &a.id).cmp(&(b.issued_at, &b.id)));
        let denials: Vec<Decision> = self
            .denials
            .iter()
            .filter_map(|id| {
                let f = self.requests.get(id)?;
                let (at, by, why) = f.denied.clone()?;
                Some(decision(id, f, at, by, why))
            })
            .collect();
        let lapses: Vec<Decision> = self
            .lapses
            .iter()
            .filter_map(|(id, at)| {
                let f = self.requests.get(id)?;
                Some(decision(id, f, *at, "jitca".into(), None))
            })
            .collect();
        let ids = |keep: &dyn Fn(&GrantRow) -> bool| {
            grants
                .iter()
                .filter(|g| keep(g))
                .map(|g| g.id.clone())
                .collect::<Vec<_>>()
        };
        let break_glass = ids(&|g| g.break_glass);
        let unreviewed = ids(&|g| g.ended != "live" && g.review.is_none());
        let unused = ids(&|g| g.ended != "live" && !g.used);
        let totals = Totals {
            requested: self.requested,
            issued: grants.len() as u64,
            denied: denials.len() as u64,
            lapsed: lapses.len() as u64,
            revoked: self.revocations.len() as u64,
            break_glass: break_glass.len() as u64,
            unreviewed: unreviewed.len() as u64,
            unused: unused.len() as u64,
            reviewed: grants.iter().filter(|g| g.review.is_some()).count() as u64,
            failed_authentications: self.failed_auth,
        };
        let (rules, host_groups) = match policy {
            Some(p) => (
                p.rules()
                    .iter()
                    .map(|r| RuleRow {
                        name: r.name.clone(),
                        requesters: r.requesters.clone(),
                        host_groups: r.host_groups.clone(),
                        hosts: p.hosts_of_rule(r),
                        logins: r.logins.clone(),
                        max_duration_secs: r.max_duration.as_secs(),
                        approvals: r.approvals,
                        approvers: r.approvers.clone(),
                        break_glass: r.break_glass,
                        review_required: r.review_required,
                        reason_pattern: r.reason_pattern.as_ref().map(|p| p.as_str().to_string()),
                    })
                    .collect(),
                p.host_groups()
                    .map(|(name, hosts)| (name.to_string(), hosts.to_vec()))
                    .collect(),
            ),
            None => (Vec::new(), BTreeMap::new()),
        };
        Report {
            version: VERSION,
            generated_at: now,
            period: PeriodOut {
                since: self.period.since,
                until: end,
            },
            chain,
            totals,
            grants,
            denials,
            lapses,
            revocations: self.revocations,
            break_glass,
            unreviewed,
            unused,
            rules_known: policy.is_some(),
            rules,
            host_groups,
        }
    }
}

/// Builds the report for `period` from `store`: one pass that verifies the chain and folds its
/// records. A broken chain is reported (`intact: false`, the first bad record) and its records
/// are still read, without their checks, so the report shows what the store holds.
pub fn build(
    store: &dyn Store,
    policy: Option<&Policy>,
    period: Period,
    now: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let mut builder = Builder::new(period);
    let outcome = jitca_store::verify_audit_visit(store, &mut |r| builder.add(r))?;
    let chain = match outcome {
        Ok(head) => Chain {
            records: head.seq,
            head: head.hash,
            intact: true,
            problem: None,
        },
        Err(broken) => {
            builder = Builder::new(period);
            let mut last = None;
            store.scan_audit(&AuditQuery::default(), &mut |r, _| {
                builder.add(r);
                last = Some((r.seq, r.hash.clone().unwrap_or_default()));
                true
            })?;
            let (records, head) = last.unwrap_or_default();
            Chain {
                records,
                head,
                intact: false,
                problem: Some(broken.to_string()),
            }
        }
    };
    Ok(builder.finish(chain, policy, now))
}

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text for a terminal.
    Text,
    /// One JSON object (`docs/audit.md` documents every field).
    Json,
    /// One self-contained HTML file ([`html`]).
    Html,
}

impl Format {
    /// `text`, `json` or `html`; the error names the choices.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "html" => Ok(Format::Html),
            other => Err(format!(
                "unknown format {:?}; use text, json or html",
                other.chars().take(40).collect::<String>()
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Html => "html",
        }
    }

    /// The report written in this format.
    pub fn render(self, report: &Report) -> String {
        match self {
            Format::Text => text(report),
            Format::Json => report.json(),
            Format::Html => html::render(report),
        }
    }
}

impl Report {
    /// The report as one JSON object (pretty-printed, ending in a newline).
    pub fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a report always serialises");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn ev(kind: EventKind, actor: &str, id: &str, at: i64) -> AuditRecord {
        let mut r = AuditRecord::new(kind, actor);
        r.request = Some(id.into());
        r.requester = Some("alice".into());
        r.hosts = vec!["web1".into()];
        r.logins = vec!["deploy".into()];
        r.time = t(at);
        r
    }

    fn requested(id: &str, at: i64, reason: &str, break_glass: bool) -> AuditRecord {
        let mut r = ev(EventKind::Requested, "alice", id, at)
            .with("rule", if break_glass { "glass" } else { "web" })
            .with("duration_secs", 1800)
            .with("break_glass", break_glass)
            .with("review_required", break_glass);
        r.reason = Some(reason.into());
        r
    }

    fn issued(id: &str, at: i64, serial: u64, approvers: &[&str]) -> AuditRecord {
        let mut r = ev(EventKind::Issued, "bob", id, at)
            .with("valid_before", t(at + 30))
            .with("approvers", approvers);
        r.serial = Some(serial);
        r
    }

    /// A known history: approved and used and reviewed (a), denied (b), lapsed (c),
    /// break-glass unreviewed (d), done (e), revoked (f), live (g), and one before the period.
    pub(crate) fn history() -> Vec<AuditRecord> {
        let mut log = vec![
            requested("old", -100, "before the period", false),
            issued("old", -90, 1, &["bob"]),
            requested(
                "a",
                0,
                "INC-1 <script>alert(1)</script> & \"quotes\"",
                false,
            ),
            ev(EventKind::Approved, "bob", "a", 5),
            issued("a", 5, 2, &["bob"]),
            requested("b", 10, "INC-2", false),
            requested("c", 11, "INC-3", false),
            requested("d", 12, "outage", true),
            issued("d", 12, 3, &[]),
            requested("e", 13, "INC-5", false),
            issued("e", 20, 4, &["carol"]),
            requested("f", 21, "INC-6", false),
            issued("f", 22, 5, &["bob"]),
            ev(EventKind::Done, "alice", "e", 25),
            ev(EventKind::Revoked, "carol", "f", 26),
            ev(EventKind::UsageRecorded, "ivy", "a", 40).with("logins", 2),
            ev(EventKind::Reviewed, "ivy", "a", 41)
                .with("outcome", "ok")
                .with("note", "fine"),
            requested("g", 100, "INC-7", false),
            issued("g", 101, 6, &["bob"]),
            AuditRecord::new(EventKind::AuthFailed, "-"),
            AuditRecord::new(EventKind::AuthFailuresSuppressed, "-").with("count", 7),
        ];
        log[19].time = t(50);
        log[20].time = t(51);
        let mut denied = ev(EventKind::Denied, "bob", "b", 14);
        denied.reason = Some("no".into());
        log.push(denied);
        log.push(ev(EventKind::Lapsed, "jitca", "c", 70));
        log[14].reason = Some("compromised laptop".into());
        log.sort_by_key(|r| r.time);
        log
    }

    pub(crate) fn report_of(log: &[AuditRecord], period: Period, now: i64) -> Report {
        let mut b = Builder::new(period);
        for r in log {
            b.add(r);
        }
        let chain = Chain {
            records: log.len() as u64,
            head: "ab".repeat(32),
            intact: true,
            problem: None,
        };
        b.finish(chain, None, t(now))
    }

    #[test]
    fn a_known_history_gives_exact_totals() {
        let period = Period {
            since: Some(t(0)),
            until: None,
        };
        let r = report_of(&history(), period, 120);
        assert_eq!(
            r.totals,
            Totals {
                requested: 7,
                issued: 5,
                denied: 1,
                lapsed: 1,
                revoked: 2,
                break_glass: 1,
                unreviewed: 3,
                unused: 3,
                reviewed: 1,
                failed_authentications: 8,
            }
        );
        let ids: Vec<&str> = r.grants.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["a", "d", "e", "f", "g"]);
        let a = &r.grants[0];
        assert_eq!((a.ended, a.used, a.logins_seen), ("expired", true, 2));
        assert_eq!(a.approvers, ["bob"]);
        assert_eq!(a.review.as_ref().unwrap().outcome, "ok");
        assert_eq!(r.grants[2].ended, "done");
        assert_eq!(r.grants[3].ended, "revoked");
        assert_eq!(
            r.grants[3].end_reason.as_deref(),
            Some("compromised laptop")
        );
        assert_eq!(r.grants[4].ended, "live");
        assert_eq!(r.break_glass, ["d"]);
        assert_eq!(r.unreviewed, ["d", "e", "f"]);
        assert_eq!(r.unused, ["d", "e", "f"]);
        assert_eq!(r.denials[0].decision_reason.as_deref(), Some("no"));
        assert_eq!(r.lapses[0].id, "c");
    }

    #[test]
    fn the_period_bounds_what_is_counted_and_how_things_stood() {
        // Until minute 24: e is not done yet, f not revoked, a not yet reviewed or used.
        let period = Period {
            since: Some(t(0)),
            until: Some(t(24)),
        };
        let r = report_of(&history(), period, 120);
        assert_eq!(r.totals.issued, 4);
        assert_eq!(r.totals.revoked, 0);
        assert_eq!(r.totals.lapsed, 0);
        assert_eq!(r.period.until, t(24));
        let e = r.grants.iter().find(|g| g.id == "e").unwrap();
        assert_eq!(e.ended, "live");
        let a = &r.grants[0];
        assert!(!a.used && a.review.is_none());
        assert_eq!(a.ended, "live", "valid until minute 35");
    }

    #[test]
    fn json_has_the_contract_fields() {
        let r = report_of(&history(), Period::default(), 120);
        let v: Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["version"], 1);
        for key in ["since", "until"] {
            assert!(v["period"].get(key).is_some(), "{key}");
        }
        for key in ["records", "head", "intact"] {
            assert!(v["chain"].get(key).is_some(), "{key}");
        }
        for key in [
            "requested",
            "issued",
            "denied",
            "lapsed",
            "revoked",
            "break_glass",
            "unreviewed",
            "unused",
        ] {
            assert!(v["totals"][key].is_u64(), "{key}");
        }
        for key in [
            "id",
            "requester",
            "approvers",
            "hosts",
            "logins",
            "reason",
            "serial",
            "issued_at",
            "valid_before",
            "ended",
            "used",
            "review",
        ] {
            assert!(v["grants"][0].get(key).is_some(), "{key}");
        }
        assert!(v["rules"].is_array());
        assert_eq!(v["totals"]["issued"], 6, "the whole chain without a period");
    }
}
