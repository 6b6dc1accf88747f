//! How much the control channel lets clients hold (`limits:` in the config file), like sshd's
//! `MaxStartups`, `LoginGraceTime`, `ClientAlive*` and `MaxSessions`: the section as written,
//! and its check, reported through the config file's one problem collector.

use std::time::Duration;

use jitca_policy::{Problems, YamlPath};
use serde::Deserialize;

/// The longest `login_grace_time` and `idle_timeout`.
pub const MAX_LIMIT_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// How much the control channel lets clients hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections that have not authenticated yet, at once, overall.
    pub max_startups: u32,
    /// The same, from one source address.
    pub max_startups_per_source: u32,
    /// Time to finish authenticating (from the TCP connection).
    pub login_grace_time: Duration,
    /// An authenticated connection with no command running is closed after this.
    pub idle_timeout: Duration,
    /// Authenticated connections one person may hold at once.
    pub max_sessions_per_user: u32,
    /// The longest a command waits for a shared store (PostgreSQL) before it is refused.
    pub store_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_startups: 256,
            max_startups_per_source: 16,
            login_grace_time: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(15 * 60),
            max_sessions_per_user: 16,
            store_timeout: Duration::from_secs(10),
        }
    }
}

/// `limits:` as written; each value given replaces its default.
#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "limits: a mapping of max_startups, max_startups_per_source, login_grace_time, idle_timeout, max_sessions_per_user, store_timeout"
)]
pub struct RawLimits {
    max_startups: Option<u32>,
    max_startups_per_source: Option<u32>,
    login_grace_time: Option<String>,
    idle_timeout: Option<String>,
    max_sessions_per_user: Option<u32>,
    store_timeout: Option<String>,
}

impl Limits {
    /// The `limits:` section at `path`: counts are 1 or more, times more than zero and at most
    /// [`MAX_LIMIT_DURATION`]. A value refused is recorded in `problems` and left at its
    /// default.
    pub fn read(raw: RawLimits, path: &YamlPath, problems: &mut Problems<'_>) -> Self {
        let mut limits = Limits::default();
        for (name, value, slot) in [
            ("max_startups", raw.max_startups, &mut limits.max_startups),
            (
                "max_startups_per_source",
                raw.max_startups_per_source,
                &mut limits.max_startups_per_source,
            ),
            (
                "max_sessions_per_user",
                raw.max_sessions_per_user,
                &mut limits.max_sessions_per_user,
            ),
        ] {
            match value {
                Some(0) => problems.at(&path.key(name), "must be at least 1"),
                Some(n) => *slot = n,
                None => {}
            }
        }
        for (name, value, slot) in [
            (
                "login_grace_time",
                raw.login_grace_time,
                &mut limits.login_grace_time,
            ),
            ("idle_timeout", raw.idle_timeout, &mut limits.idle_timeout),
            (
                "store_timeout",
                raw.store_timeout,
                &mut limits.store_timeout,
            ),
        ] {
            if let Some(d) =
                value.and_then(|text| problems.duration(&text, MAX_LIMIT_DURATION, &path.key(name)))
            {
                *slot = d;
            }
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use jitca_policy::LineIndex;

    use super::*;

    /// The limits of a document holding only `limits:`, or its problems.
    fn read(text: &str) -> Result<Limits, Vec<String>> {
        #[derive(Deserialize, Default)]
        struct File {
            limits: Option<RawLimits>,
        }
        let file = Path::new("j.yaml");
        let index = LineIndex::build(text);
        let raw: File = jitca_policy::document::read(text, file, &index)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let mut problems = Problems::new(&index);
        let limits = Limits::read(
            raw.limits.unwrap_or_default(),
            &YamlPath::root().key("limits"),
            &mut problems,
        );
        problems
            .finish(file)
            .map(|_| limits)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn each_value_given_replaces_its_default() {
        assert_eq!(read(""), Ok(Limits::default()));
        let limits = read("limits:\n  max_startups: 3\n  idle_timeout: 90s\n").unwrap();
        assert_eq!(limits.max_startups, 3);
        assert_eq!(limits.idle_timeout, Duration::from_secs(90));
        assert_eq!(limits.max_startups_per_source, 16);
        assert_eq!(limits.login_grace_time, Duration::from_secs(20));
    }

    #[test]
    fn zero_counts_and_bad_times_are_refused_at_their_lines() {
        assert_eq!(
            read("limits:\n  max_sessions_per_user: 0\n  login_grace_time: 2d\n"),
            Err(vec![
                "j.yaml:2: limits.max_sessions_per_user: must be at least 1".to_string(),
                "j.yaml:3: limits.login_grace_time: 2d is longer than the most jitca allows (1d)"
                    .to_string(),
            ])
        );
        let unknown = read("limits:\n  max_startup: 3\n").unwrap_err();
        assert!(
            unknown[0].starts_with("j.yaml:2: limits: unknown field `max_startup`"),
            "{unknown:?}"
        );
    }
}
