//! Lists of names in the policy: each name safe and listed once; a host group named by a rule
//! must exist; a group of people that no user lists is a warning, never an error, because
//! removing a group's last member from `users:` must always take effect (offboarding), and
//! nobody is in that group meanwhile.

use std::collections::HashSet;

use crate::document::Problems;
use crate::locate::YamlPath;
use crate::names::check_name;

/// The groups of people (from `users:`) and the host groups (from `hosts:`) that exist.
pub(super) struct Known<'a> {
    pub groups: HashSet<&'a str>,
    pub host_groups: HashSet<&'a str>,
}

/// Groups of people named somewhere but listed by no user, for one warning per group.
#[derive(Default)]
pub(super) struct GroupCheck {
    /// The group, the line of its first mention, and what names it (`rule dev-web`,
    /// `auditors`), in file order.
    empty: Vec<(String, Option<usize>, Vec<String>)>,
}

impl GroupCheck {
    /// A list of groups of people at `path`, named by `named_by`; at least one if `required`.
    pub fn people(
        &mut self,
        names: &[String],
        path: &YamlPath,
        existing: &HashSet<&str>,
        required: bool,
        named_by: &str,
        problems: &mut Problems<'_>,
    ) {
        listed(names, path, "group", required, problems);
        for (i, name) in names.iter().enumerate() {
            if check_name(name).is_ok() && !existing.contains(name.as_str()) {
                self.note_empty(problems.line(&path.index(i)), name, named_by);
            }
        }
    }

    fn note_empty(&mut self, line: Option<usize>, group: &str, named_by: &str) {
        match self.empty.iter_mut().find(|(g, ..)| g == group) {
            Some((_, _, by)) if by.iter().any(|b| b == named_by) => {}
            Some((_, _, by)) => by.push(named_by.to_string()),
            None => self
                .empty
                .push((group.to_string(), line, vec![named_by.to_string()])),
        }
    }

    /// One warning for each group that no user lists, at its first mention.
    pub fn warn_empty(self, problems: &mut Problems<'_>) {
        for (group, line, named_by) in self.empty {
            problems.warn_at_line(
                line,
                format_args!(
                    "group {group} has no members (no user lists it in groups); {}: nobody can \
                     use that until someone joins it",
                    named_by.join(", ")
                ),
            );
        }
    }
}

/// A rule's list of host groups at `path`: at least one, each defined under `hosts:`.
pub(super) fn host_group_list(
    names: &[String],
    path: &YamlPath,
    existing: &HashSet<&str>,
    problems: &mut Problems<'_>,
) {
    listed(names, path, "host group", true, problems);
    for (i, name) in names.iter().enumerate() {
        if check_name(name).is_ok() && !existing.contains(name.as_str()) {
            problems.at(
                &path.index(i),
                format_args!("host group {name} does not exist (it is not defined under hosts)"),
            );
        }
    }
}

/// A list of `what` names: at least one if `required`, each one safe and listed once.
fn listed(
    names: &[String],
    path: &YamlPath,
    what: &str,
    required: bool,
    problems: &mut Problems<'_>,
) {
    if required && names.is_empty() {
        problems.at(path, format_args!("is empty; name at least one {what}"));
    }
    name_list(names, path, what, problems);
}

/// Names that must each be safe and listed once.
pub(super) fn name_list(
    names: &[String],
    path: &YamlPath,
    what: &str,
    problems: &mut Problems<'_>,
) {
    for (i, name) in names.iter().enumerate() {
        if let Err(e) = check_name(name) {
            problems.at(&path.index(i), e);
        } else if names[..i].contains(name) {
            problems.at(
                &path.index(i),
                format_args!("{what} {name} is listed twice"),
            );
        }
    }
}
