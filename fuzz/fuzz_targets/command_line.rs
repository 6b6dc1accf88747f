//! The control channel's command line: any bytes a client sends as its `exec` request.
//!
//! `check_command_line` is what the daemon does with the line before the command touches stdin
//! or the authority: size limit, UTF-8, shell-like split, dispatch by name, the command's
//! grammar and every typed value's validator. Beyond "never panics", this asserts:
//! - an accepted line is within the size limit, is UTF-8, names a command the daemon knows
//!   (`COMMAND_NAMES`, read from the daemon's own table), and every value it carries passed
//!   its validator (hosts, logins, a non-zero duration, a reason that is trimmed, at most 512
//!   bytes and free of control and invisible formatting characters);
//! - a refusal has exit status 1 or 2 and a message that is one bounded line with no control or
//!   invisible formatting character, because it is written to the client's terminal and to the
//!   daemon's log (no terminal escape or log-line forgery through an echoed argument).

#![no_main]

use jitca_control::{COMMAND_NAMES, check_command_line, render};
use jitca_policy::names::{MAX_HOSTS, MAX_LOGINS, MAX_REASON, check_host_name, check_login};
use libfuzzer_sys::fuzz_target;

/// The longest refusal message: echoed words are cut at 64 characters, so a refusal never
/// grows with the input.
const MAX_MESSAGE: usize = 1024;

fn is_clean(s: &str) -> bool {
    render::clean(s) == s
}

fn no_repeats(items: &[String]) -> bool {
    items
        .iter()
        .enumerate()
        .all(|(i, a)| !items[..i].contains(a))
}

fuzz_target!(|line: &[u8]| {
    match check_command_line(line) {
        Ok(checked) => {
            assert!(line.len() <= 8 * 1024, "accepted an oversized line");
            assert!(
                std::str::from_utf8(line).is_ok(),
                "accepted a non-UTF-8 line"
            );
            assert!(
                COMMAND_NAMES.contains(&checked.command.as_str()),
                "accepted unknown command {:?}",
                checked.command
            );
            if let Some(reason) = &checked.reason {
                assert!(!reason.is_empty(), "empty reason accepted");
                assert!(reason.len() <= MAX_REASON, "reason over {MAX_REASON} bytes");
                assert_eq!(reason.trim(), reason, "reason not trimmed");
                assert!(
                    is_clean(reason),
                    "reason with a control or invisible character accepted: {reason:?}"
                );
            }
            if checked.command == "request" {
                assert!(checked.reason.is_some());
                assert!(
                    checked.duration.is_some_and(|d| !d.is_zero()),
                    "zero duration"
                );
                assert!(!checked.hosts.is_empty() && checked.hosts.len() <= MAX_HOSTS);
                assert!(!checked.logins.is_empty() && checked.logins.len() <= MAX_LOGINS);
                assert!(no_repeats(&checked.hosts) && no_repeats(&checked.logins));
                for host in &checked.hosts {
                    assert_eq!(check_host_name(host), Ok(()), "bad host accepted");
                    assert!(!host.contains([',', '*', '?', '@']));
                }
                for login in &checked.logins {
                    assert_eq!(check_login(login), Ok(()), "bad login accepted");
                }
            } else {
                assert!(checked.hosts.is_empty() && checked.logins.is_empty());
                assert!(checked.duration.is_none());
            }
        }
        Err(refusal) => {
            assert!(
                refusal.status == 1 || refusal.status == 2,
                "exit status {}",
                refusal.status
            );
            assert!(!refusal.message.is_empty(), "empty refusal");
            assert!(
                is_clean(&refusal.message),
                "refusal echoes a control or invisible character: {:?}",
                refusal.message
            );
            assert!(
                refusal.message.len() <= MAX_MESSAGE,
                "refusal of {} bytes",
                refusal.message.len()
            );
        }
    }
});
