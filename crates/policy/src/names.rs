//! Validators of text people type: host names, logins, names in the config, reasons, durations.
//!
//! The control channel runs these on every request argument, and the config check runs them on
//! every name in the file, so both refuse the same things with the same words. Every message is
//! one line and shows offending text only through [`show`], which never emits a control
//! character or an invisible formatting character.

use std::time::Duration;

use crate::duration::{DurationError, parse_duration};
use crate::show::is_invisible_format;
pub use crate::show::show;

/// Longest host name (DNS limit).
pub const MAX_HOST_NAME: usize = 253;
/// Longest DNS label.
pub const MAX_HOST_LABEL: usize = 63;
/// Most hosts in one request.
pub const MAX_HOSTS: usize = 64;
/// Longest login name.
pub const MAX_LOGIN: usize = 32;
/// Most logins in one request.
pub const MAX_LOGINS: usize = 16;
/// Longest user, group, host group or rule name.
pub const MAX_NAME: usize = 64;
/// Longest reason, in bytes.
pub const MAX_REASON: usize = 512;

/// Why a piece of typed text was refused. Display is one line, safe to show to the person who
/// typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Nothing was given where something is needed.
    #[error("{what} is empty")]
    Empty {
        /// What was expected, like "host name".
        what: &'static str,
    },
    /// The text is longer than allowed.
    #[error("{what} is too long ({len} bytes; at most {max})")]
    TooLong {
        /// What was given, like "host name".
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The text contains a character that is not allowed anywhere in it.
    #[error("{subject} contains {found}, which is not allowed{hint}")]
    BadChar {
        /// The text, named and shown safely: `host name "web*"`.
        subject: String,
        /// The character, described: `a space`, `'*'`, `a control character (U+0007)`.
        found: String,
        /// What is allowed, starting with "; ", or empty.
        hint: &'static str,
    },
    /// The text starts with a character that is not allowed first.
    #[error("{subject} must not start with {found}")]
    BadStart {
        /// The text, named and shown safely.
        subject: String,
        /// The first character, described.
        found: String,
    },
    /// A host name with two dots in a row or a dot at the end.
    #[error("host name {0} has an empty part between dots")]
    EmptyLabel(String),
    /// A host name with a part between dots longer than [`MAX_HOST_LABEL`].
    #[error("host name {0} has a part longer than 63 characters")]
    LongLabel(String),
    /// A comma-separated list with nothing between two commas or after the last one.
    #[error("empty {what} in the list; separate them with single commas and no spaces")]
    EmptyItem {
        /// What the list holds, like "host name".
        what: &'static str,
    },
    /// A list with too many items.
    #[error("too many {what} ({count}); at most {max}")]
    TooMany {
        /// What the list holds, in the plural, like "hosts".
        what: &'static str,
        /// How many were given.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// A duration written with a minus sign.
    #[error("a duration cannot be negative")]
    NegativeDuration,
    /// A duration of zero.
    #[error("duration must be more than zero")]
    ZeroDuration,
    /// A duration that does not read as `<number><unit>`.
    #[error("cannot read duration {value}: {source}")]
    Duration {
        /// The text, shown safely.
        value: String,
        /// What is wrong with it.
        source: DurationError,
    },
}

/// A character described for a message, never raw unless it is printable ASCII.
fn describe(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        c if c.is_ascii_graphic() => format!("'{c}'"),
        c if c.is_control() => format!("a control character (U+{:04X})", c as u32),
        c if is_invisible_format(c) => {
            format!("an invisible formatting character (U+{:04X})", c as u32)
        }
        c if c.is_whitespace() => format!("a space character (U+{:04X})", c as u32),
        c => format!("a non-ASCII character (U+{:04X})", c as u32),
    }
}

/// Checks length, alphabet and first character shared by hosts, logins and names.
fn check_word(
    s: &str,
    what: &'static str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    allowed_first: impl Fn(char) -> bool,
    hint: &'static str,
) -> Result<(), InputError> {
    if s.is_empty() {
        return Err(InputError::Empty { what });
    }
    if s.len() > max {
        return Err(InputError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    if let Some(c) = s.chars().find(|&c| !allowed(c)) {
        return Err(InputError::BadChar {
            subject: format!("{what} {}", show(s)),
            found: describe(c),
            hint,
        });
    }
    let first = s.chars().next().unwrap_or_default();
    if !allowed_first(first) {
        return Err(InputError::BadStart {
            subject: format!("{what} {}", show(s)),
            found: describe(first),
        });
    }
    Ok(())
}

/// A host name as it appears in a host group and in a principal: 1 to 253 bytes of ASCII
/// letters, digits, `.`, `-` and `_`, not starting with `-` or `.`, with no empty part between
/// dots and no part longer than 63. Wildcards (`*`, `?`) and `,` are refused: they would widen
/// what a principal or a `source-address` matches.
pub fn check_host_name(s: &str) -> Result<(), InputError> {
    check_word(
        s,
        "host name",
        MAX_HOST_NAME,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'),
        |c| c != '-' && c != '.',
        "; use letters, digits, '.', '-' and '_'",
    )?;
    for label in s.split('.') {
        if label.is_empty() {
            return Err(InputError::EmptyLabel(show(s)));
        }
        if label.len() > MAX_HOST_LABEL {
            return Err(InputError::LongLabel(show(s)));
        }
    }
    Ok(())
}

/// Splits `s` at commas, checks each item, drops repeats (keeping the first), and caps the count.
fn parse_list(
    s: &str,
    what: &'static str,
    plural: &'static str,
    max: usize,
    check: fn(&str) -> Result<(), InputError>,
) -> Result<Vec<String>, InputError> {
    if s.is_empty() {
        return Err(InputError::Empty { what: plural });
    }
    let count = s.split(',').count();
    if count > max {
        return Err(InputError::TooMany {
            what: plural,
            count,
            max,
        });
    }
    let mut items: Vec<String> = Vec::with_capacity(count);
    for item in s.split(',') {
        if item.is_empty() {
            return Err(InputError::EmptyItem { what });
        }
        check(item)?;
        if !items.iter().any(|seen| seen == item) {
            items.push(item.to_string());
        }
    }
    Ok(items)
}

/// A comma-separated list of host names (`web1,web2`), each checked by [`check_host_name`];
/// repeats are dropped keeping the first order; at most [`MAX_HOSTS`] items.
pub fn parse_host_list(s: &str) -> Result<Vec<String>, InputError> {
    parse_list(s, "host name", "hosts", MAX_HOSTS, check_host_name)
}

/// A login account name: 1 to 32 bytes of `[a-z_][a-z0-9_.-]*`.
pub fn check_login(s: &str) -> Result<(), InputError> {
    check_word(
        s,
        "login",
        MAX_LOGIN,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'),
        |c| c.is_ascii_lowercase() || c == '_',
        "; use lowercase letters, digits, '_', '.' and '-'",
    )
}

/// A comma-separated list of logins (`deploy,app`), each checked by [`check_login`]; repeats are
/// dropped keeping the first order; at most [`MAX_LOGINS`] items.
pub fn parse_login_list(s: &str) -> Result<Vec<String>, InputError> {
    parse_list(s, "login", "logins", MAX_LOGINS, check_login)
}

/// A user, group, host group or rule name: 1 to 64 bytes of `[A-Za-z0-9_.-]`, not starting with
/// `-` or `.`.
pub fn check_name(s: &str) -> Result<(), InputError> {
    check_word(
        s,
        "name",
        MAX_NAME,
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
        |c| c != '-' && c != '.',
        "; use letters, digits, '_', '.' and '-'",
    )
}

/// A reason typed by a person: trimmed; not empty, at most 512 bytes, no control characters and
/// no invisible formatting characters (bidi overrides and isolates, zero-width characters, BOM).
/// Returns the trimmed reason.
pub fn check_reason(s: &str) -> Result<String, InputError> {
    let reason = s.trim();
    if reason.is_empty() {
        return Err(InputError::Empty { what: "reason" });
    }
    if reason.len() > MAX_REASON {
        return Err(InputError::TooLong {
            what: "reason",
            len: reason.len(),
            max: MAX_REASON,
        });
    }
    if let Some(c) = reason
        .chars()
        .find(|&c| c.is_control() || is_invisible_format(c))
    {
        return Err(InputError::BadChar {
            subject: "reason".to_string(),
            found: describe(c),
            hint: "; write it on one line of plain text",
        });
    }
    Ok(reason.to_string())
}

/// A requested duration: [`parse_duration`], and more than zero.
pub fn parse_request_duration(s: &str) -> Result<Duration, InputError> {
    if s.starts_with('-') {
        return Err(InputError::NegativeDuration);
    }
    let d = parse_duration(s).map_err(|source| InputError::Duration {
        value: show(s),
        source,
    })?;
    if d.is_zero() {
        return Err(InputError::ZeroDuration);
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<T: std::fmt::Debug>(r: Result<T, InputError>) -> String {
        let msg = r.unwrap_err().to_string();
        assert!(!msg.contains('\n'), "not one line: {msg}");
        assert!(
            !msg.chars()
                .any(|c| c.is_control() || is_invisible_format(c)),
            "raw control character in {msg:?}"
        );
        msg
    }

    #[test]
    fn show_escapes_and_truncates() {
        assert_eq!(show("web1"), "\"web1\"");
        assert_eq!(show("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(show("\x1b[2J"), "\"\\u{1b}[2J\"");
        assert_eq!(show("a\u{202e}b"), "\"a\\u{202e}b\"");
        assert_eq!(show("é"), "\"\\u{e9}\"");
        let long = "x".repeat(100);
        assert_eq!(show(&long), format!("\"{}...\"", "x".repeat(64)));
    }

    #[test]
    fn host_names_accepted() {
        for ok in [
            "web1",
            "db-1.prod.example.com",
            "a",
            "A_b-9",
            "10.0.0.1",
            "x".repeat(63).as_str(),
        ] {
            assert_eq!(check_host_name(ok), Ok(()), "{ok}");
        }
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), 253);
        assert_eq!(check_host_name(&longest), Ok(()));
    }

    #[test]
    fn host_names_refused_with_the_reason() {
        assert_eq!(message(check_host_name("")), "host name is empty");
        let too_long = format!("{}.{}", "a".repeat(63), "b".repeat(190));
        assert_eq!(
            message(check_host_name(&too_long)),
            "host name is too long (254 bytes; at most 253)"
        );
        assert!(message(check_host_name("web 1")).contains("contains a space"));
        assert!(message(check_host_name("web,1")).contains("contains ','"));
        assert!(message(check_host_name("web*")).contains("contains '*'"));
        assert!(message(check_host_name("web?")).contains("contains '?'"));
        assert!(message(check_host_name("web@x")).contains("contains '@'"));
        assert!(message(check_host_name("wéb")).contains("a non-ASCII character (U+00E9)"));
        let ctl = message(check_host_name("web\x1b1"));
        assert!(ctl.contains("a control character (U+001B)"), "{ctl}");
        assert!(ctl.contains("\"web\\u{1b}1\""), "{ctl}");
        assert!(
            message(check_host_name("web\u{202e}1"))
                .contains("invisible formatting character (U+202E)")
        );
        assert_eq!(
            message(check_host_name("-web")),
            "host name \"-web\" must not start with '-'"
        );
        assert_eq!(
            message(check_host_name(".web")),
            "host name \".web\" must not start with '.'"
        );
        assert_eq!(
            message(check_host_name("a..b")),
            "host name \"a..b\" has an empty part between dots"
        );
        assert!(message(check_host_name("web1.")).contains("empty part"));
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(message(check_host_name(&long_label)).contains("part longer than 63"));
    }

    #[test]
    fn host_lists() {
        assert_eq!(parse_host_list("web1"), Ok(vec!["web1".to_string()]));
        assert_eq!(
            parse_host_list("web2,web1,web2,web1"),
            Ok(vec!["web2".to_string(), "web1".to_string()])
        );
        assert_eq!(message(parse_host_list("")), "hosts is empty");
        assert!(message(parse_host_list("web1,")).starts_with("empty host name in the list"));
        assert!(message(parse_host_list(",web1")).starts_with("empty host name in the list"));
        assert!(message(parse_host_list("web1,,web2")).starts_with("empty host name in the list"));
        assert!(message(parse_host_list("web1, web2")).contains("contains a space"));
        assert!(message(parse_host_list("web1,*")).contains("'*'"));
        let max: Vec<String> = (0..64).map(|i| format!("h{i}")).collect();
        assert_eq!(parse_host_list(&max.join(",")).map(|v| v.len()), Ok(64));
        let over: Vec<String> = (0..65).map(|i| format!("h{i}")).collect();
        assert_eq!(
            message(parse_host_list(&over.join(","))),
            "too many hosts (65); at most 64"
        );
    }

    #[test]
    fn logins() {
        for ok in ["deploy", "_svc", "a.b-c_9", "x".repeat(32).as_str()] {
            assert_eq!(check_login(ok), Ok(()), "{ok}");
        }
        assert_eq!(message(check_login("")), "login is empty");
        assert!(message(check_login(&"x".repeat(33))).contains("too long (33 bytes; at most 32)"));
        assert!(message(check_login("Root")).contains("contains 'R'"));
        assert!(message(check_login("a b")).contains("a space"));
        assert!(message(check_login("a$")).contains("'$'"));
        assert!(message(check_login("a\nb")).contains("control character (U+000A)"));
        assert_eq!(
            message(check_login("-x")),
            "login \"-x\" must not start with '-'"
        );
        assert!(message(check_login("9x")).contains("must not start with '9'"));
        assert!(message(check_login(".x")).contains("must not start with '.'"));
    }

    #[test]
    fn login_lists() {
        assert_eq!(
            parse_login_list("deploy,app,deploy"),
            Ok(vec!["deploy".to_string(), "app".to_string()])
        );
        assert_eq!(message(parse_login_list("")), "logins is empty");
        assert!(message(parse_login_list("deploy,")).starts_with("empty login in the list"));
        assert!(message(parse_login_list("deploy,Root")).contains("'R'"));
        let over: Vec<String> = (0..17).map(|i| format!("u{i}")).collect();
        assert_eq!(
            message(parse_login_list(&over.join(","))),
            "too many logins (17); at most 16"
        );
        let max: Vec<String> = (0..16).map(|i| format!("u{i}")).collect();
        assert_eq!(parse_login_list(&max.join(",")).map(|v| v.len()), Ok(16));
    }

    #[test]
    fn names() {
        for ok in ["alice", "Dev-Team_2", "a.b", "x".repeat(64).as_str()] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(message(check_name("")), "name is empty");
        assert!(message(check_name(&"x".repeat(65))).contains("too long"));
        assert!(message(check_name("a b")).contains("a space"));
        assert!(message(check_name("a@b")).contains("'@'"));
        assert!(message(check_name("a:b")).contains("':'"));
        assert_eq!(
            message(check_name("-a")),
            "name \"-a\" must not start with '-'"
        );
        assert_eq!(
            message(check_name(".a")),
            "name \".a\" must not start with '.'"
        );
    }

    #[test]
    fn reasons() {
        assert_eq!(
            check_reason("  INC-42 disk full \n"),
            Ok("INC-42 disk full".to_string())
        );
        assert_eq!(
            check_reason("Störung behoben ✓"),
            Ok("Störung behoben ✓".to_string())
        );
        assert_eq!(message(check_reason("")), "reason is empty");
        assert_eq!(message(check_reason(" \t\n ")), "reason is empty");
        assert_eq!(check_reason(&"x".repeat(512)).map(|r| r.len()), Ok(512));
        assert_eq!(
            message(check_reason(&"x".repeat(513))),
            "reason is too long (513 bytes; at most 512)"
        );
        assert!(message(check_reason("a\nb")).contains("control character (U+000A)"));
        assert!(message(check_reason("a\tb")).contains("control character (U+0009)"));
        assert!(message(check_reason("a\x1b[31mb")).contains("control character (U+001B)"));
        assert!(message(check_reason("a\u{85}b")).contains("control character (U+0085)"));
        for c in [
            '\u{200B}', '\u{200F}', '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}', '\u{FEFF}',
        ] {
            let msg = message(check_reason(&format!("ok {c} ok")));
            assert!(msg.contains("invisible formatting character"), "{msg}");
        }
    }

    #[test]
    fn request_durations() {
        assert_eq!(parse_request_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            message(parse_request_duration("0s")),
            "duration must be more than zero"
        );
        assert_eq!(
            message(parse_request_duration("-1h")),
            "a duration cannot be negative"
        );
        let garbage = message(parse_request_duration("soon"));
        assert!(
            garbage.starts_with("cannot read duration \"soon\": "),
            "{garbage}"
        );
        assert!(message(parse_request_duration("1h30m")).contains("unknown duration unit"));
        assert!(message(parse_request_duration("60")).contains("needs a unit"));
        assert!(message(parse_request_duration("")).contains("empty duration"));
        assert!(message(parse_request_duration("1\x07h")).contains("\\u{7}"));
    }
}
