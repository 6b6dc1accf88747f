//! The report as one self-contained HTML file: inline CSS, charts as inline SVG, no script and
//! nothing loaded from anywhere, so it can be mailed, archived and printed to PDF as it is.
//! Every text a user typed (or that came from the store) goes through [`escape`].

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::{Decision, GrantRow, Report};

/// Text made safe inside HTML elements and quoted attributes: `& < > " '` become entities;
/// control, bidi-override and zero-width characters are shown as `\u{..}` so they can neither
/// hide nor reorder what is around them.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control()
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
                    | '\u{2066}'..='\u{2069}' | '\u{FEFF}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "–".into())
}

/// 90 -> "1m 30s", 7200 -> "2h".
fn human(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "–".into()
    } else {
        items
            .iter()
            .map(|i| escape(i))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const CSS: &str = r#"
:root { --ink:#1d2733; --muted:#5b6775; --line:#d9dee4; --soft:#f4f6f8; --accent:#2f5d8a;
  --accent2:#9fbad4; --ok:#1f7a4d; --bad:#b3261e; --warn:#b25e00; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1180px; padding: 28px 32px 48px; color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 26px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 18px; margin: 34px 0 10px; padding-bottom: 6px; border-bottom: 2px solid var(--ink); }
h2 .count { color: var(--muted); font-weight: 400; }
.sub { color: var(--muted); margin: 0 0 16px; }
.chain { display: inline-block; padding: 8px 14px; border-radius: 6px; font-weight: 600; }
.chain.ok { background: #e6f4ec; color: var(--ok); border: 1px solid #b8dec8; }
.chain.bad { background: #fbe9e7; color: var(--bad); border: 1px solid #f0b9b3; }
.chain code { font-weight: 400; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
.totals { display: grid; grid-template-columns: repeat(5, 1fr); gap: 10px; margin: 20px 0 6px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: var(--soft); }
.card .n { font-size: 26px; font-weight: 700; line-height: 1.1; }
.card .l { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card.alert .n { color: var(--warn); }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; break-inside: avoid; }
figcaption { font-weight: 600; margin-bottom: 8px; }
figure.wide { grid-column: 1 / -1; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--ink); }
svg .bar { fill: var(--accent); } svg .bar2 { fill: var(--accent2); } svg .glass { fill: var(--warn); }
svg .axis { stroke: var(--line); } svg .max { stroke: var(--bad); stroke-width: 2; }
svg .muted { fill: var(--muted); }
.empty { color: var(--muted); font-style: italic; }
table { width: 100%; border-collapse: collapse; font-size: 12.5px; }
th { text-align: left; background: var(--soft); border-bottom: 1px solid var(--ink); padding: 6px 8px; white-space: nowrap; }
td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; overflow-wrap: anywhere; }
td.reason { max-width: 260px; }
td.mono { white-space: nowrap; }
tr.glass td:first-child { border-left: 4px solid var(--warn); }
.tag { display: inline-block; padding: 0 6px; border-radius: 4px; font-size: 11px; font-weight: 600; white-space: nowrap; }
.tag.live { background: #e3edf7; color: var(--accent); } .tag.expired { background: #eceff2; color: var(--muted); }
.tag.done { background: #e6f4ec; color: var(--ok); } .tag.revoked { background: #fbe9e7; color: var(--bad); }
.tag.bg { background: #fff1e0; color: var(--warn); } .tag.no { background: #fff1e0; color: var(--warn); }
.tag.yes { background: #e6f4ec; color: var(--ok); } .tag.concern { background: #fbe9e7; color: var(--bad); }
.legend { color: var(--muted); font-size: 12px; margin-top: 6px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; vertical-align: -1px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 10px; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5px; }
  .charts { grid-template-columns: 1fr 1fr; }
  h2 { break-after: avoid; }
  thead { display: table-header-group; }
  tr, figure, .card { break-inside: avoid; }
  .card, th, .tag, .chain { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"#;

/// The whole report as one HTML document.
pub fn render(r: &Report) -> String {
    let mut o = String::with_capacity(64 * 1024 + r.grants.len() * 600);
    let since = r
        .period
        .since
        .map(time)
        .unwrap_or_else(|| "the first record".into());
    let until = time(r.period.until);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>jitca access report: {} to {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(&since),
        escape(&until)
    );
    let _ = write!(
        o,
        "<header>\n<h1>Access report</h1>\n<p class=\"sub\">Temporary SSH access granted by \
         jitca. Period: <b>{}</b> to <b>{}</b>. Generated {}. Report format version {}.</p>\n",
        escape(&since),
        escape(&until),
        escape(&r.generated_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        r.version
    );
    if r.chain.intact {
        let _ = write!(
            o,
            "<div class=\"chain ok\" id=\"chain-status\">&#10003; Audit chain intact: {} records, \
             head <code>{}</code></div>\n</header>\n",
            r.chain.records,
            escape(&r.chain.head)
        );
    } else {
        let _ = write!(
            o,
            "<div class=\"chain bad\" id=\"chain-status\">&#10007; Audit chain BROKEN: {}</div>\n\
             </header>\n",
            escape(r.chain.problem.as_deref().unwrap_or("unknown"))
        );
    }
    totals(&mut o, r);
    charts(&mut o, r);
    grants_table(
        &mut o,
        "grants",
        "Grants",
        "Every certificate issued in the period.",
        &r.grants,
    );
    let glass: Vec<GrantRow> = r.grants.iter().filter(|g| g.break_glass).cloned().collect();
    grants_table(
        &mut o,
        "break-glass",
        "Break-glass uses",
        "Issued at once without approval; each needs a post-access review.",
        &glass,
    );
    decisions(&mut o, "denials", "Denials", &r.denials);
    decisions(&mut o, "lapses", "Lapsed requests", &r.lapses);
    revocations(&mut o, r);
    let pick = |ids: &[String]| -> Vec<GrantRow> {
        r.grants
            .iter()
            .filter(|g| ids.contains(&g.id))
            .cloned()
            .collect()
    };
    grants_table(
        &mut o,
        "unreviewed",
        "Grants ended unreviewed",
        "Ended (expired, done or revoked) with no post-access review recorded.",
        &pick(&r.unreviewed),
    );
    grants_table(
        &mut o,
        "unused",
        "Grants ended unused",
        "Ended with no login seen in the sshd logs given to jitca (`usage`).",
        &pick(&r.unused),
    );
    let _ = write!(
        o,
        "<section id=\"failed-auth\">\n<h2>Failed authentications</h2>\n<p>{} to the control \
         channel tried to authenticate and never did.</p>\n</section>\n",
        match r.totals.failed_authentications {
            1 => "1 connection".to_string(),
            n => format!("{n} connections"),
        }
    );
    rules(&mut o, r);
    let _ = write!(
        o,
        "<section id=\"verification\">\n<h2>Chain verification</h2>\n<table>\n<tbody>\n\
         <tr><th>records</th><td>{}</td></tr>\n<tr><th>head</th><td class=\"mono\">{}</td></tr>\n\
         <tr><th>intact</th><td>{}</td></tr>\n</tbody>\n</table>\n<p class=\"legend\">Every \
         record's hash and its link to the one before were checked while this report was built. \
         Compare the head with a signed checkpoint kept elsewhere \
         (<code>audit verify --checkpoint</code>).</p>\n</section>\n",
        r.chain.records,
        escape(&r.chain.head),
        if r.chain.intact {
            "yes".to_string()
        } else {
            format!(
                "<b>no</b>: {}",
                escape(r.chain.problem.as_deref().unwrap_or(""))
            )
        }
    );
    let _ = write!(
        o,
        "<footer>jitca access report · period {} to {} · {} records · head <span class=\"mono\">\
         {}</span></footer>\n</body>\n</html>\n",
        escape(&since),
        escape(&until),
        r.chain.records,
        escape(&r.chain.head)
    );
    o
}

fn totals(o: &mut String, r: &Report) {
    let t = &r.totals;
    let cards = [
        ("requested", t.requested, false),
        ("issued", t.issued, false),
        ("denied", t.denied, false),
        ("lapsed", t.lapsed, false),
        ("revoked", t.revoked, false),
        ("break-glass", t.break_glass, t.break_glass > 0),
        ("ended unreviewed", t.unreviewed, t.unreviewed > 0),
        ("ended unused", t.unused, t.unused > 0),
        ("reviewed", t.reviewed, false),
        ("failed authentications", t.failed_authentications, false),
    ];
    o.push_str("<section class=\"totals\" id=\"totals\">\n");
    for (label, n, alert) in cards {
        let _ = writeln!(
            o,
            "<div class=\"card{}\"><div class=\"n\">{n}</div><div class=\"l\">{label}</div></div>",
            if alert { " alert" } else { "" }
        );
    }
    o.push_str("</section>\n");
}

fn charts(o: &mut String, r: &Report) {
    o.push_str("<h2>At a glance</h2>\n<section class=\"charts\" id=\"charts\">\n");
    // Grants per day.
    let mut per_day: BTreeMap<chrono::NaiveDate, u64> = BTreeMap::new();
    if let (Some(first), Some(last)) = (r.grants.first(), r.grants.last()) {
        let (mut day, end) = (first.issued_at.date_naive(), last.issued_at.date_naive());
        // Every day between the first and the last grant, up to a year of bars.
        while day <= end && per_day.len() < 366 {
            per_day.insert(day, 0);
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
    }
    for g in &r.grants {
        if let Some(n) = per_day.get_mut(&g.issued_at.date_naive()) {
            *n += 1;
        }
    }
    let days: Vec<(String, f64)> = per_day
        .iter()
        .map(|(d, n)| (d.format("%m-%d").to_string(), *n as f64))
        .collect();
    figure(o, "Grants per day", true, &columns(&days, "grants", 1060.0));

    // Per host group (a grant counts once for each group it touches).
    let mut per_group: BTreeMap<String, f64> = BTreeMap::new();
    for g in &r.grants {
        let mut groups: Vec<&str> = r
            .host_groups
            .iter()
            .filter(|(_, hosts)| g.hosts.iter().any(|h| hosts.contains(h)))
            .map(|(name, _)| name.as_str())
            .collect();
        if groups.is_empty() {
            groups = g.hosts.iter().map(String::as_str).collect();
        }
        for name in groups {
            *per_group.entry(name.to_string()).or_default() += 1.0;
        }
    }
    let caption = if r.host_groups.is_empty() {
        "Grants per host (no config: host groups unknown)"
    } else {
        "Grants per host group"
    };
    figure(
        o,
        caption,
        false,
        &rows(&sorted(per_group), &|v| format!("{v}")),
    );

    let mut per_rule: BTreeMap<String, f64> = BTreeMap::new();
    for g in &r.grants {
        *per_rule.entry(g.rule.clone()).or_default() += 1.0;
    }
    figure(
        o,
        "Grants per rule",
        false,
        &rows(&sorted(per_rule), &|v| format!("{v}")),
    );

    // Time from request to issuance of grants that waited for an approver.
    let buckets: [(&str, i64); 7] = [
        ("< 1m", 60),
        ("1-5m", 300),
        ("5-15m", 900),
        ("15-60m", 3600),
        ("1-4h", 4 * 3600),
        ("4-24h", 86400),
        ("> 1d", i64::MAX),
    ];
    let mut counts = [0u64; 7];
    let mut waits = Vec::new();
    for g in r
        .grants
        .iter()
        .filter(|g| !g.break_glass && !g.approvers.is_empty())
    {
        if let Some(asked) = g.requested_at {
            let secs = (g.issued_at - asked).num_seconds().max(0);
            waits.push(secs);
            let i = buckets.iter().position(|(_, max)| secs < *max).unwrap_or(6);
            counts[i] += 1;
        }
    }
    waits.sort_unstable();
    let median = waits
        .get(waits.len() / 2)
        .map(|s| format!("median {}", human(*s as u64)))
        .unwrap_or_else(|| "no approvals".into());
    let hist: Vec<(String, f64)> = buckets
        .iter()
        .zip(counts)
        .map(|((l, _), n)| (l.to_string(), n as f64))
        .collect();
    figure(
        o,
        &format!("Time from request to approval ({median})"),
        false,
        &columns(&hist, "grants", 520.0),
    );
    figure(
        o,
        "Durations granted against the rule's maximum",
        false,
        &durations(r),
    );
    o.push_str("</section>\n");
}

fn sorted(map: BTreeMap<String, f64>) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if v.len() > 12 {
        let rest: f64 = v[11..].iter().map(|(_, n)| n).sum();
        let others = v.len() - 11;
        v.truncate(11);
        v.push((format!("{others} others"), rest));
    }
    v
}

fn figure(o: &mut String, caption: &str, wide: bool, svg: &str) {
    let _ = write!(
        o,
        "<figure{}>\n<figcaption>{}</figcaption>\n{svg}</figure>\n",
        if wide { " class=\"wide\"" } else { "" },
        escape(caption)
    );
}

const EMPTY: &str = "<p class=\"empty\">Nothing in this period.</p>\n";

/// Horizontal bars: a label, a bar, its value.
fn rows(items: &[(String, f64)], value: &dyn Fn(f64) -> String) -> String {
    if items.is_empty() {
        return EMPTY.into();
    }
    let (w, label_w, row_h) = (520.0, 130.0, 24.0);
    let max = items.iter().map(|(_, v)| *v).fold(1.0, f64::max);
    let h = items.len() as f64 * row_h + 6.0;
    let mut s =
        format!("<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\">\n");
    for (i, (label, v)) in items.iter().enumerate() {
        let y = i as f64 * row_h + 3.0;
        let bw = (w - label_w - 50.0) * v / max;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{label_w}\" y=\"{y}\" width=\"{bw:.1}\" height=\"{}\" rx=\"2\"/>\
             <text x=\"{:.1}\" y=\"{}\">{}</text>",
            label_w - 8.0,
            y + 14.0,
            escape(&short(label, 20)),
            row_h - 8.0,
            label_w + bw + 6.0,
            y + 14.0,
            escape(&value(*v)),
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Vertical columns with labels below, for a series (days, buckets).
fn columns(items: &[(String, f64)], unit: &str, w: f64) -> String {
    if items.is_empty() {
        return EMPTY.into();
    }
    let (h, left, bottom, top) = (190.0, 34.0, 26.0, 14.0);
    let max = items.iter().map(|(_, v)| *v).fold(1.0, f64::max).ceil();
    let slot = (w - left - 6.0) / items.len() as f64;
    // Thin bars for long series, never wider than 48 px.
    let bar = (slot * 0.7).clamp(1.0, 48.0);
    let plot = h - bottom - top;
    let mut s = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\">\n\
         <line class=\"axis\" x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\n\
         <text class=\"muted\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>\
         <text class=\"muted\" x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n",
        h - bottom,
        w - 4.0,
        h - bottom,
        left - 6.0,
        top + 4.0,
        left - 6.0,
        h - bottom,
    );
    // Label every k-th column so labels never overlap.
    let every = ((items.len() as f64 * 44.0) / (w - left)).ceil().max(1.0) as usize;
    for (i, (label, v)) in items.iter().enumerate() {
        let x = left + i as f64 * slot + (slot - bar) / 2.0;
        let bh = plot * v / max;
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" \
             rx=\"1\"><title>{}: {v} {unit}</title></rect>",
            h - bottom - bh,
            escape(label),
        );
        if *v > 0.0 && slot >= 18.0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v}</text>",
                x + bar / 2.0,
                h - bottom - bh - 3.0
            );
        }
        if i % every == 0 {
            let _ = write!(
                s,
                "<text class=\"muted\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                h - 8.0,
                escape(label)
            );
        }
        s.push('\n');
    }
    s.push_str("</svg>\n");
    s
}

/// Per rule: the longest and the mean duration granted, against the rule's maximum (a red
/// mark). Without the config the maximum is unknown and left out.
fn durations(r: &Report) -> String {
    let mut per_rule: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for g in &r.grants {
        per_rule.entry(&g.rule).or_default().push(g.duration_secs);
    }
    if per_rule.is_empty() {
        return EMPTY.into();
    }
    let maxima: BTreeMap<&str, u64> = r
        .rules
        .iter()
        .map(|rule| (rule.name.as_str(), rule.max_duration_secs))
        .collect();
    let scale = per_rule
        .iter()
        .map(|(name, d)| {
            maxima
                .get(name)
                .copied()
                .unwrap_or(0)
                .max(d.iter().copied().max().unwrap_or(0))
        })
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (w, label_w, row_h) = (520.0, 130.0, 34.0);
    let h = per_rule.len() as f64 * row_h + 6.0;
    let span = w - label_w - 130.0;
    let mut s =
        format!("<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\">\n");
    for (i, (rule, d)) in per_rule.iter().enumerate() {
        let y = i as f64 * row_h + 3.0;
        let longest = d.iter().copied().max().unwrap_or(0);
        let mean = d.iter().sum::<u64>() / d.len() as u64;
        let x = |secs: u64| label_w + span * secs as f64 / scale;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar2\" x=\"{label_w}\" y=\"{y}\" width=\"{:.1}\" height=\"12\" rx=\"2\"/>\
             <rect class=\"bar\" x=\"{label_w}\" y=\"{}\" width=\"{:.1}\" height=\"12\" rx=\"2\"/>",
            label_w - 8.0,
            y + 17.0,
            escape(&short(rule, 20)),
            x(longest) - label_w,
            y + 14.0,
            x(mean) - label_w,
        );
        let text = match maxima.get(rule) {
            Some(max) => {
                let _ = write!(
                    s,
                    "<line class=\"max\" x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\"/>",
                    x(*max),
                    y - 2.0,
                    x(*max),
                    y + 28.0
                );
                format!("{} / max {}", human(longest), human(*max))
            }
            None => human(longest),
        };
        let _ = writeln!(
            s,
            "<text class=\"muted\" x=\"{:.1}\" y=\"{}\">{}</text>",
            label_w + span + 8.0,
            y + 17.0,
            escape(&text)
        );
    }
    s.push_str(
        "</svg>\n<p class=\"legend\"><i style=\"background:#9fbad4\"></i>longest granted\
        <i style=\"background:#2f5d8a\"></i>mean granted<i style=\"background:#b3261e;width:3px\">\
        </i>rule maximum</p>\n",
    );
    s
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

fn grants_table(o: &mut String, id: &str, title: &str, note: &str, grants: &[GrantRow]) {
    let _ = write!(
        o,
        "<section id=\"{id}\">\n<h2>{title} <span class=\"count\">({})</span></h2>\n\
         <p class=\"legend\">{}</p>\n",
        grants.len(),
        escape(note)
    );
    if grants.is_empty() {
        o.push_str(EMPTY);
        o.push_str("</section>\n");
        return;
    }
    o.push_str(
        "<table class=\"grants\">\n<thead><tr><th>request</th><th>requester</th>\
         <th>approvers</th><th>hosts</th><th>logins</th><th>reason</th><th>rule</th>\
         <th>serial</th><th>issued</th><th>valid before</th><th>ended</th><th>used</th>\
         <th>review</th></tr></thead>\n<tbody>\n",
    );
    for g in grants {
        let ended = match (&g.ended_by, &g.end_reason) {
            (Some(by), Some(why)) if !why.is_empty() => format!(
                "<span class=\"tag {0}\">{0}</span><br>by {1}: {2}",
                g.ended,
                escape(by),
                escape(why)
            ),
            (Some(by), _) => format!(
                "<span class=\"tag {0}\">{0}</span><br>by {1}",
                g.ended,
                escape(by)
            ),
            _ => format!("<span class=\"tag {0}\">{0}</span>", g.ended),
        };
        let used = if g.used {
            format!("<span class=\"tag yes\">yes</span> {}", g.logins_seen)
        } else {
            "<span class=\"tag no\">no</span>".into()
        };
        let review = match &g.review {
            Some(v) => format!(
                "<span class=\"tag {}\">{}</span> {}<br>{}",
                if v.outcome == "ok" { "yes" } else { "concern" },
                escape(&v.outcome),
                escape(&v.by),
                escape(&v.note)
            ),
            None if g.ended == "live" => "–".into(),
            None => "<span class=\"tag no\">none</span>".into(),
        };
        let approvers = if g.break_glass {
            "<span class=\"tag bg\">break-glass</span>".to_string()
        } else {
            list(&g.approvers)
        };
        let _ = writeln!(
            o,
            "<tr{}><td class=\"mono\">{}</td><td>{}</td><td>{approvers}</td><td>{}</td>\
             <td>{}</td><td class=\"reason\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{ended}</td><td>{used}</td><td>{review}</td></tr>",
            if g.break_glass {
                " class=\"glass\""
            } else {
                ""
            },
            escape(&g.id),
            escape(&g.requester),
            list(&g.hosts),
            list(&g.logins),
            escape(&g.reason),
            escape(&g.rule),
            g.serial
                .map(|s| s.to_string())
                .unwrap_or_else(|| "–".into()),
            time(g.issued_at),
            opt_time(g.valid_before),
        );
    }
    o.push_str("</tbody>\n</table>\n</section>\n");
}

fn decisions(o: &mut String, id: &str, title: &str, rows: &[Decision]) {
    let _ = write!(
        o,
        "<section id=\"{id}\">\n<h2>{title} <span class=\"count\">({})</span></h2>\n",
        rows.len()
    );
    if rows.is_empty() {
        o.push_str(EMPTY);
        o.push_str("</section>\n");
        return;
    }
    o.push_str(
        "<table>\n<thead><tr><th>request</th><th>requester</th><th>hosts</th><th>logins</th>\
         <th>reason</th><th>rule</th><th>requested</th><th>ended</th><th>by</th><th>why</th>\
         </tr></thead>\n<tbody>\n",
    );
    for d in rows {
        let _ = writeln!(
            o,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"reason\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"reason\">{}</td></tr>",
            escape(&d.id),
            escape(&d.requester),
            list(&d.hosts),
            list(&d.logins),
            escape(&d.reason),
            escape(&d.rule),
            opt_time(d.requested_at),
            time(d.at),
            escape(&d.by),
            escape(d.decision_reason.as_deref().unwrap_or("–")),
        );
    }
    o.push_str("</tbody>\n</table>\n</section>\n");
}

fn revocations(o: &mut String, r: &Report) {
    let _ = write!(
        o,
        "<section id=\"revocations\">\n<h2>Revocations <span class=\"count\">({})</span></h2>\n\
         <p class=\"legend\">Certificates ended before they expired: <em>done</em> by the \
         requester, <em>revoked</em> by an approver, an auditor or jitca.</p>\n",
        r.revocations.len()
    );
    if r.revocations.is_empty() {
        o.push_str(EMPTY);
        o.push_str("</section>\n");
        return;
    }
    o.push_str(
        "<table>\n<thead><tr><th>request</th><th>serial</th><th>requester</th><th>how</th>\
         <th>by</th><th>at</th><th>reason</th></tr></thead>\n<tbody>\n",
    );
    for v in &r.revocations {
        let _ = writeln!(
            o,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td>\
             <td><span class=\"tag {kind}\">{kind}</span></td><td>{}</td><td>{}</td>\
             <td class=\"reason\">{}</td></tr>",
            escape(&v.id),
            v.serial
                .map(|s| s.to_string())
                .unwrap_or_else(|| "–".into()),
            escape(&v.requester),
            escape(&v.by),
            time(v.at),
            escape(&v.reason),
            kind = v.kind,
        );
    }
    o.push_str("</tbody>\n</table>\n</section>\n");
}

fn rules(o: &mut String, r: &Report) {
    let _ = write!(
        o,
        "<section id=\"rules\">\n<h2>Rules in force <span class=\"count\">({})</span></h2>\n",
        r.rules.len()
    );
    if !r.rules_known {
        o.push_str(
            "<p class=\"empty\">Not known: this report was built from a store alone. Build it \
             with the config (<code>--config</code>) to include the rules.</p>\n</section>\n",
        );
        return;
    }
    o.push_str(
        "<table>\n<thead><tr><th>rule</th><th>requesters</th><th>host groups</th><th>hosts</th>\
         <th>logins</th><th>max duration</th><th>approvals</th><th>approvers</th>\
         <th>review</th><th>reason pattern</th></tr></thead>\n<tbody>\n",
    );
    for rule in &r.rules {
        let _ = writeln!(
            o,
            "<tr{}><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
            if rule.break_glass {
                " class=\"glass\""
            } else {
                ""
            },
            escape(&rule.name),
            if rule.break_glass {
                " <span class=\"tag bg\">break-glass</span>"
            } else {
                ""
            },
            list(&rule.requesters),
            list(&rule.host_groups),
            list(&rule.hosts),
            list(&rule.logins),
            human(rule.max_duration_secs),
            rule.approvals,
            list(&rule.approvers),
            if rule.review_required || rule.break_glass {
                "required"
            } else {
                "optional"
            },
            escape(rule.reason_pattern.as_deref().unwrap_or("–")),
        );
    }
    o.push_str("</tbody>\n</table>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Period;
    use crate::tests::{history, report_of};

    #[test]
    fn escape_makes_markup_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(
            escape("a\u{202E}b\u{7}c\u{200B}"),
            "a\\u{202e}b\\u{7}c\\u{200b}"
        );
        assert_eq!(escape("plain web1 ünïcode"), "plain web1 ünïcode");
    }

    #[test]
    fn html_is_self_contained_and_escapes_what_users_typed() {
        let html = render(&report_of(&history(), Period::default(), 120));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.to_lowercase().contains("<script"), "no script at all");
        for remote in ["http://", "https://", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(remote), "{remote}");
        }
        assert!(
            html.contains("INC-1 &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;")
        );
        for section in [
            "id=\"grants\"",
            "id=\"break-glass\"",
            "id=\"denials\"",
            "id=\"lapses\"",
            "id=\"revocations\"",
            "id=\"unreviewed\"",
            "id=\"unused\"",
            "id=\"rules\"",
            "id=\"verification\"",
        ] {
            assert!(html.contains(section), "{section}");
        }
        assert_eq!(html.matches("<svg").count(), 5, "five charts");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(90), "1m 30s");
        assert_eq!(human(7200), "2h");
        assert_eq!(human(86400 + 60), "1d 1m");
    }
}
