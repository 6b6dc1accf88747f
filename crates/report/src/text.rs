//! The report as plain text, for a terminal: one section a heading, one line a row.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::Report;

/// Text as typed, with anything that could drive a terminal (control, bidi, zero-width
/// characters) shown escaped instead.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}') {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "-".into())
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        plain(&items.join(","))
    }
}

/// The whole report as text.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "jitca access report");
    let _ = writeln!(
        o,
        "period: {} to {}",
        r.period
            .since
            .map(time)
            .unwrap_or_else(|| "the first record".into()),
        time(r.period.until)
    );
    let _ = writeln!(
        o,
        "chain: {} ({} records, head {}){}",
        if r.chain.intact { "intact" } else { "BROKEN" },
        r.chain.records,
        r.chain.head,
        r.chain
            .problem
            .as_deref()
            .map(|p| format!(": {}", plain(p)))
            .unwrap_or_default()
    );
    let t = &r.totals;
    let _ = writeln!(
        o,
        "totals: requested {}, issued {}, denied {}, lapsed {}, revoked {}, break-glass {}, \
         ended unreviewed {}, ended unused {}, reviewed {}, failed authentications {}",
        t.requested,
        t.issued,
        t.denied,
        t.lapsed,
        t.revoked,
        t.break_glass,
        t.unreviewed,
        t.unused,
        t.reviewed,
        t.failed_authentications
    );
    let _ = writeln!(o, "\ngrants ({}):", r.grants.len());
    for g in &r.grants {
        let _ = writeln!(
            o,
            "  {} {} serial {} rule {} hosts {} as {} approved by {} issued {} valid before {} \
             ended {}{} used {} review {}{}\n    reason: {}",
            plain(&g.id),
            plain(&g.requester),
            g.serial
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            plain(&g.rule),
            list(&g.hosts),
            list(&g.logins),
            if g.break_glass {
                "BREAK-GLASS".to_string()
            } else {
                list(&g.approvers)
            },
            time(g.issued_at),
            opt_time(g.valid_before),
            g.ended,
            g.ended_by
                .as_deref()
                .map(|b| format!(" by {}", plain(b)))
                .unwrap_or_default(),
            if g.used {
                format!("yes ({} logins)", g.logins_seen)
            } else {
                "no".into()
            },
            g.review
                .as_ref()
                .map(|v| format!("{} by {}", plain(&v.outcome), plain(&v.by)))
                .unwrap_or_else(|| "none".into()),
            g.review
                .as_ref()
                .filter(|v| !v.note.is_empty())
                .map(|v| format!(": {}", plain(&v.note)))
                .unwrap_or_default(),
            plain(&g.reason),
        );
    }
    for (title, rows) in [("denials", &r.denials), ("lapses", &r.lapses)] {
        let _ = writeln!(o, "\n{title} ({}):", rows.len());
        for d in rows {
            let _ = writeln!(
                o,
                "  {} {} hosts {} as {} at {} by {}{}\n    reason: {}",
                plain(&d.id),
                plain(&d.requester),
                list(&d.hosts),
                list(&d.logins),
                time(d.at),
                plain(&d.by),
                d.decision_reason
                    .as_deref()
                    .map(|w| format!(" ({})", plain(w)))
                    .unwrap_or_default(),
                plain(&d.reason),
            );
        }
    }
    let _ = writeln!(o, "\nrevocations ({}):", r.revocations.len());
    for v in &r.revocations {
        let _ = writeln!(
            o,
            "  {} serial {} {} by {} at {}: {}",
            plain(&v.id),
            v.serial
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            v.kind,
            plain(&v.by),
            time(v.at),
            plain(&v.reason)
        );
    }
    for (title, ids) in [
        ("break-glass uses", &r.break_glass),
        ("grants ended unreviewed", &r.unreviewed),
        ("grants ended unused", &r.unused),
    ] {
        let _ = writeln!(o, "\n{title} ({}): {}", ids.len(), list(ids));
    }
    let _ = writeln!(o, "\nrules in force ({}):", r.rules.len());
    if !r.rules_known {
        let _ = writeln!(o, "  (not known: give the config for the rules)");
    }
    for rule in &r.rules {
        let _ = writeln!(
            o,
            "  {} requesters {} hosts {} logins {} max {}s approvals {} by {}{}",
            plain(&rule.name),
            list(&rule.requesters),
            list(&rule.host_groups),
            list(&rule.logins),
            rule.max_duration_secs,
            rule.approvals,
            list(&rule.approvers),
            if rule.break_glass { " break-glass" } else { "" }
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use crate::Period;
    use crate::tests::{history, report_of};

    #[test]
    fn text_names_every_section_and_escapes_terminal_controls() {
        let mut log = history();
        log[2].reason = Some("a\u{1b}[31mred\u{202E}".into());
        let text = super::render(&report_of(&log, Period::default(), 120));
        for heading in [
            "grants (6)",
            "denials (1)",
            "lapses (1)",
            "revocations (2)",
            "break-glass uses (1): d",
            "rules in force (0)",
        ] {
            assert!(text.contains(heading), "{heading}\n{text}");
        }
        assert!(!text.contains('\u{1b}') && !text.contains('\u{202E}'));
        assert!(text.contains("a\\u{1b}[31mred\\u{202e}"), "{text}");
    }
}
