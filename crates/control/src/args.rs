//! Splitting and parsing a command line sent over `ssh`.
//!
//! `ssh` joins its arguments with spaces, so the line is split as a shell would (quotes group
//! words). Options are `--name value`; a `Words` option (like `--reason`) takes every word up
//! to the next option this command knows, so `--reason INC-42 disk full` needs no quotes.

use std::collections::{BTreeMap, BTreeSet};

/// How an option takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--name value`
    Value,
    /// `--name word word ...` up to the next known option, joined by spaces.
    Words,
    /// `--name`, no value.
    Flag,
}

/// A command's grammar.
pub(crate) struct Spec {
    /// Shown on a usage error, e.g. `approve ID`.
    pub usage: &'static str,
    /// Names of the positional arguments, all required.
    pub positionals: &'static [&'static str],
    pub options: &'static [(&'static str, Kind)],
    /// Options that must be given.
    pub required: &'static [&'static str],
}

/// A parsed command line.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub positionals: Vec<String>,
    values: BTreeMap<&'static str, String>,
    flags: BTreeSet<&'static str>,
}

impl Parsed {
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        self.flags.contains(name)
    }
}

impl Spec {
    pub(crate) fn parse(&self, words: &[String]) -> Result<Parsed, String> {
        let usage = |problem: String| format!("{problem}; usage: {}", self.usage);
        let known = |w: &str| self.options.iter().find(|(n, _)| *n == w).copied();
        let mut parsed = Parsed::default();
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            i += 1;
            if !word.starts_with("--") {
                if parsed.positionals.len() == self.positionals.len() {
                    return Err(usage(format!("unexpected argument {}", shown(word))));
                }
                parsed.positionals.push(word.clone());
                continue;
            }
            let Some((name, kind)) = known(word) else {
                return Err(usage(format!("unknown option {}", shown(word))));
            };
            if parsed.values.contains_key(name) || parsed.flags.contains(name) {
                return Err(usage(format!("{name} given twice")));
            }
            match kind {
                Kind::Flag => {
                    parsed.flags.insert(name);
                }
                Kind::Value => {
                    let Some(value) = words.get(i).filter(|w| known(w).is_none()) else {
                        return Err(usage(format!("{name} needs a value")));
                    };
                    parsed.values.insert(name, value.clone());
                    i += 1;
                }
                Kind::Words => {
                    let start = i;
                    while i < words.len() && known(&words[i]).is_none() {
                        i += 1;
                    }
                    if start == i {
                        return Err(usage(format!("{name} needs a value")));
                    }
                    parsed.values.insert(name, words[start..i].join(" "));
                }
            }
        }
        if let Some(missing) = self.positionals.get(parsed.positionals.len()) {
            return Err(usage(format!("missing {missing}")));
        }
        if let Some(missing) = self
            .required
            .iter()
            .find(|r| !parsed.values.contains_key(*r))
        {
            return Err(usage(format!("missing {missing}")));
        }
        Ok(parsed)
    }
}

/// A word as it may appear in a message: quoted, control characters escaped, bounded.
pub(crate) fn shown(word: &str) -> String {
    let mut s: String = word
        .chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if word.chars().count() > 64 {
        s.push('…');
    }
    format!("\"{s}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: Spec = Spec {
        usage: "request HOSTS --as LOGIN --for DURATION --reason TEXT [--no-wait]",
        positionals: &["HOSTS"],
        options: &[
            ("--as", Kind::Value),
            ("--for", Kind::Value),
            ("--reason", Kind::Words),
            ("--no-wait", Kind::Flag),
        ],
        required: &["--as", "--for", "--reason"],
    };

    fn words(line: &str) -> Vec<String> {
        shlex::split(line).unwrap()
    }

    #[test]
    fn reason_takes_words_up_to_the_next_option() {
        let p = REQUEST
            .parse(&words(
                "web1 --as deploy --reason INC-42 disk full --for 1h",
            ))
            .unwrap();
        assert_eq!(p.value("--reason"), Some("INC-42 disk full"));
        assert_eq!(p.value("--for"), Some("1h"));
        assert_eq!(p.positionals, ["web1"]);
        assert!(!p.flag("--no-wait"));
    }

    #[test]
    fn quoted_reason_is_one_word() {
        // What the daemon receives for `ssh ca request ... --reason "'INC-42 disk full'"`.
        let p = REQUEST
            .parse(&words(
                "web1 --as deploy --for 1h --reason 'INC-42 disk full' --no-wait",
            ))
            .unwrap();
        assert_eq!(p.value("--reason"), Some("INC-42 disk full"));
        assert!(p.flag("--no-wait"));
    }

    #[test]
    fn unknown_double_dash_words_inside_a_reason_stay_in_it() {
        let p = REQUEST
            .parse(&words(
                "web1 --as deploy --for 1h --reason rerun with --force",
            ))
            .unwrap();
        assert_eq!(p.value("--reason"), Some("rerun with --force"));
    }

    #[test]
    fn usage_errors_name_the_problem() {
        let err = |line: &str| REQUEST.parse(&words(line)).unwrap_err();
        assert!(err("--as deploy --for 1h --reason x").starts_with("missing HOSTS"));
        assert!(err("web1 --for 1h --reason x").starts_with("missing --as"));
        assert!(err("web1 --as --for 1h --reason x").starts_with("--as needs a value"));
        assert!(err("web1 --as a --for 1h --reason").starts_with("--reason needs a value"));
        assert!(err("web1 web2 --as a --for 1h --reason x").starts_with("unexpected argument"));
        assert!(err("web1 --as a --as b --for 1h --reason x").starts_with("--as given twice"));
        assert!(err("web1 --bogus --as a --for 1h --reason x").starts_with("unknown option"));
    }

    #[test]
    fn shown_escapes_control_characters() {
        assert_eq!(shown("a\u{1b}[31mb"), "\"a\\u{1b}[31mb\"");
        assert!(shown(&"x".repeat(300)).ends_with("…\""));
    }
}
