//! The one-line, Slack-compatible `text` of an alert, built so that no field can smuggle
//! markup into the channel.
//!
//! Slack reads `<...>` as a link or a mention (`<!channel>`, `<@U123>`, `<https://x|label>`)
//! and `&` as the start of an entity; its documentation asks for exactly `&`, `<` and `>` to be
//! escaped, which is what makes every such sequence inert. The requester's reason is free text,
//! so beyond that escaping every name also loses its control, bidirectional and zero-width
//! characters (which could reorder or hide what a reader sees) and is capped in length.

use crate::{Alert, AlertKind};

/// How many characters of the requester's reason reach the `text`: enough for a ticket
/// reference and a sentence, too few to bury the rest of the line.
pub const REASON_CHARS: usize = 300;
/// How many characters of any other single name (user, host, login, rule, id) reach the `text`.
pub const NAME_CHARS: usize = 100;
/// How many hosts or logins are listed before the rest are counted ("and 3 more").
pub const LIST_ITEMS: usize = 10;

/// Stands in for every character that is removed.
const REPLACEMENT: char = '\u{FFFD}';

/// True for the characters that may not reach a chat message as they are: C0/C1 controls and
/// DEL, line/paragraph separators, bidirectional embeddings, overrides, isolates and marks, and
/// zero-width or invisible formatting characters.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'              // soft hyphen
            | '\u{034F}'            // combining grapheme joiner
            | '\u{061C}'            // Arabic letter mark
            | '\u{115F}' | '\u{1160}' // Hangul fillers
            | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels
            | '\u{180E}'            // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space/non-joiner/joiner, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, LRE, RLE, PDF, LRO, RLO
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, LRI..PDI, deprecated
            | '\u{3164}'            // Hangul filler
            | '\u{FE00}'..='\u{FE0F}' // variation selectors
            | '\u{FEFF}'            // zero-width no-break space (BOM)
            | '\u{FFA0}'            // halfwidth Hangul filler
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
            | '\u{E0000}'..='\u{E007F}' // tags
        )
}

/// `s` made safe for a Slack `text`: hidden characters replaced, at most `max` characters kept
/// (an ellipsis marks a cut), then `&`, `<` and `>` escaped.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4) + 8);
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if hidden(c) => out.push(REPLACEMENT),
            c => out.push(c),
        }
    }
    out
}

/// A name for the `text`; an empty one shows as `?` so that a sentence never has a hole in it.
fn name(s: &str) -> String {
    if s.is_empty() {
        "?".to_owned()
    } else {
        clean(s, NAME_CHARS)
    }
}

/// A list of names for the `text`: `web1, web2 and 3 more`.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "?".to_owned();
    }
    let shown: Vec<String> = items.iter().take(LIST_ITEMS).map(|s| name(s)).collect();
    let mut out = shown.join(", ");
    if items.len() > LIST_ITEMS {
        out.push_str(&format!(" and {} more", items.len() - LIST_ITEMS));
    }
    out
}

/// The shortest exact form of a duration in seconds, as the policy writes them: `30m`, `2h`,
/// `1d`, `90s`.
pub fn human_duration(secs: u64) -> String {
    for (size, unit) in [(86_400, 'd'), (3_600, 'h'), (60, 'm')] {
        if secs != 0 && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// The one-line sentence for `alert`, every field cleaned.
pub fn render(alert: &Alert) -> String {
    let requester = name(&alert.requester);
    let by = alert.by.as_deref().map(name);
    let outcome = alert.outcome.as_deref().map(name);
    let cert = alert
        .serial
        .map(|s| format!("certificate {s}"))
        .unwrap_or_else(|| "a certificate".to_owned());
    let duration = if alert.duration_secs > 0 {
        format!(" for {}", human_duration(alert.duration_secs))
    } else {
        String::new()
    };
    // "web1 as deploy for 30m under rule prod (request abc123)"
    let subject = format!(
        "{} as {}{duration} under rule {} (request {})",
        list(&alert.hosts),
        list(&alert.logins),
        name(&alert.rule),
        name(&alert.id),
    );
    let tag = if alert.break_glass && alert.event != AlertKind::BreakGlass {
        " [break-glass]"
    } else {
        ""
    };

    let sentence = match alert.event {
        AlertKind::RequestMade => format!("jitca: {requester} requested {subject}"),
        AlertKind::Decided => match (outcome.as_deref(), by.as_deref()) {
            (Some("issued" | "approved"), Some(by)) => format!(
                "jitca: {by} approved {requester}'s request for {subject}{tag}; {cert} issued"
            ),
            (Some("issued" | "approved"), None) => format!(
                "jitca: {requester}'s request for {subject}{tag} was approved; {cert} issued"
            ),
            (Some("denied"), Some(by)) => {
                format!("jitca: {by} denied {requester}'s request for {subject}{tag}")
            }
            (Some("denied"), None) => {
                format!("jitca: {requester}'s request for {subject}{tag} was denied")
            }
            (Some(other), Some(by)) => {
                format!("jitca: {requester}'s request for {subject}{tag} ended: {other} by {by}")
            }
            (Some(other), None) => {
                format!("jitca: {requester}'s request for {subject}{tag} ended: {other}")
            }
            (None, Some(by)) => {
                format!("jitca: {by} decided {requester}'s request for {subject}{tag}")
            }
            (None, None) => format!("jitca: {requester}'s request for {subject}{tag} was decided"),
        },
        AlertKind::Checkpoint => {
            // "records N" and "head HEX" lines of the checkpoint text.
            let field = |name: &str| {
                alert
                    .checkpoint
                    .as_deref()
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| clean(v, 64))
                    .unwrap_or_else(|| "?".to_owned())
            };
            format!(
                "jitca: audit checkpoint: {} records, head {}",
                field("records "),
                field("head ")
            )
        }
        AlertKind::BreakGlass => format!(
            ":rotating_light: BREAK-GLASS: jitca issued {cert} to {requester} without approval \
             for {subject}; a post-access review is due"
        ),
        AlertKind::Revoked => {
            let by = by
                .map(|b| format!("{b} revoked"))
                .unwrap_or_else(|| "revoked".to_owned());
            format!("jitca: {by} {cert} of {requester}{tag} for {subject}")
        }
        AlertKind::ReviewDue => match (outcome.as_deref(), by.as_deref()) {
            (Some("done"), Some(by)) => {
                format!("jitca: {by} reviewed {requester}'s access{tag} to {subject}")
            }
            (Some(other), Some(by)) => format!(
                "jitca: post-access review of {requester}'s access{tag} to {subject}: {other} \
                 by {by}"
            ),
            (Some(other), None) => format!(
                "jitca: post-access review of {requester}'s access{tag} to {subject}: {other}"
            ),
            (None, _) => {
                format!("jitca: post-access review due for {requester}'s access{tag} to {subject}")
            }
        },
    };

    if alert.reason.is_empty() {
        sentence
    } else {
        format!("{sentence}: \"{}\"", clean(&alert.reason, REASON_CHARS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_escapes_and_replaces() {
        assert_eq!(clean("a&b<c>d", 100), "a&amp;b&lt;c&gt;d");
        assert_eq!(
            clean("x\u{202E}y\u{200B}z\n\u{7}", 100),
            "x\u{FFFD}y\u{FFFD}z\u{FFFD}\u{FFFD}"
        );
        assert_eq!(clean("héllo wörld", 100), "héllo wörld");
        assert_eq!(clean("abcdef", 3), "abc…");
        assert_eq!(clean("abc", 3), "abc");
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(1800), "30m");
        assert_eq!(human_duration(7200), "2h");
        assert_eq!(human_duration(86_400), "1d");
        assert_eq!(human_duration(90), "90s");
        assert_eq!(human_duration(5400), "90m");
        assert_eq!(human_duration(0), "0s");
    }

    #[test]
    fn long_lists_are_counted() {
        let hosts: Vec<String> = (0..13).map(|n| format!("h{n}")).collect();
        let shown = list(&hosts);
        assert!(shown.ends_with("h9 and 3 more"), "{shown}");
        assert_eq!(list(&[]), "?");
    }
}
