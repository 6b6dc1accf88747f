//! How requests look: a table and key/value blocks for people, one JSON object a line for
//! programs. Text users typed is shown escaped, so it can never forge a line or a colour.

use chrono::{DateTime, Utc};
use jitca_authority::{AuditRecord, Request, State};
use jitca_policy::format_duration;
use serde_json::{Value, json};

/// Text as it may be printed to a terminal: control, bidi and zero-width characters escaped.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let invisible = c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}');
        if invisible {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn request_json(r: &Request, now: DateTime<Utc>) -> Value {
    let mut v = json!({
        "id": r.id,
        "requester": r.requester,
        "state": r.state_name(now),
        "rule": r.rule,
        "hosts": r.hosts,
        "logins": r.logins,
        "principals": r.principals,
        "duration": format_duration(std::time::Duration::from_secs(r.duration_secs)),
        "duration_secs": r.duration_secs,
        "reason": r.reason,
        "fingerprint": r.fingerprint,
        "extensions": r.extensions,
        "critical_options": r.critical_options,
        "approvals": r.approvers().collect::<Vec<_>>(),
        "approvals_needed": r.approvals_needed,
        "source": r.source,
        "created_at": time(r.created_at),
        "lapses_at": time(r.lapses_at),
        "break_glass": r.break_glass,
        "review_required": r.review_required,
        "requester_mfa": r.requester_mfa,
        "approvals_mfa": r.approvals.iter().filter(|a| a.mfa).map(|a| a.by.as_str()).collect::<Vec<_>>(),
        "used": r.usage.as_ref().map(|u| u.logins > 0),
    });
    let map = v.as_object_mut().expect("an object");
    if let Some(review) = &r.review {
        map.insert(
            "review".into(),
            json!({"by": review.by, "at": time(review.at), "outcome": review.outcome.as_str(), "note": review.note}),
        );
    }
    if let Some(u) = &r.usage {
        map.insert(
            "usage".into(),
            json!({"logins": u.logins, "first": u.first.map(time), "last": u.last.map(time), "hosts": u.hosts}),
        );
    }
    if let Some(i) = r.issuance() {
        map.insert("serial".into(), json!(i.serial));
        map.insert("key_id".into(), json!(i.key_id));
        map.insert("issued_at".into(), json!(time(i.issued_at)));
        map.insert("valid_after".into(), json!(time(i.valid_after)));
        map.insert("valid_before".into(), json!(time(i.valid_before)));
    }
    match &r.state {
        State::Revoked { revocation, .. } => {
            map.insert("revoked_by".into(), json!(revocation.by));
            map.insert("revoked_at".into(), json!(time(revocation.at)));
            map.insert("revoke_reason".into(), json!(revocation.reason));
        }
        State::Issued(_) => {}
        State::Denied { by, at, reason } => {
            map.insert("denied_by".into(), json!(by));
            map.insert("denied_at".into(), json!(time(*at)));
            map.insert("deny_reason".into(), json!(reason));
        }
        State::Lapsed { at } => {
            map.insert("lapsed_at".into(), json!(time(*at)));
        }
        State::Pending => {}
    }
    v
}

/// `show`: everything an approver approves, one `key: value` a line.
pub(crate) fn request_block(r: &Request, now: DateTime<Utc>, eligible: &[String]) -> String {
    let mut lines = vec![
        ("id", r.id.clone()),
        ("state", r.state_name(now).to_string()),
        (
            "break-glass",
            if r.break_glass {
                "YES: issued without approval; reviewed afterwards".to_string()
            } else {
                "no".to_string()
            },
        ),
        ("requester", clean(&r.requester)),
        ("reason", clean(&r.reason)),
        ("rule", r.rule.clone()),
        ("hosts", r.hosts.join(", ")),
        ("logins", r.logins.join(", ")),
        ("principals", r.principals.join(", ")),
        (
            "duration",
            format_duration(std::time::Duration::from_secs(r.duration_secs)),
        ),
        ("key", r.fingerprint.clone()),
        ("extensions", none_if_empty(r.extensions.join(", "))),
        (
            "critical options",
            none_if_empty(
                r.critical_options
                    .iter()
                    .map(|(k, v)| format!("{k}={}", clean(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ),
        (
            "approvals",
            format!(
                "{}/{}{}",
                r.approvals.len(),
                r.approvals_needed,
                if r.approvals.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.approvers().collect::<Vec<_>>().join(", "))
                }
            ),
        ),
        ("approvers", none_if_empty(eligible.join(", "))),
        ("second factor", factor_text(r)),
        ("created", time(r.created_at)),
        ("from", r.source.clone()),
    ];
    if let Some(i) = r.issuance() {
        lines.push(("serial", i.serial.to_string()));
        lines.push(("key id", i.key_id.clone()));
        lines.push((
            "valid",
            format!("{} to {}", time(i.valid_after), time(i.valid_before)),
        ));
    }
    match &r.state {
        State::Pending => lines.push(("lapses", time(r.lapses_at))),
        State::Issued(_) => {}
        State::Revoked { revocation, .. } => lines.push((
            "revoked",
            format!(
                "by {} at {}: {}",
                revocation.by,
                time(revocation.at),
                clean(&revocation.reason)
            ),
        )),
        State::Denied { by, at, reason } => {
            lines.push((
                "denied",
                format!("by {by} at {}: {}", time(*at), clean(reason)),
            ));
        }
        State::Lapsed { at } => lines.push(("lapsed", time(*at))),
    }
    if r.issuance().is_some() {
        lines.push(("review", review_text(r, now)));
        lines.push(("used", used_text(r)));
    }
    lines
        .into_iter()
        .map(|(k, v)| format!("{k:<17}{v}\n"))
        .collect()
}

/// Who gave a one-time code: the requester, and each approver.
fn factor_text(r: &Request) -> String {
    let mut who = Vec::new();
    if r.requester_mfa {
        who.push(format!("{} (request)", r.requester));
    }
    who.extend(
        r.approvals
            .iter()
            .filter(|a| a.mfa)
            .map(|a| format!("{} (approval)", a.by)),
    );
    none_if_empty(who.join(", "))
}

/// The post-access review: recorded, due, or not needed.
fn review_text(r: &Request, now: DateTime<Utc>) -> String {
    match &r.review {
        Some(review) => format!(
            "{} by {} at {}: {}",
            review.outcome.as_str(),
            review.by,
            time(review.at),
            clean(&review.note)
        ),
        None if r.ended(now) && r.review_required => "DUE (required)".into(),
        None if r.ended(now) => "none (optional)".into(),
        None if r.review_required => "required once access ends".into(),
        None => "optional, once access ends".into(),
    }
}

/// Logins seen in sshd logs read so far.
fn used_text(r: &Request) -> String {
    match &r.usage {
        None => "not seen in the sshd logs read so far".into(),
        Some(u) => {
            let mut text = format!("{} login{}", u.logins, if u.logins == 1 { "" } else { "s" });
            match (u.first, u.last) {
                (Some(first), Some(last)) if first == last => {
                    text += &format!(" at {}", time(first))
                }
                (Some(first), Some(last)) => {
                    text += &format!(", {} to {}", time(first), time(last))
                }
                _ => {}
            }
            if !u.hosts.is_empty() {
                text += &format!(" on {}", clean(&u.hosts.join(", ")));
            }
            text
        }
    }
}

/// The short review column of `list`.
fn review_cell(r: &Request, now: DateTime<Utc>) -> String {
    match &r.review {
        Some(review) => format!("{}:{}", review.outcome.as_str(), review.by),
        None if r.issuance().is_none() => "-".into(),
        None if r.ended(now) && r.review_required => "DUE".into(),
        None if r.ended(now) => "none".into(),
        None if r.review_required => "required".into(),
        None => "-".into(),
    }
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() { "none".into() } else { s }
}

/// `list`: one request a line, newest first.
pub(crate) fn table(requests: &[Request], now: DateTime<Utc>) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "STATE".into(),
        "REQUESTER".into(),
        "LOGINS".into(),
        "HOSTS".into(),
        "FOR".into(),
        "APPROVALS".into(),
        "REVIEW".into(),
        "USED".into(),
        "CREATED".into(),
        "REASON".into(),
    ]];
    for r in requests {
        let reason = clean(&r.reason);
        let reason = if reason.chars().count() > 40 {
            format!("{}…", reason.chars().take(39).collect::<String>())
        } else {
            reason
        };
        rows.push([
            r.id.clone(),
            r.state_name(now).into(),
            clean(&r.requester),
            r.logins.join(","),
            r.hosts.join(","),
            format_duration(std::time::Duration::from_secs(r.duration_secs)),
            if r.break_glass {
                "BREAK-GLASS".to_string()
            } else {
                format!("{}/{}", r.approvals.len(), r.approvals_needed)
            },
            review_cell(r, now),
            match (&r.usage, r.issuance()) {
                (_, None) => "-".to_string(),
                (None, Some(_)) => "no".to_string(),
                (Some(u), Some(_)) => u.logins.to_string(),
            },
            time(r.created_at),
            reason,
        ]);
    }
    let widths: Vec<usize> = (0..11)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
                }
            }
            line.trim_end().to_string() + "\n"
        })
        .collect()
}

/// `watch`: one line per change of a request the caller may approve.
/// When what a watch line shows happened: a pending request's last approval, or its making
/// (so a request pending before the watch began shows its own time, not the watch's); a
/// decision is shown as it happens.
fn watch_time(r: &Request, now: DateTime<Utc>) -> DateTime<Utc> {
    match &r.state {
        State::Pending => r.approvals.last().map_or(r.created_at, |a| a.at),
        _ => now,
    }
}

pub(crate) fn watch_line(r: &Request, now: DateTime<Utc>) -> String {
    let outcome = match &r.state {
        State::Issued(i) => format!(" serial {}", i.serial),
        State::Denied { by, reason, .. } => format!(" by {by}: {}", clean(reason)),
        State::Revoked { revocation, .. } => {
            format!(" by {}: {}", revocation.by, clean(&revocation.reason))
        }
        _ => String::new(),
    };
    format!(
        "{} {:<8} {}{} {} wants {} on {} for {} ({}/{} approvals) reason \"{}\"{outcome}\n",
        time(watch_time(r, now)),
        r.state_name(now),
        if r.break_glass { "BREAK-GLASS " } else { "" },
        r.id,
        clean(&r.requester),
        r.logins.join(","),
        r.hosts.join(","),
        format_duration(std::time::Duration::from_secs(r.duration_secs)),
        r.approvals.len(),
        r.approvals_needed,
        clean(&r.reason),
    )
}

/// What `usage` found: a summary line, then one line per grant with new logins.
pub fn usage_report(report: &jitca_authority::UsageReport) -> String {
    let mut out = format!(
        "{} certificate login{} read: {} newly recorded on {} grant{}, {} recorded before, {} not from a grant of this CA\n",
        report.certificate_logins,
        if report.certificate_logins == 1 {
            ""
        } else {
            "s"
        },
        report.certificate_logins - report.already_recorded - report.unmatched,
        report.updated.len(),
        if report.updated.len() == 1 { "" } else { "s" },
        report.already_recorded,
        report.unmatched,
    );
    for (id, usage) in &report.updated {
        out += &format!(
            "{id}  {} login{}{}\n",
            usage.logins,
            if usage.logins == 1 { "" } else { "s" },
            match (usage.first, usage.last) {
                (Some(first), Some(last)) => format!(", {} to {}", time(first), time(last)),
                _ => String::new(),
            }
        );
    }
    out
}

/// The header of the audit table.
pub const AUDIT_HEADER: &str = "SEQ     TIME                  EVENT                     ACTOR         REQUEST     SERIAL  DETAILS\n";

/// One audit record as a table row. Everything a user typed is escaped: no record can forge a
/// line, a colour or a reordering of the table.
pub fn audit_row(r: &AuditRecord) -> String {
    let mut details = Vec::new();
    if let Some(source) = &r.source {
        details.push(format!("from={}", clean(source)));
    }
    if !r.hosts.is_empty() {
        details.push(format!("hosts={}", clean(&r.hosts.join(","))));
    }
    if !r.logins.is_empty() {
        details.push(format!("logins={}", clean(&r.logins.join(","))));
    }
    if let Some(requester) = r.requester.as_deref().filter(|q| *q != r.actor) {
        details.push(format!("requester={}", clean(requester)));
    }
    for (key, value) in &r.details {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        details.push(format!("{key}={}", clean(&text)));
    }
    if let Some(reason) = &r.reason {
        details.push(format!("reason=\"{}\"", clean(reason)));
    }
    format!(
        "{:<7} {:<21} {:<25} {:<13} {:<11} {:<7} {}\n",
        r.seq,
        r.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        r.event.as_str(),
        clean(&r.actor),
        r.request
            .as_deref()
            .map(clean)
            .unwrap_or_else(|| "-".into()),
        r.serial
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into()),
        details.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_escapes_what_could_forge_output() {
        assert_eq!(clean("ok"), "ok");
        assert_eq!(clean("a\nb"), "a\\u{a}b");
        assert_eq!(clean("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(clean("x\u{202E}y"), "x\\u{202e}y");
        assert_eq!(clean("zero\u{200B}width"), "zero\\u{200b}width");
        assert_eq!(clean("café ✓"), "café ✓");
    }

    #[test]
    fn an_audit_row_is_one_line_whatever_was_typed() {
        let mut r = AuditRecord::new(jitca_authority::EventKind::Requested, "alice");
        r.reason = Some("fix\n9 fake row\u{1b}[2K\u{202e}".into());
        let row = audit_row(&r);
        assert_eq!(row.lines().count(), 1);
        assert!(
            row.contains("reason=\"fix\\u{a}9 fake row\\u{1b}[2K\\u{202e}\""),
            "{row}"
        );
    }
}
