//! The policy parser: any text as the policy sections of `jitca.yaml` (`jitca check`,
//! start-up, SIGHUP reload all hand those sections to it; the daemon's own settings are the
//! binary's and are not fuzzed here).
//!
//! Beyond "never panics", this asserts:
//! - a config that parses holds only what validation promises: a principal format with
//!   `{login}` and `{host}` once each, one word of printable ASCII without ',' and not a
//!   comment, that gives different principals for different (login, host) pairs (checked on
//!   names chosen to collide: "a.b"+"c" against "a"+"b.c" and the like); names, hosts and
//!   logins that pass their validators; durations within their caps; known extensions only;
//!   a rule needing approvals names approvers;
//! - a refusal lists at least one problem, each one line with no control or invisible
//!   formatting character (the operator's terminal shows them), naming a line of the file.

#![no_main]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use jitca_policy::names::{check_host_name, check_login, check_name};
use jitca_policy::{KNOWN_EXTENSIONS, parse};
use libfuzzer_sys::fuzz_target;

const WEEK: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Logins and hosts whose concatenations collide under a format with a weak separator.
const LOGINS: &[&str] = &["a", "a.b", "a-", "_", "a_b", "b", "a.b.c", "x-y"];
const HOSTS: &[&str] = &["b", "b.c", "c", "a.b", "B", "x-y", "y", "a_b"];

fn is_clean(s: &str) -> bool {
    !s.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    })
}

/// Lines in `text` as a YAML reader may count them (libyaml also breaks at \r, NEL, LS, PS).
fn max_line(text: &str) -> usize {
    text.chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
        + 2
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, Path::new("/etc/jitca/jitca.yaml")) {
        Ok(config) => {
            let policy = &config.policy;
            let format = policy.principal_format();
            assert_eq!(format.matches("{login}").count(), 1, "{format:?}");
            assert_eq!(format.matches("{host}").count(), 1, "{format:?}");
            assert!(format.chars().all(|c| c.is_ascii_graphic()), "{format:?}");
            assert!(
                !format.contains(',') && !format.starts_with('#'),
                "{format:?}"
            );
            let mut seen = HashSet::new();
            for login in LOGINS {
                for host in HOSTS {
                    let principal = policy.principal(login, host);
                    assert!(
                        seen.insert(principal.clone()),
                        "format {format:?}: principal {principal:?} for two (login, host) pairs"
                    );
                }
            }
            for user in policy.users() {
                assert_eq!(check_name(&user.name), Ok(()));
                for group in &user.groups {
                    assert_eq!(check_name(group), Ok(()));
                }
            }
            for (name, hosts) in policy.host_groups() {
                assert_eq!(check_name(name), Ok(()));
                for host in hosts {
                    assert_eq!(check_host_name(host), Ok(()));
                }
            }
            for rule in policy.rules() {
                assert_eq!(check_name(&rule.name), Ok(()));
                assert!(!rule.max_duration.is_zero() && rule.max_duration <= WEEK);
                assert!(!rule.logins.is_empty());
                for login in &rule.logins {
                    assert_eq!(check_login(login), Ok(()));
                    for host in policy.hosts_of_rule(rule) {
                        let principal = policy.principal(login, &host);
                        assert!(!principal.is_empty() && !principal.contains(','));
                        assert!(principal.chars().all(|c| c.is_ascii_graphic()));
                    }
                }
                for extension in &rule.extensions {
                    assert!(
                        KNOWN_EXTENSIONS.contains(&extension.as_str()),
                        "{extension}"
                    );
                }
                assert!(rule.approvals == 0 || !rule.approvers.is_empty());
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused with no problem listed");
            for error in &errors.0 {
                assert!(
                    is_clean(&error.message),
                    "problem message with a control or invisible character: {:?}",
                    error.message
                );
                if let Some(line) = error.line {
                    assert!(
                        line >= 1 && line <= max_line(text),
                        "line {line} of a {}-line file",
                        max_line(text) - 2
                    );
                }
            }
        }
    }
});
