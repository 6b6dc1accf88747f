//! `rules:`: who may ask for which logins on which hosts, for how long, who approves, and what
//! the certificate carries. Each rule is checked in named steps, in the order its settings are
//! usually written, so that problems on one line come out in a stable order.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::groups::{GroupCheck, Known, host_group_list};
use crate::decide::{ReasonPattern, Rule, User};
use crate::document::Problems;
use crate::locate::YamlPath;
use crate::names::{check_login, check_name, show};

/// The longest `max_duration` of a rule: temporary access is measured in hours, not weeks.
pub const MAX_RULE_DURATION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The longest `max_duration` of a break-glass rule: emergency access is short.
pub const MAX_BREAK_GLASS_DURATION: Duration = Duration::from_secs(4 * 60 * 60);
/// The certificate extensions a rule may grant (OpenSSH's `PROTOCOL.certkeys`).
pub const KNOWN_EXTENSIONS: [&str; 6] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
    "no-touch-required",
];

/// `rules:` as written.
#[derive(Deserialize, Default)]
#[serde(transparent)]
pub struct RawRules(Vec<RawRule>);

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a rule: a mapping with name, requesters, hosts, logins, max_duration, ..."
)]
struct RawRule {
    name: String,
    requesters: Vec<String>,
    hosts: Vec<String>,
    logins: Vec<String>,
    max_duration: String,
    approvals: Option<u32>,
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default = "default_extensions")]
    extensions: Vec<String>,
    force_command: Option<String>,
    source_address: Option<String>,
    reason_pattern: Option<String>,
    #[serde(default)]
    break_glass: bool,
    review: Option<String>,
    requester_mfa: Option<String>,
    approver_mfa: Option<String>,
}

fn default_extensions() -> Vec<String> {
    vec!["permit-pty".to_string()]
}

/// What every rule is checked against.
struct Context<'a, 'k> {
    users: &'a [User],
    known: &'a Known<'k>,
}

pub(super) fn validate_rules(
    raw: RawRules,
    users: &[User],
    known: &Known<'_>,
    groups: &mut GroupCheck,
    problems: &mut Problems<'_>,
) -> Vec<Rule> {
    let rules_path = YamlPath::root().key("rules");
    let context = Context { users, known };
    let mut first_with_name: HashMap<String, usize> = HashMap::new();
    let mut rules = Vec::new();
    for (i, raw) in raw.0.into_iter().enumerate() {
        let path = rules_path.index(i);
        unique_name(&raw.name, i, &mut first_with_name, &path, problems);
        who_and_where(&raw, &context, groups, &path, problems);
        let max_duration = max_duration(&raw, &path, problems);
        let approvals = approvals(&raw, &context, groups, &path, problems);
        let extensions = extensions(&raw.extensions, &path.key("extensions"), problems);
        let critical_options = critical_options(&raw, &path, problems);
        let reason_pattern = reason_pattern(raw.reason_pattern.as_deref(), &path, problems);
        let review_required = review(&raw, &path, problems);
        let (requester_mfa, approver_mfa) = second_factors(&raw, &path, problems);
        rules.push(Rule {
            name: raw.name,
            requesters: raw.requesters,
            host_groups: raw.hosts,
            logins: raw.logins,
            max_duration,
            approvals,
            approvers: raw.approvers,
            extensions,
            critical_options,
            reason_pattern,
            break_glass: raw.break_glass,
            review_required,
            requester_mfa,
            approver_mfa,
        });
    }
    rules
}

/// A safe name that no earlier rule uses.
fn unique_name(
    name: &str,
    position: usize,
    first_with_name: &mut HashMap<String, usize>,
    path: &YamlPath,
    problems: &mut Problems<'_>,
) {
    if let Err(e) = check_name(name) {
        problems.at(&path.key("name"), e);
    } else if let Some(first) = first_with_name.get(name) {
        problems.at(
            &path.key("name"),
            format_args!("rule name {name} is already used by rules[{first}]"),
        );
    } else {
        first_with_name.insert(name.to_string(), position);
    }
}

/// `requesters`, `hosts` and `logins`: each at least one, each name once.
fn who_and_where(
    raw: &RawRule,
    context: &Context<'_, '_>,
    groups: &mut GroupCheck,
    path: &YamlPath,
    problems: &mut Problems<'_>,
) {
    groups.people(
        &raw.requesters,
        &path.key("requesters"),
        &context.known.groups,
        true,
        &format!("rule {}", raw.name),
        problems,
    );
    host_group_list(
        &raw.hosts,
        &path.key("hosts"),
        &context.known.host_groups,
        problems,
    );
    let logins_path = path.key("logins");
    if raw.logins.is_empty() {
        problems.at(&logins_path, "is empty; name at least one login");
    }
    for (j, login) in raw.logins.iter().enumerate() {
        if let Err(e) = check_login(login) {
            problems.at(&logins_path.index(j), e);
        } else if raw.logins[..j].contains(login) {
            problems.at(
                &logins_path.index(j),
                format_args!("login {login} is listed twice"),
            );
        }
    }
}

/// `max_duration`, capped lower for break-glass rules.
fn max_duration(raw: &RawRule, path: &YamlPath, problems: &mut Problems<'_>) -> Duration {
    let cap = if raw.break_glass {
        MAX_BREAK_GLASS_DURATION
    } else {
        MAX_RULE_DURATION
    };
    problems
        .duration(&raw.max_duration, cap, &path.key("max_duration"))
        .unwrap_or_default()
}

/// `approvals` and `approvers`: how many distinct approvers, and from which groups.
fn approvals(
    raw: &RawRule,
    context: &Context<'_, '_>,
    groups: &mut GroupCheck,
    path: &YamlPath,
    problems: &mut Problems<'_>,
) -> u32 {
    // Break-glass is issued without approval: an approval count there is a mistake.
    let approvals = match (raw.break_glass, raw.approvals) {
        (true, Some(n)) if n > 0 => {
            problems.at(
                &path.key("approvals"),
                format_args!(
                    "is {n}, but a break_glass rule issues at once without approval; \
                     remove approvals (its approvers review each use afterwards)"
                ),
            );
            0
        }
        (true, _) => 0,
        (false, Some(n)) => n,
        (false, None) => 1,
    };

    // Approvers may be empty only when no approval is needed.
    if raw.approvers.is_empty() {
        if approvals > 0 {
            problems.at(
                &path.key("approvers"),
                format_args!(
                    "approvals is {approvals} but the rule names no approvers; add approvers: \
                     [GROUP] or set approvals: 0"
                ),
            );
        }
        return approvals;
    }
    groups.people(
        &raw.approvers,
        &path.key("approvers"),
        &context.known.groups,
        true,
        &format!("rule {}", raw.name),
        problems,
    );
    let eligible: Vec<&str> = context
        .users
        .iter()
        .filter(|u| u.in_any(&raw.approvers))
        .map(|u| u.name.as_str())
        .collect();
    // Too few approvers is allowed (the last one may just have left: offboarding must go
    // through), but said. With none at all, the empty group's warning says it.
    if approvals as usize > eligible.len() && !eligible.is_empty() {
        problems.warn(
            &path.key("approvals"),
            format_args!(
                "needs {} approvals but only {} may approve under this rule ({}), so no request \
                 under it can be approved until more join",
                approvals,
                match eligible.len() {
                    1 => "1 user".to_string(),
                    n => format!("{n} users"),
                },
                eligible.join(", ")
            ),
        );
    }
    approvals
}

/// `extensions`: known ones, each once; returned sorted.
fn extensions(written: &[String], path: &YamlPath, problems: &mut Problems<'_>) -> Vec<String> {
    for (j, extension) in written.iter().enumerate() {
        if !KNOWN_EXTENSIONS.contains(&extension.as_str()) {
            problems.at(
                &path.index(j),
                format_args!(
                    "unknown extension {}; known: {}",
                    show(extension),
                    KNOWN_EXTENSIONS.join(", ")
                ),
            );
        } else if written[..j].contains(extension) {
            problems.at(
                &path.index(j),
                format_args!("extension {extension} is listed twice"),
            );
        }
    }
    let mut extensions = written.to_vec();
    extensions.sort();
    extensions.dedup();
    extensions
}

/// `force_command` and `source_address`, as the certificate's critical options.
fn critical_options(
    raw: &RawRule,
    path: &YamlPath,
    problems: &mut Problems<'_>,
) -> BTreeMap<String, String> {
    let mut options = BTreeMap::new();
    if let Some(command) = &raw.force_command
        && check_force_command(command, &path.key("force_command"), problems)
    {
        options.insert("force-command".to_string(), command.clone());
    }
    if let Some(addresses) = &raw.source_address {
        match check_source_address(addresses) {
            Ok(()) => {
                options.insert("source-address".to_string(), addresses.clone());
            }
            Err(e) => problems.at(&path.key("source_address"), e),
        }
    }
    options
}

/// `reason_pattern`: a regular expression every reason under the rule must match.
fn reason_pattern(
    pattern: Option<&str>,
    path: &YamlPath,
    problems: &mut Problems<'_>,
) -> Option<ReasonPattern> {
    let pattern = pattern?;
    let path = path.key("reason_pattern");
    if pattern.is_empty() {
        problems.at(
            &path,
            "is empty; give a regular expression such as ^(INC|CHG)-[0-9]+",
        );
        return None;
    }
    ReasonPattern::new(pattern)
        .map_err(|e| {
            problems.at(
                &path,
                format_args!("{} is not a regular expression: {e}", show(pattern)),
            )
        })
        .ok()
}

/// `review`: whether each use must be reviewed afterwards (always so for break-glass).
fn review(raw: &RawRule, path: &YamlPath, problems: &mut Problems<'_>) -> bool {
    match raw.review.as_deref() {
        None | Some("optional") => raw.break_glass,
        Some("required") => true,
        Some(other) => {
            problems.at(
                &path.key("review"),
                format_args!(
                    "{} is not a review setting; write required or optional",
                    show(other)
                ),
            );
            false
        }
    }
}

/// `requester_mfa` and `approver_mfa`: whether each side must give a second factor.
fn second_factors(raw: &RawRule, path: &YamlPath, problems: &mut Problems<'_>) -> (bool, bool) {
    let mut factor = |name: &str, value: Option<&str>| match value {
        None | Some("none") => false,
        Some("totp") => true,
        Some(other) => {
            problems.at(
                &path.key(name),
                format_args!(
                    "{} is not a second factor; write totp (or none)",
                    show(other)
                ),
            );
            false
        }
    };
    let requester_mfa = factor("requester_mfa", raw.requester_mfa.as_deref());
    let approver_mfa = factor("approver_mfa", raw.approver_mfa.as_deref());
    if raw.break_glass && approver_mfa {
        problems.at(
            &path.key("approver_mfa"),
            "a break_glass rule has no approvals to protect; use requester_mfa",
        );
    }
    (requester_mfa, approver_mfa)
}

/// A command for sshd to run instead of the user's: one line of printable text. Returns
/// whether it is usable.
fn check_force_command(command: &str, path: &YamlPath, problems: &mut Problems<'_>) -> bool {
    if command.trim().is_empty() {
        problems.at(path, "is empty; give a command or remove force_command");
        return false;
    }
    if let Some(c) = command.chars().find(|c| c.is_control()) {
        problems.at(
            path,
            format_args!(
                "contains a control character (U+{:04X}); a command is one line of text",
                c as u32
            ),
        );
        return false;
    }
    true
}

/// Why a `source-address` value is not a comma-separated list of IP addresses and CIDR blocks.
pub(super) fn check_source_address(list: &str) -> Result<(), String> {
    const WANT: &str =
        "write addresses or CIDR blocks separated by commas, like 10.0.0.0/8,192.0.2.7";
    if list.is_empty() {
        return Err(format!("is empty; {WANT}"));
    }
    for item in list.split(',') {
        if item.is_empty() {
            return Err(format!("has an empty entry; {WANT}"));
        }
        let (address, prefix) = match item.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (item, None),
        };
        let Ok(ip) = address.parse::<IpAddr>() else {
            return Err(format!("{} is not an IP address; {WANT}", show(item)));
        };
        let Some(prefix) = prefix else { continue };
        let bits: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let length = prefix
            .parse::<u8>()
            .ok()
            .filter(|n| prefix.bytes().all(|b| b.is_ascii_digit()) && *n <= bits);
        let Some(length) = length else {
            return Err(format!(
                "{} has a bad prefix length (0 to {bits} for {})",
                show(item),
                if ip.is_ipv4() { "IPv4" } else { "IPv6" }
            ));
        };
        if !host_bits_zero(ip, length) {
            return Err(format!(
                "{} has bits set after the prefix length; write the network address",
                show(item)
            ));
        }
    }
    Ok(())
}

/// Whether all bits of `ip` after the first `length` are zero (a proper network address).
fn host_bits_zero(ip: IpAddr, length: u8) -> bool {
    let (value, bits) = match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    let host_bits = bits - u32::from(length);
    let host_mask = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
    value & host_mask == 0
}
