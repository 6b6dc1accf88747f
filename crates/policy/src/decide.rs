//! The policy engine: who may ask for what, who may approve it, who may see it.
//!
//! Pure functions of a validated [`Policy`]; they answer allowed or denied and never touch
//! storage. A request is judged once when it is made ([`Policy::decide_request`]) and again,
//! under the policy then in force, at each approval ([`Policy::check_approver`]), so a config
//! change that narrows a rule also stops requests already waiting under it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use crate::duration::format_duration;
use crate::keys::UserKey;
use serde::{Deserialize, Serialize};

mod proof;
pub use proof::{Decided, Eligible};

/// A registered person: their SSH keys identify them on the control channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The name in the config, `users.NAME`.
    pub name: String,
    /// Their public keys; no key belongs to two users.
    pub keys: Vec<UserKey>,
    /// The groups they belong to, as written.
    pub groups: Vec<String>,
}

impl User {
    /// Whether the user is in at least one of `groups`.
    pub fn in_any(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// One entry of `rules:`: who may ask for which logins on which hosts, for how long, and who
/// approves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Unique among the rules.
    pub name: String,
    /// Groups whose members may request under this rule.
    pub requesters: Vec<String>,
    /// Host groups (names from `hosts:`) this rule covers.
    pub host_groups: Vec<String>,
    /// Login accounts this rule covers.
    pub logins: Vec<String>,
    /// The longest certificate this rule grants; more than zero, at most 7 days.
    pub max_duration: Duration,
    /// Distinct approvers needed; 0 means approved on request.
    pub approvals: u32,
    /// Groups whose members may approve (never their own requests).
    pub approvers: Vec<String>,
    /// Certificate extensions, sorted, without repeats.
    pub extensions: Vec<String>,
    /// Certificate critical options: `force-command`, `source-address`.
    pub critical_options: BTreeMap<String, String>,
    /// `reason_pattern`: a request's reason must match (a ticket number, say).
    pub reason_pattern: Option<ReasonPattern>,
    /// `break_glass: true`: issued at once without approval, loudly, only when the requester
    /// asks for break-glass access; never chosen for an ordinary request.
    pub break_glass: bool,
    /// `review: required` (always for break-glass): every grant needs a post-access review.
    pub review_required: bool,
    /// `requester_mfa: totp`: a request needs a verified one-time code on its connection.
    pub requester_mfa: bool,
    /// `approver_mfa: totp`: an approval needs a verified one-time code on its connection.
    pub approver_mfa: bool,
}

/// A rule's `reason_pattern`, compiled once. Compared by its text.
#[derive(Clone, Debug)]
pub struct ReasonPattern(regex::Regex);

impl ReasonPattern {
    /// Compiles `pattern`; the message says what is wrong with it.
    pub fn new(pattern: &str) -> Result<Self, String> {
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map(Self)
            .map_err(|e| match e {
                regex::Error::Syntax(text) => text
                    .lines()
                    .last()
                    .unwrap_or("invalid")
                    .trim_start_matches("error: ")
                    .to_string(),
                other => other.to_string(),
            })
    }

    /// Whether `reason` matches (anywhere, unless the pattern is anchored).
    pub fn is_match(&self, reason: &str) -> bool {
        self.0.is_match(reason)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for ReasonPattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ReasonPattern {}

/// What a requester asks for (already syntax-checked by [`crate::names`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// Host names.
    pub hosts: Vec<String>,
    /// Login accounts.
    pub logins: Vec<String>,
    /// Validity of the certificate.
    pub duration: Duration,
    /// Break-glass access: only break-glass rules are considered, and only then.
    #[serde(default)]
    pub break_glass: bool,
}

/// What a rule allows for one [`Ask`]: everything the certificate will carry except serial, key
/// id and times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The rule that allows it.
    pub rule: String,
    /// The hosts asked for, without repeats, in the order asked.
    pub hosts: Vec<String>,
    /// The logins asked for, without repeats, in the order asked.
    pub logins: Vec<String>,
    /// One per (login, host), from `principal_format`: for login in logins { for host in hosts }.
    /// Never empty.
    pub principals: Vec<String>,
    /// Validity of the certificate; at most the rule's `max_duration`.
    pub duration: Duration,
    /// Distinct approvers needed.
    pub approvals_needed: u32,
    /// The rule's extensions.
    pub extensions: Vec<String>,
    /// The rule's critical options.
    pub critical_options: BTreeMap<String, String>,
    /// Issued under a break-glass rule.
    #[serde(default)]
    pub break_glass: bool,
}

impl Grant {
    /// The ask this grant answers, to judge it again.
    pub fn ask(&self) -> Ask {
        Ask {
            hosts: self.hosts.clone(),
            logins: self.logins.clone(),
            duration: self.duration,
            break_glass: self.break_glass,
        }
    }
}

/// Why the policy says no. Display is one line for the person refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The name is not a user in the config.
    #[error("{} is not a registered user", Plain(.0))]
    UnknownUser(String),
    /// A host asked for is in no host group, so no rule can cover it.
    #[error("host {} is not in any host group", Plain(.0))]
    UnknownHost(String),
    /// The ask names no host (a certificate without principals would be valid everywhere).
    #[error("the request names no host")]
    NoHosts,
    /// The ask names no login.
    #[error("the request names no login")]
    NoLogins,
    /// The ask is for a zero duration.
    #[error("duration must be more than zero")]
    ZeroDuration,
    /// No rule the requester may use covers this (login, host) pair.
    #[error(
        "no {}rule lets {} request login {} on {}",
        if *break_glass { "break-glass " } else { "" },
        Plain(requester),
        Plain(login),
        Plain(host)
    )]
    NoRule {
        /// Whether break-glass rules were asked for.
        break_glass: bool,
        /// Who asked.
        requester: String,
        /// The login of the first pair no rule covers.
        login: String,
        /// The host of the first pair no rule covers.
        host: String,
    },
    /// Every pair is covered by some rule, but no single rule covers them all.
    #[error(
        "no single rule lets {} request all of these hosts and logins together; ask for them in separate requests",
        Plain(requester)
    )]
    NoSingleRule {
        /// Who asked.
        requester: String,
    },
    /// The first rule that covers the ask allows a shorter duration.
    #[error("{} is longer than rule {} allows ({})", format_duration(*requested), Plain(rule), format_duration(*max))]
    DurationTooLong {
        /// The duration asked for.
        requested: Duration,
        /// The rule's `max_duration`.
        max: Duration,
        /// The rule that covers the ask.
        rule: String,
    },
    /// The approver is the requester.
    #[error("you cannot approve your own request")]
    SelfApproval,
    /// The approver is in none of the rule's approvers groups.
    #[error(
        "{} may not approve requests under rule {}",
        Plain(approver),
        Plain(rule)
    )]
    NotEligible {
        /// Who tried to approve.
        approver: String,
        /// The rule of the request.
        rule: String,
    },
    /// The user is in none of the auditors groups.
    #[error("only auditors may do this")]
    NotAuditor,
    /// The reason does not match the rule's `reason_pattern`.
    #[error(
        "rule {} needs a reason matching {} (a ticket reference); yours does not",
        Plain(rule),
        crate::names::show(pattern)
    )]
    ReasonMismatch {
        /// The rule of the request.
        rule: String,
        /// Its `reason_pattern`.
        pattern: String,
    },
    /// Under the policy now in force, the request would not get exactly the same grant (the
    /// rule changed, went away, or the requester lost access); it cannot be approved.
    #[error(
        "the policy changed since this request was made, so it can no longer be approved; request again"
    )]
    PolicyChanged,
}

/// Shows a name as is when it is a plain name, else quoted and escaped: names in denials may
/// come from what a person typed.
struct Plain<'a>(&'a str);

impl fmt::Display for Plain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = !self.0.is_empty()
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if plain {
            f.write_str(self.0)
        } else {
            f.write_str(&crate::names::show(self.0))
        }
    }
}

/// The validated policy part of the config: users, host groups, rules, auditors and the
/// principal format. Built only by [`crate::PolicyText::validate`] (which [`crate::parse`] and
/// the daemon's config reader call), so every invariant checked there holds.
#[derive(Clone, Debug)]
pub struct Policy {
    users: Vec<User>,
    /// Name -> position in `users`.
    by_name: HashMap<String, usize>,
    /// Key blob (SSH wire format, no comment) -> position in `users`.
    by_key: HashMap<Vec<u8>, usize>,
    /// Host group name -> host names, in file order.
    host_groups: Vec<(String, Vec<String>)>,
    rules: Vec<Rule>,
    auditors: Vec<String>,
    operators: Vec<String>,
    principal_format: String,
}

impl Policy {
    /// Assembles a policy from parts that [`crate::config`] has validated.
    pub(crate) fn new(
        users: Vec<User>,
        host_groups: Vec<(String, Vec<String>)>,
        rules: Vec<Rule>,
        auditors: Vec<String>,
        operators: Vec<String>,
        principal_format: String,
    ) -> Self {
        let by_name = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.clone(), i))
            .collect();
        let by_key = users
            .iter()
            .enumerate()
            .flat_map(|(i, u)| u.keys.iter().map(move |k| (k.as_bytes().to_vec(), i)))
            .collect();
        Self {
            users,
            by_name,
            by_key,
            host_groups,
            rules,
            auditors,
            operators,
            principal_format,
        }
    }

    /// The user named `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.by_name.get(name).map(|&i| &self.users[i])
    }

    /// All users, in file order.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.iter()
    }

    /// The user a public key belongs to, by its SSH wire-format blob (what
    /// `ssh_key::PublicKey::to_bytes()` gives; a key's comment is not part of it).
    pub fn identify(&self, key_blob: &[u8]) -> Option<&User> {
        self.by_key.get(key_blob).map(|&i| &self.users[i])
    }

    /// The principal format, with `{login}` and `{host}` placeholders.
    pub fn principal_format(&self) -> &str {
        &self.principal_format
    }

    /// The principal for one (login, host) pair: `principal_format` with `{login}` and `{host}`
    /// replaced, in one pass (a replacement is never itself expanded).
    pub fn principal(&self, login: &str, host: &str) -> String {
        let mut out = String::with_capacity(self.principal_format.len() + login.len() + host.len());
        let mut rest = self.principal_format.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let tail = &rest[start..];
            if let Some(after) = tail.strip_prefix("{login}") {
                out.push_str(login);
                rest = after;
            } else if let Some(after) = tail.strip_prefix("{host}") {
                out.push_str(host);
                rest = after;
            } else {
                out.push('{');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        out
    }

    /// All host groups with their hosts, in file order.
    pub fn host_groups(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.host_groups
            .iter()
            .map(|(name, hosts)| (name.as_str(), hosts.as_slice()))
    }

    /// The groups whose members are auditors.
    pub fn auditor_groups(&self) -> &[String] {
        &self.auditors
    }

    /// The groups whose members are operators (they may reset a person's second factor).
    pub fn operator_groups(&self) -> &[String] {
        &self.operators
    }

    /// Whether `user` is in one of the operators groups.
    pub fn is_operator(&self, user: &str) -> bool {
        self.user(user).is_some_and(|u| u.in_any(&self.operators))
    }

    /// All rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule named `name`.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Every host the rule covers: the hosts of its host groups, without repeats, in order.
    pub fn hosts_of_rule(&self, rule: &Rule) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for group in &rule.host_groups {
            for host in self.hosts_of_group(group) {
                if !hosts.contains(host) {
                    hosts.push(host.clone());
                }
            }
        }
        hosts
    }

    /// Every login some rule may grant on `host`, without repeats, in rule order: what the
    /// host's principals files must list.
    pub fn logins_for_host(&self, host: &str) -> Vec<String> {
        let mut logins: Vec<String> = Vec::new();
        for rule in self.rules.iter().filter(|r| self.rule_has_host(r, host)) {
            for login in &rule.logins {
                if !logins.contains(login) {
                    logins.push(login.clone());
                }
            }
        }
        logins
    }

    fn hosts_of_group(&self, group: &str) -> &[String] {
        self.host_groups
            .iter()
            .find(|(name, _)| name == group)
            .map_or(&[], |(_, hosts)| hosts.as_slice())
    }

    fn rule_has_host(&self, rule: &Rule, host: &str) -> bool {
        rule.host_groups
            .iter()
            .any(|g| self.hosts_of_group(g).iter().any(|h| h == host))
    }

    fn host_known(&self, host: &str) -> bool {
        self.host_groups
            .iter()
            .any(|(_, hosts)| hosts.iter().any(|h| h == host))
    }

    /// Whether `rule` covers every host and every login asked.
    fn covers(&self, rule: &Rule, hosts: &[String], logins: &[String]) -> bool {
        hosts.iter().all(|h| self.rule_has_host(rule, h))
            && logins.iter().all(|l| rule.logins.contains(l))
    }

    /// First rule (in file order) whose requester groups include one of the requester's groups,
    /// whose host groups together contain EVERY asked host and whose logins contain EVERY asked
    /// login wins; then the duration must be <= its max_duration (else `DurationTooLong`, not a
    /// later rule).
    ///
    /// Repeated hosts or logins in the ask are dropped (keeping the first), so the grant never
    /// carries a principal twice.
    pub fn decide_request(&self, requester: &str, ask: &Ask) -> Result<Grant, Denial> {
        let user = self
            .user(requester)
            .ok_or_else(|| Denial::UnknownUser(requester.to_string()))?;
        let hosts = without_repeats(&ask.hosts);
        let logins = without_repeats(&ask.logins);
        if hosts.is_empty() {
            return Err(Denial::NoHosts);
        }
        if logins.is_empty() {
            return Err(Denial::NoLogins);
        }
        if ask.duration.is_zero() {
            return Err(Denial::ZeroDuration);
        }
        if let Some(host) = hosts.iter().find(|h| !self.host_known(h)) {
            return Err(Denial::UnknownHost(host.clone()));
        }
        let usable: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| user.in_any(&r.requesters) && r.break_glass == ask.break_glass)
            .collect();
        if let Some(rule) = usable.iter().find(|r| self.covers(r, &hosts, &logins)) {
            if ask.duration > rule.max_duration {
                return Err(Denial::DurationTooLong {
                    requested: ask.duration,
                    max: rule.max_duration,
                    rule: rule.name.clone(),
                });
            }
            let principals = logins
                .iter()
                .flat_map(|l| hosts.iter().map(move |h| (l, h)))
                .map(|(l, h)| self.principal(l, h))
                .collect();
            return Ok(Grant {
                rule: rule.name.clone(),
                hosts,
                logins,
                principals,
                duration: ask.duration,
                approvals_needed: rule.approvals,
                extensions: rule.extensions.clone(),
                critical_options: rule.critical_options.clone(),
                break_glass: rule.break_glass,
            });
        }
        for login in &logins {
            for host in &hosts {
                let pair_covered = usable.iter().any(|r| {
                    self.covers(r, std::slice::from_ref(host), std::slice::from_ref(login))
                });
                if !pair_covered {
                    return Err(Denial::NoRule {
                        break_glass: ask.break_glass,
                        requester: requester.to_string(),
                        login: login.clone(),
                        host: host.clone(),
                    });
                }
            }
        }
        Err(Denial::NoSingleRule {
            requester: requester.to_string(),
        })
    }

    /// [`Policy::decide_request`], as the proof a request needs to be made: only this
    /// decision lets the lifecycle create one.
    pub fn decide(&self, requester: &str, ask: &Ask) -> Result<Decided, Denial> {
        Ok(Decided::new(
            requester,
            self.decide_request(requester, ask)?,
        ))
    }

    /// May `approver` approve a request by `requester` for `grant`? Re-evaluates the request
    /// under the current policy: the requester must still be allowed exactly this grant
    /// (`decide_request` with the same Ask must return an equal Grant, else
    /// [`Denial::PolicyChanged`]), approver != requester, and the approver is in one of the
    /// rule's approvers groups.
    ///
    /// Checked in this order: unknown approver, self-approval, policy change, eligibility. The
    /// [`Eligible`] returned is the proof the lifecycle needs to record the approval.
    pub fn check_approver(
        &self,
        approver: &str,
        requester: &str,
        grant: &Grant,
    ) -> Result<Eligible, Denial> {
        let approving = self
            .user(approver)
            .ok_or_else(|| Denial::UnknownUser(approver.to_string()))?;
        if approver == requester {
            return Err(Denial::SelfApproval);
        }
        let rule = self.still_granted(requester, grant)?;
        if !approving.in_any(&rule.approvers) {
            return Err(Denial::NotEligible {
                approver: approver.to_string(),
                rule: rule.name.clone(),
            });
        }
        Ok(Eligible::new(approver, requester, &rule.name))
    }

    /// The rule of `grant` if the current policy still gives `requester` exactly `grant`.
    fn still_granted(&self, requester: &str, grant: &Grant) -> Result<&Rule, Denial> {
        match self.decide_request(requester, &grant.ask()) {
            Ok(now) if now == *grant => self.rule(&grant.rule).ok_or(Denial::PolicyChanged),
            _ => Err(Denial::PolicyChanged),
        }
    }

    /// Approvers eligible for a grant (names, in file order), for `show` and for progress
    /// messages: exactly the users for whom [`Policy::check_approver`] succeeds, so empty when
    /// the policy no longer gives the requester this grant.
    pub fn eligible_approvers(&self, requester: &str, grant: &Grant) -> Vec<String> {
        let Ok(rule) = self.still_granted(requester, grant) else {
            return Vec::new();
        };
        self.users
            .iter()
            .filter(|u| u.name != requester && u.in_any(&rule.approvers))
            .map(|u| u.name.clone())
            .collect()
    }

    /// Whether `user` is in one of the auditors groups.
    pub fn is_auditor(&self, user: &str) -> bool {
        self.user(user).is_some_and(|u| u.in_any(&self.auditors))
    }

    /// Whether `user` is in one of the approvers groups of the rule named `rule` (as the policy
    /// stands now). Used for `revoke` and for seeing requests, which stay possible for a rule's
    /// approvers after the rule changed.
    pub fn is_approver_of(&self, user: &str, rule: &str) -> bool {
        match (self.user(user), self.rule(rule)) {
            (Some(u), Some(r)) => u.in_any(&r.approvers),
            _ => false,
        }
    }

    /// May `viewer` see a request (requester themself, an eligible approver, or an auditor)?
    ///
    /// "Eligible approver" here means an approver of the grant's rule as the policy stands now,
    /// without re-judging the request, so approvers can still look at a request that the
    /// policy no longer allows (to see why it cannot be approved). Unknown viewers see nothing.
    pub fn may_view(&self, viewer: &str, requester: &str, grant: &Grant) -> bool {
        if self.user(viewer).is_none() {
            return false;
        }
        viewer == requester || self.is_auditor(viewer) || self.is_approver_of(viewer, &grant.rule)
    }

    /// For `whoami`: the rules the user may request under, in file order.
    pub fn rules_requestable_by(&self, user: &str) -> Vec<&Rule> {
        let Some(u) = self.user(user) else {
            return Vec::new();
        };
        self.rules
            .iter()
            .filter(|r| u.in_any(&r.requesters))
            .collect()
    }

    /// For `whoami`: the rules the user may approve under, in file order.
    pub fn rules_approvable_by(&self, user: &str) -> Vec<&Rule> {
        let Some(u) = self.user(user) else {
            return Vec::new();
        };
        self.rules
            .iter()
            .filter(|r| u.in_any(&r.approvers))
            .collect()
    }
}

/// `items` without repeats, keeping the first of each.
fn without_repeats(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
