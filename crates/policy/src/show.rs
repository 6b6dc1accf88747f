//! Text from the file or from a person, made safe to print: quoted and escaped ([`show`]),
//! or kept as is with only control and invisible formatting characters escaped
//! ([`one_safe_line`]). Every message jitca prints about such text goes through one of these,
//! so a config line or a typed argument can never forge terminal output or log lines.

/// `text` in double quotes with everything but printable ASCII escaped (`\u{1b}`), cut after
/// 64 characters, so that echoing user input can never forge terminal output or log lines.
pub fn show(text: &str) -> String {
    const LIMIT: usize = 64;
    let mut out = String::with_capacity(text.len().min(LIMIT) + 2);
    out.push('"');
    for (i, c) in text.chars().enumerate() {
        if i == LIMIT {
            out.push_str("...");
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => out.extend(c.escape_unicode()),
        }
    }
    out.push('"');
    out
}

/// Bidi overrides and isolates and zero-width characters: they make text display differently
/// from what it is (CVE-2021-42574 "Trojan Source").
pub(crate) fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// `message` with every control and invisible formatting character escaped (`\u{1b}`): a
/// message may quote the file, or a library's words about it, and is printed on the operator's
/// terminal and in the daemon's log.
pub fn one_safe_line(message: &str) -> String {
    let mut safe = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() || is_invisible_format(c) {
            safe.extend(c.escape_unicode());
        } else {
            safe.push(c);
        }
    }
    safe
}
