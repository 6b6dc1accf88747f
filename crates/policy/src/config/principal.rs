//! `principal_format`: how a (login, host) pair becomes a certificate principal. It must hold
//! `{login}` and `{host}` once each, nothing that would split, comment out or blur a principal
//! in sshd's principals files, and a separator that keeps different pairs apart.

use crate::document::Problems;
use crate::locate::YamlPath;
use crate::names::show;

/// `{login}` and `{host}` once each, nothing that would split, comment out or blur a principal,
/// and a separator that keeps different (login, host) pairs from giving the same principal.
pub(super) fn check(format: &str, path: &YamlPath, problems: &mut Problems<'_>) {
    if format.is_empty() {
        problems.at(path, "is empty; the default is \"{login}@{host}\"");
        return;
    }
    if let Some(c) = format.chars().find(|c| !c.is_ascii_graphic()) {
        let what = if c.is_whitespace() {
            "whitespace"
        } else {
            "a character other than printable ASCII"
        };
        problems.at(
            path,
            format_args!(
                "contains {what} ({}); a principal is one word",
                show(&c.to_string())
            ),
        );
        return;
    }
    if format.contains(',') {
        problems.at(path, "contains ',', which separates principals");
        return;
    }
    if format.starts_with('#') {
        problems.at(
            path,
            "must not start with '#' (sshd reads such lines of principals files as comments)",
        );
        return;
    }
    // Split into literal text and placeholders.
    let mut literals = vec![String::new()];
    let mut placeholders = Vec::new();
    let mut rest = format;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{login}") {
            placeholders.push("login");
            literals.push(String::new());
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{host}") {
            placeholders.push("host");
            literals.push(String::new());
            rest = after;
        } else if c == '{' || c == '}' {
            problems.at(
                path,
                format!(
                    "has a '{c}' that is not part of {{login}} or {{host}}, the only placeholders"
                ),
            );
            return;
        } else {
            if let Some(literal) = literals.last_mut() {
                literal.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    let mut counted_ok = true;
    for name in ["login", "host"] {
        match placeholders.iter().filter(|&&p| p == name).count() {
            0 => {
                problems.at(path, format!("must contain {{{name}}}"));
                counted_ok = false;
            }
            1 => {}
            _ => {
                problems.at(path, format!("contains {{{name}}} more than once"));
                counted_ok = false;
            }
        }
    }
    // With one of each, literals[1] is the text between them. Logins and host names only use
    // letters, digits, '.', '-' and '_': a character outside that set in between marks where
    // one ends, so "{login}{host}" (ab+c = a+bc) cannot happen.
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if counted_ok && literals[1].chars().all(name_char) {
        problems.at(
            path,
            "needs a separator such as '@' between {login} and {host} that cannot occur in a \
             login or host name, or two different (login, host) pairs could give the same principal",
        );
    }
}
