//! The policy sections of the config file as written -> a validated [`Policy`].
//!
//! The sections are `principal_format`, `users`, `hosts`, `rules`, `auditors` and `operators`.
//! serde_yaml reads them into private raw structs that refuse unknown fields ([`PolicyText`]);
//! then every value is checked, one step per idea (the modules below), and every problem is
//! recorded in a [`Problems`] collector with its line. A [`Policy`] is used only once no
//! problem was found. The daemon's config file holds these sections next to its own settings:
//! the binary reads the whole file, with its own raw struct that lists every section, and hands
//! these to [`PolicyText::validate`].

mod groups;
mod principal;
mod rules;
mod users;

#[cfg(test)]
mod tests;

use std::path::Path;

use serde::Deserialize;

use crate::decide::Policy;
use crate::document::{self, ConfigError, ConfigErrors, Problems};
use crate::locate::{LineIndex, YamlPath};

pub use rules::{KNOWN_EXTENSIONS, MAX_BREAK_GLASS_DURATION, MAX_RULE_DURATION, RawRules};
pub use users::{RawHostGroups, RawUsers};

/// `principal_format` when the file does not say.
pub const DEFAULT_PRINCIPAL_FORMAT: &str = "{login}@{host}";
/// The policy sections as written; every one optional so that all problems are found in one
/// pass. Read alone (a file of only these sections, [`parse`]) it refuses any other key; the
/// daemon's config file lists the same fields in its own raw struct.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping of config settings")]
pub struct PolicyText {
    /// `principal_format:`.
    pub principal_format: Option<String>,
    /// `users:`.
    pub users: Option<RawUsers>,
    /// `hosts:`.
    pub hosts: Option<RawHostGroups>,
    /// `rules:`.
    pub rules: Option<RawRules>,
    /// `auditors:`.
    pub auditors: Option<Vec<String>>,
    /// `operators:`.
    pub operators: Option<Vec<String>>,
}

impl PolicyText {
    /// Checks every section, recording each problem (and each warning) in `problems`; the
    /// policy returned may be used only if `problems` stays free of problems.
    pub fn validate(self, problems: &mut Problems<'_>) -> Policy {
        let root = YamlPath::root();
        let mut groups = groups::GroupCheck::default();

        let principal_format = self
            .principal_format
            .unwrap_or_else(|| DEFAULT_PRINCIPAL_FORMAT.to_string());
        principal::check(&principal_format, &root.key("principal_format"), problems);

        let users = users::validate_users(self.users.unwrap_or_default(), problems);
        let host_groups = users::validate_host_groups(self.hosts.unwrap_or_default(), problems);
        let known = groups::Known {
            groups: users
                .iter()
                .flat_map(|u| u.groups.iter().map(String::as_str))
                .collect(),
            host_groups: host_groups.iter().map(|(n, _)| n.as_str()).collect(),
        };
        let rules = rules::validate_rules(
            self.rules.unwrap_or_default(),
            &users,
            &known,
            &mut groups,
            problems,
        );

        let auditors = self.auditors.unwrap_or_default();
        let operators = self.operators.unwrap_or_default();
        for (name, list) in [("auditors", &auditors), ("operators", &operators)] {
            groups.people(list, &root.key(name), &known.groups, false, name, problems);
        }
        groups.warn_empty(problems);

        Policy::new(
            users,
            host_groups,
            rules,
            auditors,
            operators,
            principal_format,
        )
    }
}

/// A validated policy document, with what is allowed but probably not meant.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Who may ask for what, and who approves.
    pub policy: Policy,
    /// Groups named in rules (or `auditors`, `operators`) that no user lists, rules nobody can
    /// approve: one line each, in line order. Never a reason to refuse a config: removing a
    /// group's last member must always take effect.
    pub warnings: Vec<ConfigError>,
}

/// Parses and validates a document of only the policy sections; `file` names it in messages.
pub fn parse(text: &str, file: &Path) -> Result<Parsed, ConfigErrors> {
    let index = LineIndex::build(text);
    let raw: PolicyText = document::read(text, file, &index)?;
    let mut problems = Problems::new(&index);
    let policy = raw.validate(&mut problems);
    let warnings = problems.finish(file)?;
    Ok(Parsed { policy, warnings })
}
