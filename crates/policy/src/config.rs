//! The config file: the YAML as written (private raw structs) -> a validated [`Config`].
//!
//! serde_yaml reads the text into raw structs that refuse unknown fields; then every value is
//! checked, and every problem found is reported with the file, the line and what is wrong,
//! like `sshd -t`. A [`Policy`] exists only once all checks pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use ssh_key::PublicKey;
use ssh_key::public::KeyData;

use crate::decide::{Policy, ReasonPattern, Rule, User};
use crate::duration::{format_duration, parse_duration};
use crate::locate::{LineIndex, YamlPath};
use crate::names::{check_host_name, check_login, check_name, show};

mod ca;

pub use ca::CaLines;
pub use jitca_signer::{CaKeySource, Passphrase};

/// How the daemon writes its log lines (`log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `listen` when the file does not say.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2222";
/// `ca_key` when the file does not say.
pub const DEFAULT_CA_KEY: &str = "ca";
/// `host_key` when the file does not say.
pub const DEFAULT_HOST_KEY: &str = "host_ed25519";
/// `data_dir` when the file does not say.
pub const DEFAULT_DATA_DIR: &str = "data";
/// `principal_format` when the file does not say.
pub const DEFAULT_PRINCIPAL_FORMAT: &str = "{login}@{host}";
/// `pending_ttl` when the file does not say.
pub const DEFAULT_PENDING_TTL: Duration = Duration::from_secs(60 * 60);
/// The longest `pending_ttl`.
pub const MAX_PENDING_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The longest `max_duration` of a rule: temporary access is measured in hours, not weeks.
pub const MAX_RULE_DURATION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The longest `max_duration` of a break-glass rule: emergency access is short.
pub const MAX_BREAK_GLASS_DURATION: Duration = Duration::from_secs(4 * 60 * 60);
/// Where the key that encrypts second-factor secrets is, unless `mfa_key` says.
pub const DEFAULT_MFA_KEY: &str = "mfa.key";
/// Where the key that signs audit checkpoints is, unless `audit_key` says.
pub const DEFAULT_AUDIT_KEY: &str = "audit_ed25519";
/// `checkpoint_interval` when the file does not say.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// `store_cache` when the file does not say: the most memory the store's page cache takes.
pub const DEFAULT_STORE_CACHE: u64 = 64 * 1024 * 1024;
/// The smallest `store_cache`: below it sled reads the same pages again and again.
pub const MIN_STORE_CACHE: u64 = 1024 * 1024;
/// The longest `checkpoint_interval`.
pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The alerts a webhook may subscribe to (`notify: - events:`).
pub const NOTIFY_EVENTS: [&str; 6] = [
    "request_made",
    "decided",
    "break_glass",
    "revoked",
    "review_due",
    "checkpoint",
];
/// The certificate extensions a rule may grant (OpenSSH's `PROTOCOL.certkeys`).
pub const KNOWN_EXTENSIONS: [&str; 6] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
    "no-touch-required",
];
/// Smallest RSA user key accepted, in bits.
pub const MIN_RSA_BITS: u32 = 2048;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The line (from 1) the problem is on, when it is on one.
    pub line: Option<usize>,
    /// What is wrong; for a value in the file it starts with its path, like
    /// `rules[0].hosts[1]: ...`.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `FILE:LINE: message`, or `FILE: message` when no line applies.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file, in line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

/// How much the control channel lets clients hold, like sshd's `MaxStartups`,
/// `LoginGraceTime`, `ClientAlive*` and `MaxSessions`.
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_startups: 256,
            max_startups_per_source: 16,
            login_grace_time: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(15 * 60),
            max_sessions_per_user: 16,
        }
    }
}

/// The longest `login_grace_time` and `idle_timeout`.
pub const MAX_LIMIT_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// A validated config: addresses and paths for the daemon, and the [`Policy`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (as given to [`load`] or [`parse`]).
    pub file: PathBuf,
    /// Where the control channel listens.
    pub listen: SocketAddr,
    /// Where `GET /metrics` is served (Prometheus text format); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How log lines are written to stderr.
    pub log_format: LogFormat,
    /// The CA's OpenSSH private key file, resolved against the config file's folder. Not used
    /// with `ca_agent`; [`Config::ca_source`] says where the CA key really is.
    pub ca_key: PathBuf,
    /// Where the CA key is: `ca_key` (with `ca_key_passphrase_file` or
    /// `ca_key_passphrase_credential` when it is encrypted), or the ssh-agent of `ca_agent`
    /// holding the key of `ca_public_key`.
    pub ca_source: CaKeySource,
    /// The control channel's host key file, resolved.
    pub host_key: PathBuf,
    /// The sled store's folder, resolved.
    pub data_dir: PathBuf,
    /// Optional: the audit events also appended here as JSON lines (for log shippers).
    pub audit_log: Option<PathBuf>,
    /// Optional: the current KRL kept here, replaced atomically on every change.
    pub krl_path: Option<PathBuf>,
    /// Public key files of earlier CA keys that hosts still trust during a CA key rotation:
    /// the KRL revokes the same serials under them too.
    pub previous_ca_keys: Vec<PathBuf>,
    /// The line of each `previous_ca_keys` entry.
    pub previous_ca_keys_lines: Vec<Option<usize>>,
    /// How long a request nobody decides on stays pending; 1s to 7d.
    pub pending_ttl: Duration,
    /// Connection limits of the control channel.
    pub limits: Limits,
    /// Who may ask for what, and who approves.
    pub policy: Policy,
    /// The line of `ca_key:` in the file, if written there; for [`Config::check_key_files`].
    pub ca_key_line: Option<usize>,
    /// The line of `host_key:` in the file, if written there.
    pub host_key_line: Option<usize>,
    /// The lines of the other CA key settings, if written there.
    pub ca_lines: CaLines,
    /// The key that encrypts second-factor secrets in the store (32 random bytes, hex).
    pub mfa_key: PathBuf,
    /// The ed25519 key that signs audit checkpoints (never the CA key); made by `jitca init`
    /// or at the daemon's first start.
    pub audit_key: PathBuf,
    /// The line of `audit_key:` in the file, if written there.
    pub audit_key_line: Option<usize>,
    /// How often the daemon writes a signed checkpoint of the audit chain.
    pub checkpoint_interval: Duration,
    /// The most memory the store's page cache takes, in bytes (`store_cache: 64MiB`).
    pub store_cache: u64,
    /// Webhooks alerted of requests, decisions, break-glass, revocations and reviews due.
    pub notify: Vec<Hook>,
    /// What is allowed but probably not meant: groups named in rules (or `auditors`,
    /// `operators`) that no user lists, rules nobody can approve. One line each, in line
    /// order; `check` prints them, the daemon logs them. Never a reason to refuse a config:
    /// removing a group's last member must always take effect.
    pub warnings: Vec<ConfigError>,
}

/// One `notify:` webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// `http://` or `https://` URL; it may carry a secret, so it is never logged whole.
    pub url: String,
    /// The events it gets (names from [`NOTIFY_EVENTS`]); empty means all.
    pub events: Vec<String>,
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        message: format!("cannot read the config file: {e}"),
    })?;
    parse(&text, path)
}

/// Parses and validates config `text`; `file` names it in messages and its folder is where
/// relative paths resolve.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let index = LineIndex::build(text);
    let raw = match serde_yaml::from_str::<Option<RawConfig>>(text) {
        Ok(raw) => raw.unwrap_or_default(),
        Err(e) => return Err(serde_error(&e, file, &index).into()),
    };
    let mut problems = Problems {
        index: &index,
        found: Vec::new(),
        warnings: Vec::new(),
        empty_groups: Vec::new(),
    };
    let config = validate(raw, file, &index, &mut problems);
    let mut found = problems.found;
    if found.is_empty()
        && let Some(mut config) = config
    {
        let mut warnings = problems.warnings;
        for (group, line, users) in problems.empty_groups {
            warnings.push((
                line,
                format!(
                    "warning: group {group} has no members (no user lists it in groups); \
                     {}: nobody can use that until someone joins it",
                    users.join(", ")
                ),
            ));
        }
        warnings.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
        config.warnings = warnings
            .into_iter()
            .map(|(line, message)| ConfigError {
                file: file.to_path_buf(),
                line,
                message,
            })
            .collect();
        return Ok(config);
    }
    // Problems without a line go last; otherwise file order, and check order within a line.
    found.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
    Err(ConfigErrors(
        found
            .into_iter()
            .map(|(line, message)| ConfigError {
                file: file.to_path_buf(),
                line,
                message,
            })
            .collect(),
    ))
}

/// A serde_yaml error as a [`ConfigError`]: its line, and its message without the
/// " at line L column C" that the line already says.
fn serde_error(e: &serde_yaml::Error, file: &Path, index: &LineIndex) -> ConfigError {
    let mut message = e.to_string();
    let mut line = e.location().map(|loc| {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        loc.line()
    });
    // serde_yaml puts a repeated field at the start of its mapping; name the repeat's own line.
    if let Some(field) = message
        .rsplit_once("duplicate field `")
        .and_then(|(_, rest)| rest.strip_suffix('`'))
    {
        line = index.repeated_key_line(field, line.unwrap_or(0)).or(line);
    }
    ConfigError {
        file: file.to_path_buf(),
        line,
        message: one_safe_line(&message),
    }
}

/// `message` with every control and invisible formatting character escaped (`\u{1b}`): a
/// message may quote the file, or a library's words about it (a key's decoded algorithm
/// label), and is printed on the operator's terminal and in the daemon's log.
fn one_safe_line(message: &str) -> String {
    let mut safe = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() || crate::names::is_invisible_format(c) {
            safe.extend(c.escape_unicode());
        } else {
            safe.push(c);
        }
    }
    safe
}

/// The problems found so far, each with its line.
struct Problems<'a> {
    index: &'a LineIndex,
    found: Vec<(Option<usize>, String)>,
    /// Allowed, but said (`Config::warnings`).
    warnings: Vec<(Option<usize>, String)>,
    /// Groups named but listed by no user: the group, the line of its first mention, and
    /// what names it (`rule dev-web`, `auditors`), in file order.
    empty_groups: Vec<(String, Option<usize>, Vec<String>)>,
}

impl Problems<'_> {
    /// A group named at `path` by `user` that no user lists: a warning, once per group.
    fn empty_group(&mut self, path: &YamlPath, group: &str, user: String) {
        let line = self.index.line(path);
        match self.empty_groups.iter_mut().find(|(g, ..)| g == group) {
            Some((_, _, users)) if users.contains(&user) => {}
            Some((_, _, users)) => users.push(user),
            None => self
                .empty_groups
                .push((group.to_string(), line, vec![user])),
        }
    }

    /// Allowed but worth saying, at `path`.
    fn warn(&mut self, path: &YamlPath, message: impl fmt::Display) {
        let line = self.index.line(path);
        self.warnings
            .push((line, one_safe_line(&format!("warning: {path}: {message}"))));
    }

    /// A problem with the value at `path` (or where it would be written).
    fn at(&mut self, path: &YamlPath, message: impl fmt::Display) {
        let line = self.index.line(path);
        self.push(path, line, message);
    }

    /// A problem with the `occurrence`-th appearance of a key that a mapping repeats.
    fn at_nth(&mut self, path: &YamlPath, occurrence: usize, message: impl fmt::Display) {
        let line = self
            .index
            .nth_line(path, occurrence)
            .or_else(|| self.index.line(path));
        self.push(path, line, message);
    }

    fn push(&mut self, path: &YamlPath, line: Option<usize>, message: impl fmt::Display) {
        let message = if path.is_root() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        };
        self.found.push((line, one_safe_line(&message)));
    }
}

// ---- The YAML as written ----

/// The file as written; every field optional or defaulted so that all problems are found in
/// one pass, not one missing field at a time.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping of config settings")]
struct RawConfig {
    listen: Option<String>,
    metrics_listen: Option<String>,
    log_format: Option<String>,
    ca_key: Option<String>,
    ca_key_passphrase_file: Option<String>,
    ca_key_passphrase_credential: Option<String>,
    ca_agent: Option<String>,
    ca_public_key: Option<String>,
    host_key: Option<String>,
    data_dir: Option<String>,
    audit_log: Option<String>,
    krl_path: Option<String>,
    previous_ca_keys: Option<Vec<String>>,
    principal_format: Option<String>,
    pending_ttl: Option<String>,
    limits: Option<RawLimits>,
    users: Option<NamedMap<RawUser>>,
    hosts: Option<NamedMap<Vec<String>>>,
    rules: Option<Vec<RawRule>>,
    auditors: Option<Vec<String>>,
    operators: Option<Vec<String>>,
    mfa_key: Option<String>,
    audit_key: Option<String>,
    checkpoint_interval: Option<String>,
    store_cache: Option<String>,
    notify: Option<Vec<RawHook>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a webhook: a mapping with url and optionally events"
)]
struct RawHook {
    url: String,
    events: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "limits: a mapping of max_startups, max_startups_per_source, login_grace_time, idle_timeout, max_sessions_per_user"
)]
struct RawLimits {
    max_startups: Option<u32>,
    max_startups_per_source: Option<u32>,
    login_grace_time: Option<String>,
    idle_timeout: Option<String>,
    max_sessions_per_user: Option<u32>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a user: a mapping with keys and groups"
)]
struct RawUser {
    keys: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

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

/// A YAML mapping kept in file order, repeated keys included, so that validation can report a
/// repeated name at its own line instead of silently keeping the last one.
struct NamedMap<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = NamedMap<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, T>()? {
                    entries.push(entry);
                }
                Ok(NamedMap(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

// ---- Validation ----

/// Checks everything, recording each problem; returns the config when it could be built
/// (callers use it only when no problem was recorded).
fn validate(
    raw: RawConfig,
    file: &Path,
    index: &LineIndex,
    problems: &mut Problems<'_>,
) -> Option<Config> {
    let root = YamlPath::root();
    let base = file.parent().unwrap_or(Path::new(""));

    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse::<SocketAddr>().ok();
    if listen.is_none() {
        problems.at(
            &root.key("listen"),
            format_args!(
                "{} is not a socket address; write IP:PORT, like 127.0.0.1:2222",
                show(listen_text)
            ),
        );
    }

    let metrics_listen = raw.metrics_listen.as_deref().and_then(|text| {
        let parsed = text.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            problems.at(
                &root.key("metrics_listen"),
                format_args!(
                    "{} is not a socket address; write IP:PORT, like 127.0.0.1:9842",
                    show(text)
                ),
            );
        }
        parsed
    });
    if let (Some(metrics), Some(control)) = (metrics_listen, listen)
        && metrics.port() != 0
        && metrics == control
    {
        problems.at(
            &root.key("metrics_listen"),
            "is the control channel's listen address; give the metrics their own port",
        );
    }
    let log_format = match raw.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.at(
                &root.key("log_format"),
                format_args!("{} is not a log format; write text or json", show(other)),
            );
            LogFormat::Text
        }
    };

    let mut path_field = |name: &str, value: Option<String>, default: &str| {
        let value = value.unwrap_or_else(|| default.to_string());
        if value.is_empty() {
            problems.at(&root.key(name), "is empty; give a file path");
        }
        base.join(value)
    };
    let ca_key_written = raw.ca_key.is_some();
    let ca_key = path_field("ca_key", raw.ca_key, DEFAULT_CA_KEY);
    let ca_passphrase_file = raw
        .ca_key_passphrase_file
        .map(|p| path_field("ca_key_passphrase_file", Some(p), ""));
    let ca_agent = raw.ca_agent.map(|p| path_field("ca_agent", Some(p), ""));
    let ca_public_key = raw
        .ca_public_key
        .map(|p| path_field("ca_public_key", Some(p), ""));
    let host_key = path_field("host_key", raw.host_key, DEFAULT_HOST_KEY);
    let data_dir = path_field("data_dir", raw.data_dir, DEFAULT_DATA_DIR);
    let audit_log = raw.audit_log.map(|p| path_field("audit_log", Some(p), ""));
    let krl_path = raw.krl_path.map(|p| path_field("krl_path", Some(p), ""));
    let previous_ca_keys: Vec<PathBuf> = raw
        .previous_ca_keys
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            if p.is_empty() {
                problems.at(
                    &root.key("previous_ca_keys").index(i),
                    "is empty; give a .pub file",
                );
            }
            base.join(p)
        })
        .collect();
    let ca_source = ca::validate(
        ca::RawCa {
            ca_key: ca_key.clone(),
            ca_key_written,
            passphrase_file: ca_passphrase_file,
            passphrase_credential: raw.ca_key_passphrase_credential,
            agent: ca_agent,
            public_key: ca_public_key,
        },
        problems,
    );

    let principal_format = raw
        .principal_format
        .unwrap_or_else(|| DEFAULT_PRINCIPAL_FORMAT.to_string());
    check_principal_format(&principal_format, &root.key("principal_format"), problems);

    let pending_ttl = match raw.pending_ttl {
        None => Some(DEFAULT_PENDING_TTL),
        Some(text) => checked_duration(&text, MAX_PENDING_TTL, &root.key("pending_ttl"), problems),
    };

    let limits = validate_limits(
        raw.limits.unwrap_or_default(),
        &root.key("limits"),
        problems,
    );

    let users = validate_users(raw.users.unwrap_or(NamedMap(Vec::new())), problems);
    let groups: HashSet<&str> = users
        .iter()
        .flat_map(|u| u.groups.iter().map(String::as_str))
        .collect();
    let host_groups = validate_host_groups(raw.hosts.unwrap_or(NamedMap(Vec::new())), problems);
    let rules = validate_rules(
        raw.rules.unwrap_or_default(),
        &users,
        &groups,
        &host_groups,
        problems,
    );

    let auditors = raw.auditors.unwrap_or_default();
    check_group_list(
        &auditors,
        &root.key("auditors"),
        "group",
        &groups,
        false,
        "auditors",
        problems,
    );

    let operators = raw.operators.unwrap_or_default();
    check_group_list(
        &operators,
        &root.key("operators"),
        "group",
        &groups,
        false,
        "operators",
        problems,
    );
    let mfa_key = path_field_of(
        base,
        &root,
        "mfa_key",
        raw.mfa_key,
        DEFAULT_MFA_KEY,
        problems,
    );
    let audit_key = path_field_of(
        base,
        &root,
        "audit_key",
        raw.audit_key,
        DEFAULT_AUDIT_KEY,
        problems,
    );
    let checkpoint_interval = match raw.checkpoint_interval {
        None => Some(DEFAULT_CHECKPOINT_INTERVAL),
        Some(text) => checked_duration(
            &text,
            MAX_CHECKPOINT_INTERVAL,
            &root.key("checkpoint_interval"),
            problems,
        ),
    };
    let store_cache = match raw.store_cache {
        None => Some(DEFAULT_STORE_CACHE),
        Some(text) => match parse_size(&text) {
            Some(n) if n >= MIN_STORE_CACHE => Some(n),
            Some(_) => {
                problems.at(&root.key("store_cache"), "must be at least 1MiB");
                None
            }
            None => {
                problems.at(
                    &root.key("store_cache"),
                    format_args!(
                        "cannot read {}: give a size such as 64MiB or 1GiB",
                        show(&text)
                    ),
                );
                None
            }
        },
    };
    let notify = validate_notify(raw.notify.unwrap_or_default(), problems);

    let policy = Policy::new(
        users,
        host_groups,
        rules,
        auditors,
        operators,
        principal_format,
    );
    Some(Config {
        file: file.to_path_buf(),
        listen: listen?,
        metrics_listen,
        log_format,
        ca_key,
        ca_source,
        host_key,
        data_dir,
        audit_log,
        krl_path,
        previous_ca_keys_lines: (0..previous_ca_keys.len())
            .map(|i| index.line(&root.key("previous_ca_keys").index(i)))
            .collect(),
        previous_ca_keys,
        pending_ttl: pending_ttl?,
        limits: limits?,
        policy,
        ca_key_line: index.nth_line(&root.key("ca_key"), 0),
        host_key_line: index.nth_line(&root.key("host_key"), 0),
        ca_lines: ca::lines(index),
        mfa_key,
        audit_key,
        audit_key_line: index.nth_line(&root.key("audit_key"), 0),
        checkpoint_interval: checkpoint_interval?,
        store_cache: store_cache?,
        notify,
        warnings: Vec::new(),
    })
}

/// A path setting resolved against the config file's folder (empty is refused).
fn path_field_of(
    base: &Path,
    root: &YamlPath,
    name: &str,
    value: Option<String>,
    default: &str,
    problems: &mut Problems<'_>,
) -> PathBuf {
    let value = value.unwrap_or_else(|| default.to_string());
    if value.is_empty() {
        problems.at(&root.key(name), "is empty; give a file path");
    }
    base.join(value)
}

/// The `notify:` webhooks: http(s) URLs and known event names.
fn validate_notify(raw: Vec<RawHook>, problems: &mut Problems<'_>) -> Vec<Hook> {
    let path = YamlPath::root().key("notify");
    let mut hooks = Vec::new();
    for (i, hook) in raw.into_iter().enumerate() {
        let here = path.index(i);
        if let Err(e) = check_hook_url(&hook.url) {
            problems.at(&here.key("url"), e);
        }
        let events = hook.events.unwrap_or_default();
        for (j, event) in events.iter().enumerate() {
            if !NOTIFY_EVENTS.contains(&event.as_str()) {
                problems.at(
                    &here.key("events").index(j),
                    format_args!(
                        "unknown event {}; known: {}",
                        show(event),
                        NOTIFY_EVENTS.join(", ")
                    ),
                );
            }
        }
        hooks.push(Hook {
            url: hook.url,
            events,
        });
    }
    hooks
}

/// A webhook URL: `http://` or `https://`, a host, a port (if given) from 1 to 65535, nothing
/// that is not printable ASCII. Messages never repeat the URL: it usually carries a secret.
fn check_hook_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| "must start with https:// (or http://)".to_string())?;
    if let Some(bad) = url.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "contains {}; write the URL without spaces or other characters (percent-encode them)",
            show(&bad.to_string())
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after),
            None => return Err("has an unclosed [ in its host".to_string()),
        },
        None => host_port.split_at(host_port.find(':').unwrap_or(host_port.len())),
    };
    if host.is_empty() {
        return Err("names no host".to_string());
    }
    if !port.is_empty() {
        match port.strip_prefix(':').map(str::parse::<u16>) {
            Some(Ok(p)) if p != 0 => {}
            _ => return Err("has an invalid port (want 1 to 65535)".to_string()),
        }
    }
    Ok(())
}

/// The `limits:` section: each value given replaces its default; counts are 1 or more.
fn validate_limits(raw: RawLimits, path: &YamlPath, problems: &mut Problems<'_>) -> Option<Limits> {
    let mut limits = Limits::default();
    let mut ok = true;
    let mut count = |name: &str, value: Option<u32>, slot: &mut u32| match value {
        Some(0) => {
            problems.at(&path.key(name), "must be at least 1");
            ok = false;
        }
        Some(n) => *slot = n,
        None => {}
    };
    count("max_startups", raw.max_startups, &mut limits.max_startups);
    count(
        "max_startups_per_source",
        raw.max_startups_per_source,
        &mut limits.max_startups_per_source,
    );
    count(
        "max_sessions_per_user",
        raw.max_sessions_per_user,
        &mut limits.max_sessions_per_user,
    );
    for (name, value, slot) in [
        (
            "login_grace_time",
            raw.login_grace_time,
            &mut limits.login_grace_time,
        ),
        ("idle_timeout", raw.idle_timeout, &mut limits.idle_timeout),
    ] {
        if let Some(text) = value {
            match checked_duration(&text, MAX_LIMIT_DURATION, &path.key(name), problems) {
                Some(d) => *slot = d,
                None => ok = false,
            }
        }
    }
    ok.then_some(limits)
}

/// A duration from the file: readable, more than zero, at most `max`.
/// A size in bytes: a whole number and one of `KiB`, `MiB`, `GiB` (or none: bytes).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim() {
        "" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn checked_duration(
    text: &str,
    max: Duration,
    path: &YamlPath,
    problems: &mut Problems<'_>,
) -> Option<Duration> {
    match parse_duration(text) {
        Err(e) => {
            problems.at(path, format_args!("cannot read {}: {e}", show(text)));
            None
        }
        Ok(d) if d.is_zero() => {
            problems.at(path, "must be more than zero");
            None
        }
        Ok(d) if d > max => {
            problems.at(
                path,
                format_args!(
                    "{} is longer than the most jitca allows ({})",
                    format_duration(d),
                    format_duration(max)
                ),
            );
            None
        }
        Ok(d) => Some(d),
    }
}

/// `{login}` and `{host}` once each, nothing that would split, comment out or blur a principal,
/// and a separator that keeps different (login, host) pairs from giving the same principal.
fn check_principal_format(format: &str, path: &YamlPath, problems: &mut Problems<'_>) {
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

fn validate_users(raw: NamedMap<RawUser>, problems: &mut Problems<'_>) -> Vec<User> {
    let users_path = YamlPath::root().key("users");
    let mut users: Vec<User> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Who holds each key, to refuse a key that would identify two users (or one twice).
    let mut key_owner: HashMap<KeyData, YamlPath> = HashMap::new();
    for (name, raw_user) in raw.0 {
        let path = users_path.key(&name);
        let occurrence = seen.entry(name.clone()).or_insert(0);
        *occurrence += 1;
        if *occurrence > 1 {
            problems.at_nth(
                &path,
                *occurrence - 1,
                format_args!("user {} is defined more than once", show(&name)),
            );
            continue;
        }
        if let Err(e) = check_name(&name) {
            problems.at(&path, e);
        }
        let mut keys = Vec::new();
        for (i, line) in raw_user.keys.iter().enumerate() {
            let key_path = path.key("keys").index(i);
            let Some(key) = parse_user_key(line, &key_path, problems) else {
                continue;
            };
            if let Some(owner) = key_owner.get(key.key_data()) {
                problems.at(
                    &key_path,
                    format_args!("the same key as {owner}; a key must identify exactly one user"),
                );
                continue;
            }
            key_owner.insert(key.key_data().clone(), key_path);
            keys.push(key);
        }
        check_name_list(&raw_user.groups, &path.key("groups"), "group", problems);
        users.push(User {
            name,
            keys,
            groups: raw_user.groups,
        });
    }
    users
}

/// One `keys` entry: an OpenSSH public key line, not a certificate or a private key.
fn parse_user_key(line: &str, path: &YamlPath, problems: &mut Problems<'_>) -> Option<PublicKey> {
    let line = line.trim();
    if line.starts_with("-----BEGIN") || line.contains("PRIVATE KEY") {
        problems.at(
            path,
            "this is a private key: remove it from this file (treat it as exposed) and give the \
             public key, the line from the .pub file",
        );
        return None;
    }
    let algorithm = line.split_whitespace().next().unwrap_or("");
    if algorithm.ends_with("-cert-v01@openssh.com") {
        problems.at(
            path,
            "this is a certificate, not a public key; give the key's line from its .pub file",
        );
        return None;
    }
    let key = match PublicKey::from_openssh(line) {
        Ok(key) => key,
        Err(e) => {
            problems.at(path, format_args!("not an OpenSSH public key: {e}"));
            return None;
        }
    };
    match key.key_data() {
        KeyData::Dsa(_) => {
            problems.at(
                path,
                "DSA keys are refused (OpenSSH no longer supports them); use ed25519",
            );
            None
        }
        KeyData::Rsa(rsa) if rsa.key_size() < MIN_RSA_BITS => {
            problems.at(
                path,
                format_args!(
                    "RSA key of {} bits is too weak (at least {MIN_RSA_BITS}); use ed25519",
                    rsa.key_size()
                ),
            );
            None
        }
        _ => Some(key),
    }
}

fn validate_host_groups(
    raw: NamedMap<Vec<String>>,
    problems: &mut Problems<'_>,
) -> Vec<(String, Vec<String>)> {
    let hosts_path = YamlPath::root().key("hosts");
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (name, hosts) in raw.0 {
        let path = hosts_path.key(&name);
        let occurrence = seen.entry(name.clone()).or_insert(0);
        *occurrence += 1;
        if *occurrence > 1 {
            problems.at_nth(
                &path,
                *occurrence - 1,
                format_args!("host group {} is defined more than once", show(&name)),
            );
            continue;
        }
        if let Err(e) = check_name(&name) {
            problems.at(&path, e);
        }
        if hosts.is_empty() {
            problems.at(&path, "lists no hosts");
        }
        for (i, host) in hosts.iter().enumerate() {
            let host_path = path.index(i);
            if let Err(e) = check_host_name(host) {
                problems.at(&host_path, e);
            } else if hosts[..i].contains(host) {
                problems.at(&host_path, format_args!("host {host} is listed twice"));
            }
        }
        groups.push((name, hosts));
    }
    groups
}

fn validate_rules(
    raw: Vec<RawRule>,
    users: &[User],
    groups: &HashSet<&str>,
    host_groups: &[(String, Vec<String>)],
    problems: &mut Problems<'_>,
) -> Vec<Rule> {
    let rules_path = YamlPath::root().key("rules");
    let host_group_names: HashSet<&str> = host_groups.iter().map(|(n, _)| n.as_str()).collect();
    let mut first_with_name: HashMap<String, usize> = HashMap::new();
    let mut rules = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let path = rules_path.index(i);

        if let Err(e) = check_name(&raw.name) {
            problems.at(&path.key("name"), e);
        } else if let Some(first) = first_with_name.get(&raw.name) {
            problems.at(
                &path.key("name"),
                format_args!("rule name {} is already used by rules[{first}]", raw.name),
            );
        } else {
            first_with_name.insert(raw.name.clone(), i);
        }

        check_group_list(
            &raw.requesters,
            &path.key("requesters"),
            "group",
            groups,
            true,
            &format!("rule {}", raw.name),
            problems,
        );
        check_group_list(
            &raw.hosts,
            &path.key("hosts"),
            "host group",
            &host_group_names,
            true,
            "",
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

        let max_duration = checked_duration(
            &raw.max_duration,
            if raw.break_glass {
                MAX_BREAK_GLASS_DURATION
            } else {
                MAX_RULE_DURATION
            },
            &path.key("max_duration"),
            problems,
        )
        .unwrap_or_default();

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
                        "approvals is {} but the rule names no approvers; add approvers: [GROUP] \
                         or set approvals: 0",
                        approvals
                    ),
                );
            }
        } else {
            check_group_list(
                &raw.approvers,
                &path.key("approvers"),
                "group",
                groups,
                true,
                &format!("rule {}", raw.name),
                problems,
            );
            let eligible: Vec<&str> = users
                .iter()
                .filter(|u| u.in_any(&raw.approvers))
                .map(|u| u.name.as_str())
                .collect();
            // Too few approvers is allowed (the last one may just have left: offboarding
            // must go through), but said. With none at all, the empty group's warning says it.
            if approvals as usize > eligible.len() && !eligible.is_empty() {
                problems.warn(
                    &path.key("approvals"),
                    format_args!(
                        "needs {} approvals but only {} may approve under this rule ({}), \
                         so no request under it can be approved until more join",
                        approvals,
                        match eligible.len() {
                            1 => "1 user".to_string(),
                            n => format!("{n} users"),
                        },
                        eligible.join(", ")
                    ),
                );
            }
        }

        let extensions_path = path.key("extensions");
        for (j, extension) in raw.extensions.iter().enumerate() {
            if !KNOWN_EXTENSIONS.contains(&extension.as_str()) {
                problems.at(
                    &extensions_path.index(j),
                    format_args!(
                        "unknown extension {}; known: {}",
                        show(extension),
                        KNOWN_EXTENSIONS.join(", ")
                    ),
                );
            } else if raw.extensions[..j].contains(extension) {
                problems.at(
                    &extensions_path.index(j),
                    format_args!("extension {extension} is listed twice"),
                );
            }
        }
        let mut extensions = raw.extensions;
        extensions.sort();
        extensions.dedup();

        let mut critical_options = BTreeMap::new();
        if let Some(command) = raw.force_command
            && check_force_command(&command, &path.key("force_command"), problems)
        {
            critical_options.insert("force-command".to_string(), command);
        }
        if let Some(addresses) = raw.source_address {
            match check_source_address(&addresses) {
                Ok(()) => {
                    critical_options.insert("source-address".to_string(), addresses);
                }
                Err(e) => problems.at(&path.key("source_address"), e),
            }
        }

        let reason_pattern = raw.reason_pattern.and_then(|pattern| {
            let path = path.key("reason_pattern");
            if pattern.is_empty() {
                problems.at(
                    &path,
                    "is empty; give a regular expression such as ^(INC|CHG)-[0-9]+",
                );
                return None;
            }
            ReasonPattern::new(&pattern)
                .map_err(|e| {
                    problems.at(
                        &path,
                        format_args!("{} is not a regular expression: {e}", show(&pattern)),
                    )
                })
                .ok()
        });
        let review_required = match raw.review.as_deref() {
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
        };
        let mut factor = |name: &str, value: Option<String>| match value.as_deref() {
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
        let requester_mfa = factor("requester_mfa", raw.requester_mfa);
        let approver_mfa = factor("approver_mfa", raw.approver_mfa);
        if raw.break_glass && approver_mfa {
            problems.at(
                &path.key("approver_mfa"),
                "a break_glass rule has no approvals to protect; use requester_mfa",
            );
        }

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

/// Names that must each be safe and listed once.
fn check_name_list(names: &[String], path: &YamlPath, what: &str, problems: &mut Problems<'_>) {
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

/// A list of groups (or host groups) that must each be at least one if `required`. A host
/// group must exist; a group of people that no user lists is a warning naming `named_by`
/// (`rule dev-web`, `auditors`), never an error: removing a group's last member from
/// `users:` must always take effect (offboarding), and nobody is in that group meanwhile.
fn check_group_list(
    names: &[String],
    path: &YamlPath,
    what: &str,
    existing: &HashSet<&str>,
    required: bool,
    named_by: &str,
    problems: &mut Problems<'_>,
) {
    if required && names.is_empty() {
        problems.at(path, format_args!("is empty; name at least one {what}"));
    }
    check_name_list(names, path, what, problems);
    for (i, name) in names.iter().enumerate() {
        if check_name(name).is_err() || existing.contains(name.as_str()) {
            continue;
        }
        if what == "group" {
            problems.empty_group(&path.index(i), name, named_by.to_string());
        } else {
            problems.at(
                &path.index(i),
                format_args!("{what} {name} does not exist (it is not defined under hosts)"),
            );
        }
    }
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
fn check_source_address(list: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcMnCu5Au53n0Smp6vhsN8/xGdrmt2Rop3g44zKrrmD a@test";
    const BOB: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMzM1BPS6NTQ1xrLOF0d6NmSsBIY2EHJ6khjP4iEFDc0 b@test";
    const CAROL: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFiPMJr4kDcTOZUGs2BNEay6XmIQ5mPA52MRVQMVr4lv c@test";

    fn file() -> &'static Path {
        Path::new("/etc/jitca/jitca.yaml")
    }

    /// A valid config; tests break one thing at a time.
    fn good() -> String {
        format!(
            r#"listen: "0.0.0.0:2200"
users:
  alice:
    keys: ["{ALICE}"]
    groups: [dev]
  bob:
    keys:
      - "{BOB}"
    groups: [sre, audit]
  carol:
    keys: ["{CAROL}"]
    groups: [sre]
hosts:
  web: [web1, web2]
  db: [db1]
rules:
  - name: dev-web
    requesters: [dev]
    hosts: [web]
    logins: [deploy]
    max_duration: 2h
    approvers: [sre]
auditors: [audit]
"#
        )
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text, file()) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => {
                assert!(!e.0.is_empty());
                e.0.iter().map(ToString::to_string).collect()
            }
        }
    }

    /// Found by the `config` fuzz target: ssh-key's error for a key whose base64 blob holds a
    /// bad algorithm label quotes the decoded label, raw bytes and all, so a key line in
    /// `users:` could put a NUL or a terminal escape into `jitca check`'s output.
    #[test]
    fn a_key_line_cannot_put_control_characters_in_a_message() {
        for blob in [
            // label "ssh-\e[31mevil\e[0m", then 32 bytes
            "AAAAEXNzaC0bWzMxbWV2aWwbWzBtAAAAIEFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
            // the fuzzer's own: label "ssh-ed2551\0"
            "AAAAC3NzaC1lZDI1NTEAAAIAL5790iB1MeLni7B9gfz5XF4n0o6CzF/SWeyc47pImmLz",
        ] {
            let text = good().replacen(ALICE, &format!("ssh-ed25519 {blob} a@test"), 1);
            let found = errors(&text);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(
                found[0].contains("users.alice.keys[0]: not an OpenSSH public key"),
                "{found:?}"
            );
            assert!(
                !found[0].chars().any(char::is_control),
                "raw control character in {:?}",
                found[0]
            );
        }
    }

    /// The config with `from` replaced by `to` has exactly the one problem `want`.
    fn one_error(from: &str, to: &str, want: &str) {
        let text = good().replacen(from, to, 1);
        assert_ne!(text, good(), "{from} not found");
        assert_eq!(errors(&text), [want], "replacing {from:?} by {to:?}");
    }

    /// The config is accepted, with exactly this one warning.
    fn one_warning(from: &str, to: &str, want: &str) {
        let text = good().replacen(from, to, 1);
        assert_ne!(text, good(), "{from} not found");
        let config = parse(&text, file()).unwrap_or_else(|e| panic!("refused: {e}"));
        let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings, [want], "replacing {from:?} by {to:?}");
    }

    #[test]
    fn a_group_nobody_is_in_is_one_warning_naming_its_rules() {
        // The last member of dev leaves: the config stays good (offboarding goes through).
        let text = good().replacen("groups: [dev]", "groups: []", 1);
        assert_ne!(text, good());
        let config = parse(&text, file()).unwrap_or_else(|e| panic!("refused: {e}"));
        assert!(config.policy.user("alice").is_some());
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        let line = config.warnings[0].to_string();
        assert!(line.contains("warning: group dev has no members"), "{line}");
        assert!(line.contains("rule dev-web"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn the_good_config_is_good() {
        let config = parse(&good(), file()).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(config.file, file());
        assert_eq!(config.listen, "0.0.0.0:2200".parse().unwrap());
        assert_eq!(config.ca_key, Path::new("/etc/jitca/ca"));
        assert_eq!(config.host_key, Path::new("/etc/jitca/host_ed25519"));
        assert_eq!(config.data_dir, Path::new("/etc/jitca/data"));
        assert_eq!(config.pending_ttl, Duration::from_secs(3600));
        assert_eq!(config.ca_key_line, None);
        let rule = config.policy.rule("dev-web").unwrap();
        assert_eq!(rule.approvals, 1);
        assert_eq!(rule.extensions, ["permit-pty"]);
        assert!(rule.critical_options.is_empty());
        assert_eq!(rule.max_duration, Duration::from_secs(7200));
        assert_eq!(config.policy.principal_format(), "{login}@{host}");
    }

    #[test]
    fn defaults_for_an_empty_file() {
        for text in ["", "# nothing yet\n", "---\n", "{}"] {
            let config = parse(text, Path::new("jitca.yaml")).unwrap();
            assert_eq!(config.listen, "127.0.0.1:2222".parse().unwrap());
            assert_eq!(config.ca_key, Path::new("ca"));
            assert_eq!(config.data_dir, Path::new("data"));
            assert_eq!(config.pending_ttl, DEFAULT_PENDING_TTL);
            assert_eq!(config.policy.users().count(), 0);
        }
        // Sections with everything commented out.
        let config = parse(
            "users:\n  # alice: ...\nhosts:\nrules:\nauditors:\n",
            Path::new("j.yaml"),
        )
        .unwrap();
        assert!(config.policy.rules().is_empty());
    }

    #[test]
    fn paths_resolve_against_the_config_folder() {
        let text = "ca_key: keys/ca\nhost_key: /abs/host\ndata_dir: ../store\n";
        let config = parse(text, Path::new("/srv/jitca/jitca.yaml")).unwrap();
        assert_eq!(config.ca_key, Path::new("/srv/jitca/keys/ca"));
        assert_eq!(config.host_key, Path::new("/abs/host"));
        assert_eq!(config.data_dir, Path::new("/srv/jitca/../store"));
        assert_eq!(
            (config.ca_key_line, config.host_key_line),
            (Some(1), Some(2))
        );
        let config = parse(text, Path::new("jitca.yaml")).unwrap();
        assert_eq!(config.ca_key, Path::new("keys/ca"));
        assert_eq!(
            errors("ca_key: \"\"\n"),
            ["/etc/jitca/jitca.yaml:1: ca_key: is empty; give a file path"]
        );
    }

    #[test]
    fn all_optional_fields() {
        let text = good()
            .replace("listen: \"0.0.0.0:2200\"", "listen: \"[::1]:0\"\npending_ttl: 15m\nprincipal_format: \"{host}:{login}\"")
            .replace(
                "    approvers: [sre]\n",
                "    approvals: 2\n    approvers: [sre]\n    extensions: [permit-pty, permit-X11-forwarding, no-touch-required]\n    force_command: \"journalctl -f\"\n    source_address: \"10.0.0.0/8,192.0.2.7,2001:db8::/32\"\n",
            );
        let config = parse(&text, file()).unwrap();
        assert_eq!(config.listen, "[::1]:0".parse().unwrap());
        assert_eq!(config.pending_ttl, Duration::from_secs(900));
        let policy = &config.policy;
        assert_eq!(policy.principal_format(), "{host}:{login}");
        let rule = policy.rule("dev-web").unwrap();
        assert_eq!(rule.approvals, 2);
        assert_eq!(
            rule.extensions,
            ["no-touch-required", "permit-X11-forwarding", "permit-pty"]
        );
        assert_eq!(
            rule.critical_options,
            BTreeMap::from([
                ("force-command".to_string(), "journalctl -f".to_string()),
                (
                    "source-address".to_string(),
                    "10.0.0.0/8,192.0.2.7,2001:db8::/32".to_string()
                ),
            ])
        );
        let no_extensions = good().replace(
            "    approvers: [sre]\n",
            "    approvers: [sre]\n    extensions: []\n",
        );
        let config = parse(&no_extensions, file()).unwrap();
        assert!(config.policy.rule("dev-web").unwrap().extensions.is_empty());
    }

    #[test]
    fn a_host_in_two_host_groups_is_fine() {
        let text = good().replace("db: [db1]", "db: [db1, web1]");
        assert!(parse(&text, file()).is_ok());
    }

    #[test]
    fn serde_errors_are_reported_alone_with_their_line() {
        let text = good().replace("    groups: [dev]", "    groupz: [dev]") + "rules: oops\n";
        assert_eq!(
            errors(&text),
            [
                "/etc/jitca/jitca.yaml:5: users.alice: unknown field `groupz`, expected `keys` or `groups`"
            ]
        );
        assert_eq!(
            errors("listen: x\nlisten: y\n"),
            ["/etc/jitca/jitca.yaml:2: duplicate field `listen`"]
        );
        let text = good().replace(
            "    max_duration: 2h\n",
            "    max_duration: 2h\n    logins: [x]\n",
        );
        assert_eq!(
            errors(&text),
            ["/etc/jitca/jitca.yaml:22: rules[0]: duplicate field `logins`"]
        );
        assert_eq!(
            errors("users: [a, b]\n"),
            ["/etc/jitca/jitca.yaml:1: users: invalid type: sequence, expected a mapping of names"]
        );
        let missing = errors(&good().replace("    max_duration: 2h\n", ""));
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0].contains("rules[0]: missing field `max_duration`"),
            "{missing:?}"
        );
        assert_eq!(
            errors("users:\n  alice: [a]\n"),
            [
                "/etc/jitca/jitca.yaml:2: users.alice: invalid type: sequence, expected a user: a mapping with keys and groups"
            ]
        );
        let broken = errors("listen: x\nusers:\n  alice: {keys: [a}\n");
        assert_eq!(broken.len(), 1);
        assert!(
            broken[0].starts_with("/etc/jitca/jitca.yaml:3: "),
            "{broken:?}"
        );
        let tabs = errors("users:\n\talice: {}\n");
        assert!(tabs[0].starts_with("/etc/jitca/jitca.yaml:2: "), "{tabs:?}");
        let negative = errors(&good().replace(
            "    approvers: [sre]\n",
            "    approvals: -1\n    approvers: [sre]\n",
        ));
        assert_eq!(
            negative,
            [
                "/etc/jitca/jitca.yaml:22: rules[0].approvals: invalid type: integer `-1`, expected u32"
            ]
        );
        assert!(errors("nope: 1\n")[0].contains("unknown field `nope`"));
    }

    #[test]
    fn every_semantic_problem_is_reported_in_line_order() {
        let text = r#"listen: nowhere
pending_ttl: 0s
users:
  alice:
    keys: ["ssh-ed25519 garbage"]
    groups: [dev]
rules:
  - name: r
    requesters: [devs]
    hosts: [web]
    logins: [Root]
    max_duration: 8d
    extensions: [permit-everything]
"#;
        // (Line 9's group nobody is in is a warning, not one of these.)
        let got = errors(text);
        let lines: Vec<&str> = got.iter().map(|e| e.split(": ").next().unwrap()).collect();
        assert_eq!(
            lines,
            [
                "/etc/jitca/jitca.yaml:1",
                "/etc/jitca/jitca.yaml:2",
                "/etc/jitca/jitca.yaml:5",
                "/etc/jitca/jitca.yaml:8",
                "/etc/jitca/jitca.yaml:10",
                "/etc/jitca/jitca.yaml:11",
                "/etc/jitca/jitca.yaml:12",
                "/etc/jitca/jitca.yaml:13",
            ],
            "{got:#?}"
        );
        let display = parse(text, file()).unwrap_err().to_string();
        assert_eq!(display.lines().count(), 8);
        assert!(
            display.starts_with(
                "/etc/jitca/jitca.yaml:1: listen: \"nowhere\" is not a socket address"
            )
        );
    }

    #[test]
    fn listen() {
        one_error(
            "listen: \"0.0.0.0:2200\"",
            "listen: localhost:2222",
            "/etc/jitca/jitca.yaml:1: listen: \"localhost:2222\" is not a socket address; write IP:PORT, like 127.0.0.1:2222",
        );
        one_error(
            "listen: \"0.0.0.0:2200\"",
            "listen: \"127.0.0.1\"",
            "/etc/jitca/jitca.yaml:1: listen: \"127.0.0.1\" is not a socket address; write IP:PORT, like 127.0.0.1:2222",
        );
    }

    #[test]
    fn metrics_listen() {
        let config = parse(&good(), file()).unwrap();
        assert_eq!(config.metrics_listen, None);
        let text = good().replacen(
            "listen: \"0.0.0.0:2200\"",
            "listen: \"0.0.0.0:2200\"\nmetrics_listen: \"127.0.0.1:9842\"",
            1,
        );
        let config = parse(&text, file()).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9842".parse().unwrap())
        );
        one_error(
            "listen: \"0.0.0.0:2200\"",
            "listen: \"0.0.0.0:2200\"\nmetrics_listen: localhost:9842",
            "/etc/jitca/jitca.yaml:2: metrics_listen: \"localhost:9842\" is not a socket address; write IP:PORT, like 127.0.0.1:9842",
        );
        one_error(
            "listen: \"0.0.0.0:2200\"",
            "listen: \"0.0.0.0:2200\"\nmetrics_listen: \"0.0.0.0:2200\"",
            "/etc/jitca/jitca.yaml:2: metrics_listen: is the control channel's listen address; give the metrics their own port",
        );
    }

    #[test]
    fn log_format() {
        assert_eq!(parse(&good(), file()).unwrap().log_format, LogFormat::Text);
        for (written, want) in [("text", LogFormat::Text), ("json", LogFormat::Json)] {
            let text = good().replacen(
                "listen: \"0.0.0.0:2200\"",
                &format!("listen: \"0.0.0.0:2200\"\nlog_format: {written}"),
                1,
            );
            assert_eq!(parse(&text, file()).unwrap().log_format, want);
        }
        one_error(
            "listen: \"0.0.0.0:2200\"",
            "listen: \"0.0.0.0:2200\"\nlog_format: JSON",
            "/etc/jitca/jitca.yaml:2: log_format: \"JSON\" is not a log format; write text or json",
        );
        one_error(
            "listen: \"0.0.0.0:2200\"",
            "listen: \"0.0.0.0:2200\"\nlog_format: logfmt",
            "/etc/jitca/jitca.yaml:2: log_format: \"logfmt\" is not a log format; write text or json",
        );
    }

    #[test]
    fn pending_ttl() {
        let at = |ttl: &str| errors(&format!("pending_ttl: {ttl}\n"));
        assert_eq!(
            at("0m"),
            ["/etc/jitca/jitca.yaml:1: pending_ttl: must be more than zero"]
        );
        assert_eq!(
            at("8d"),
            ["/etc/jitca/jitca.yaml:1: pending_ttl: 8d is longer than the most jitca allows (7d)"]
        );
        assert!(
            at("3600")[0].contains("pending_ttl: cannot read \"3600\": a duration needs a unit")
        );
        assert!(at("1h30m")[0].contains("unknown duration unit"));
        assert!(at("-1h")[0].contains("no sign"));
        assert_eq!(
            parse("pending_ttl: 7d\n", file()).unwrap().pending_ttl,
            MAX_PENDING_TTL
        );
        assert_eq!(
            parse("pending_ttl: 1s\n", file()).unwrap().pending_ttl,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn principal_format() {
        let at = |format: &str| errors(&format!("principal_format: '{format}'\n"));
        let prefix = "/etc/jitca/jitca.yaml:1: principal_format: ";
        assert_eq!(at("{login}"), [format!("{prefix}must contain {{host}}")]);
        assert_eq!(at("{host}"), [format!("{prefix}must contain {{login}}")]);
        assert_eq!(
            at("x"),
            [
                format!("{prefix}must contain {{login}}"),
                format!("{prefix}must contain {{host}}")
            ]
        );
        assert_eq!(
            at("{login}@{host}@{host}"),
            [format!("{prefix}contains {{host}} more than once")]
        );
        assert!(at("{login} {host}")[0].contains("contains whitespace"));
        assert!(at("{login}@{host}\t")[0].contains("contains whitespace"));
        assert!(at("{login}\u{e9}{host}")[0].contains("other than printable ASCII"));
        assert_eq!(
            at("{login},{host}"),
            [format!("{prefix}contains ',', which separates principals")]
        );
        assert!(
            at("{login}@{user}")[0].contains("has a '{' that is not part of {login} or {host}")
        );
        assert!(at("{login}@{host}}")[0].contains("has a '}'"));
        assert!(at("{{login}@{host}")[0].contains("has a '{'"));
        assert!(at("#{login}@{host}")[0].contains("must not start with '#'"));
        assert!(at("")[0].contains("is empty"));
        // Without a separator, deploy+web1 and deploy-+web1 ... could collide: refused.
        for ambiguous in [
            "{login}{host}",
            "{login}.{host}",
            "{login}-x_{host}",
            "@{login}{host}@",
        ] {
            assert!(
                at(ambiguous)[0].contains("needs a separator"),
                "{ambiguous}"
            );
        }
        for fine in [
            "{login}@{host}",
            "{host}:{login}",
            "x{login}/{host}.y",
            "{login}-@-{host}",
        ] {
            assert!(
                parse(&format!("principal_format: '{fine}'\n"), file()).is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn user_names_and_groups() {
        one_error(
            "  carol:",
            "  \"c@rol\":",
            "/etc/jitca/jitca.yaml:10: users.\"c@rol\": name \"c@rol\" contains '@', which is not allowed; use letters, digits, '_', '.' and '-'",
        );
        one_error(
            "groups: [dev]",
            "groups: [dev, dev]",
            "/etc/jitca/jitca.yaml:5: users.alice.groups[1]: group dev is listed twice",
        );
        one_error(
            "groups: [dev]",
            "groups: [dev, \"-x\"]",
            "/etc/jitca/jitca.yaml:5: users.alice.groups[1]: name \"-x\" must not start with '-'",
        );
        let text = good().replace("hosts:\n", "  alice:\n    keys: []\nhosts:\n");
        assert_eq!(
            errors(&text),
            ["/etc/jitca/jitca.yaml:13: users.alice: user \"alice\" is defined more than once"]
        );
    }

    #[test]
    fn user_keys() {
        one_error(
            &format!("[\"{ALICE}\"]"),
            "[\"ssh-ed25519 AAAAnotakey\"]",
            "/etc/jitca/jitca.yaml:4: users.alice.keys[0]: not an OpenSSH public key: Base64 encoding error: invalid Base64 encoding",
        );
        let garbage = errors(&good().replacen(ALICE, "hello", 1));
        assert!(
            garbage[0].starts_with(
                "/etc/jitca/jitca.yaml:4: users.alice.keys[0]: not an OpenSSH public key: "
            ),
            "{garbage:?}"
        );
        let cert = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIEnu4a6Ghx b@test";
        one_error(
            ALICE,
            cert,
            "/etc/jitca/jitca.yaml:4: users.alice.keys[0]: this is a certificate, not a public key; give the key's line from its .pub file",
        );
        let private = errors(&good().replacen(
            &format!("[\"{ALICE}\"]"),
            "\n      - |\n        -----BEGIN OPENSSH PRIVATE KEY-----\n        b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n        -----END OPENSSH PRIVATE KEY-----\n",
            1,
        ));
        assert_eq!(private.len(), 1);
        // The line of the block scalar's first line of text.
        assert!(
            private[0]
                .starts_with("/etc/jitca/jitca.yaml:6: users.alice.keys[0]: this is a private key"),
            "{private:?}"
        );
        assert!(!private[0].contains("b3BlbnNz"), "never echo key material");
        let dsa = "ssh-dss AAAAB3NzaC1kc3MAAACBAIA/YifC7a0F0DkrRzA/9XI6HniCwl9zlz3XmBjFg92sArvSrjU4V+bgwev0rR1jRKr8YatGVkE4z7zQ87cEwUYioD6JjUeXd0mUFYtWfm0Q0Rm3Wg/hKDK8IiADykZItxThNtTqyZ5l5QwK8ZGUDS83Uxk32cHXWmgJ0O/kjlWnAAAAFQCyuHeIlEE8o/ElBzuoYi98epdd1QAAAIAgpUfW6GvkVXDcue4+R2IxI38cgFoYq7StK5fYnCcck0tAsIpW6+8cdmreIB/xGqwBciwokb38MX/XfC84rH61YGF+Y4oR+sVxLDahAsxMCuUkZsygRWa0GR43X3v6CVyp1oY7CV/CzcEz+bFIUqB5Botf00+MjoJ8DyP7qFYzdwAAAIAaAaj2wPySvTr5kNapXlioLr9yliQ0hmkcDoRI9FcP0kiQuPD4LmaCYMPuLg6neqR6yG3Mt9Ml+ZYhDM8hi/t4PmrsXvCNEaqTQFxJdn1/3qhMqo3wO1cjhfGCpfWvoFYAiI6dBJaR6poRNIFJSsyjLovjEYlZ7t+0Umi6f+s2TA== root@vm";
        let dsa_errors = errors(&good().replacen(ALICE, dsa, 1));
        assert_eq!(
            dsa_errors,
            [
                "/etc/jitca/jitca.yaml:4: users.alice.keys[0]: DSA keys are refused (OpenSSH no longer supports them); use ed25519"
            ]
        );
    }

    #[test]
    fn weak_rsa_keys_are_refused() {
        let rsa1024 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCw7PYF7anurcpuKOatUhMTx935KkaT/JxhkEyXthXthJjsFALco6nZ1WXdQ1z4L5FFIi5CIb5VN1gP7IWIAwTEKs12U5L6Y9OaXl0h3Xh1d+qlMFfzmLaDqEBJIb7uxhbPen+YeXqrdCqh4HjXQW3KzujHT+DWhFB32rPm61I2dw== root@vm";
        let got = errors(&good().replacen(ALICE, rsa1024, 1));
        assert_eq!(
            got,
            [
                "/etc/jitca/jitca.yaml:4: users.alice.keys[0]: RSA key of 1024 bits is too weak (at least 2048); use ed25519"
            ]
        );
    }

    #[test]
    fn a_key_identifies_one_user() {
        // The same key with another comment under bob.
        let same = ALICE.replace("a@test", "other comment");
        one_error(
            &format!("      - \"{BOB}\""),
            &format!("      - \"{BOB}\"\n      - \"{same}\""),
            "/etc/jitca/jitca.yaml:9: users.bob.keys[1]: the same key as users.alice.keys[0]; a key must identify exactly one user",
        );
        one_error(
            &format!("[\"{ALICE}\"]"),
            &format!("[\"{ALICE}\", \"{ALICE}\"]"),
            "/etc/jitca/jitca.yaml:4: users.alice.keys[1]: the same key as users.alice.keys[0]; a key must identify exactly one user",
        );
    }

    #[test]
    fn host_groups() {
        one_error(
            "web: [web1, web2]",
            "web: [web1, \"web*\"]",
            "/etc/jitca/jitca.yaml:14: hosts.web[1]: host name \"web*\" contains '*', which is not allowed; use letters, digits, '.', '-' and '_'",
        );
        one_error(
            "web: [web1, web2]",
            "web: [web1, web1]",
            "/etc/jitca/jitca.yaml:14: hosts.web[1]: host web1 is listed twice",
        );
        one_error(
            "db: [db1]",
            "db: []",
            "/etc/jitca/jitca.yaml:15: hosts.db: lists no hosts",
        );
        one_error(
            "db: [db1]",
            "\"d b\": [db1]",
            "/etc/jitca/jitca.yaml:15: hosts.\"d b\": name \"d b\" contains a space, which is not allowed; use letters, digits, '_', '.' and '-'",
        );
        one_error(
            "db: [db1]",
            "db: [db1]\n  web: [web9]",
            "/etc/jitca/jitca.yaml:16: hosts.web: host group \"web\" is defined more than once",
        );
    }

    #[test]
    fn rule_names() {
        let second = "\n  - name: dev-web\n    requesters: [dev]\n    hosts: [db]\n    logins: [root]\n    max_duration: 1h\n    approvals: 0\n";
        let text = good().replace(
            "auditors:",
            &format!("{}auditors:", second.trim_start_matches('\n')),
        );
        assert_eq!(
            errors(&text),
            [
                "/etc/jitca/jitca.yaml:23: rules[1].name: rule name dev-web is already used by rules[0]"
            ]
        );
        one_error(
            "name: dev-web",
            "name: \"dev web\"",
            "/etc/jitca/jitca.yaml:17: rules[0].name: name \"dev web\" contains a space, which is not allowed; use letters, digits, '_', '.' and '-'",
        );
    }

    #[test]
    fn rule_references_must_exist() {
        one_warning(
            "requesters: [dev]",
            "requesters: [devs]",
            "/etc/jitca/jitca.yaml:18: warning: group devs has no members (no user lists it in groups); rule dev-web: nobody can use that until someone joins it",
        );
        one_error(
            "hosts: [web]",
            "hosts: [web, web1]",
            "/etc/jitca/jitca.yaml:19: rules[0].hosts[1]: host group web1 does not exist (it is not defined under hosts)",
        );
        one_warning(
            "approvers: [sre]",
            "approvers: [sre, ops]",
            "/etc/jitca/jitca.yaml:22: warning: group ops has no members (no user lists it in groups); rule dev-web: nobody can use that until someone joins it",
        );
        one_warning(
            "auditors: [audit]",
            "auditors: [audit, auditors]",
            "/etc/jitca/jitca.yaml:23: warning: group auditors has no members (no user lists it in groups); auditors: nobody can use that until someone joins it",
        );
        one_error(
            "requesters: [dev]",
            "requesters: [dev, dev]",
            "/etc/jitca/jitca.yaml:18: rules[0].requesters[1]: group dev is listed twice",
        );
        one_error(
            "hosts: [web]",
            "hosts: [web, web]",
            "/etc/jitca/jitca.yaml:19: rules[0].hosts[1]: host group web is listed twice",
        );
        assert!(parse(&good().replace("auditors: [audit]", "auditors: []"), file()).is_ok());
    }

    #[test]
    fn rule_lists_must_not_be_empty() {
        one_error(
            "requesters: [dev]",
            "requesters: []",
            "/etc/jitca/jitca.yaml:18: rules[0].requesters: is empty; name at least one group",
        );
        one_error(
            "hosts: [web]",
            "hosts: []",
            "/etc/jitca/jitca.yaml:19: rules[0].hosts: is empty; name at least one host group",
        );
        one_error(
            "logins: [deploy]",
            "logins: []",
            "/etc/jitca/jitca.yaml:20: rules[0].logins: is empty; name at least one login",
        );
    }

    #[test]
    fn rule_logins() {
        one_error(
            "logins: [deploy]",
            "logins: [deploy, Root]",
            "/etc/jitca/jitca.yaml:20: rules[0].logins[1]: login \"Root\" contains 'R', which is not allowed; use lowercase letters, digits, '_', '.' and '-'",
        );
        one_error(
            "logins: [deploy]",
            "logins: [deploy, deploy]",
            "/etc/jitca/jitca.yaml:20: rules[0].logins[1]: login deploy is listed twice",
        );
    }

    #[test]
    fn governance_settings_of_a_rule() {
        let text = good().replacen(
            "    approvers: [sre]\n",
            "    approvers: [sre]\n    reason_pattern: \"^(INC|CHG)-[0-9]+\"\n    review: required\n    \
             requester_mfa: totp\n    approver_mfa: totp\n  - name: glass\n    requesters: [dev]\n    \
             hosts: [web]\n    logins: [deploy]\n    max_duration: 1h\n    break_glass: true\n    \
             approvers: [sre]\noperators: [sre]\nnotify:\n  - url: https://hooks.example.com/T1/B2\n    \
             events: [break_glass, review_due]\n",
            1,
        );
        let config = parse(&text, file()).unwrap();
        let rule = config.policy.rule("dev-web").unwrap();
        let pattern = rule.reason_pattern.as_ref().unwrap();
        assert!(pattern.is_match("INC-42 disk full"));
        assert!(!pattern.is_match("disk full INC-42"));
        assert!(rule.review_required && rule.requester_mfa && rule.approver_mfa);
        assert!(!rule.break_glass);
        let glass = config.policy.rule("glass").unwrap();
        // Break-glass: no approvals, and always reviewed.
        assert!(glass.break_glass && glass.review_required);
        assert_eq!(glass.approvals, 0);
        // Break-glass rules answer only break-glass asks, and only they do.
        let ask = |break_glass| crate::Ask {
            hosts: vec!["web1".into()],
            logins: vec!["deploy".into()],
            duration: Duration::from_secs(1800),
            break_glass,
        };
        let ordinary = config.policy.decide_request("alice", &ask(false)).unwrap();
        assert_eq!(
            (ordinary.rule.as_str(), ordinary.approvals_needed),
            ("dev-web", 1)
        );
        assert!(!ordinary.break_glass);
        let urgent = config.policy.decide_request("alice", &ask(true)).unwrap();
        assert_eq!(
            (urgent.rule.as_str(), urgent.approvals_needed),
            ("glass", 0)
        );
        assert!(urgent.break_glass);
        let mut db = ask(true);
        db.hosts = vec!["db1".into()];
        assert_eq!(
            config
                .policy
                .decide_request("alice", &db)
                .unwrap_err()
                .to_string(),
            "no break-glass rule lets alice request login deploy on db1"
        );
        assert!(config.policy.is_operator("carol"));
        assert!(!config.policy.is_operator("alice"));
        assert_eq!(config.mfa_key, Path::new("/etc/jitca/mfa.key"));
        assert_eq!(config.notify.len(), 1);
        assert_eq!(config.notify[0].events, ["break_glass", "review_due"]);
    }

    #[test]
    fn store_cache_is_a_size_with_a_default() {
        assert_eq!(parse("", file()).unwrap().store_cache, DEFAULT_STORE_CACHE);
        assert_eq!(DEFAULT_STORE_CACHE, 64 << 20);
        let set = |text: &str| parse(&format!("store_cache: {text}\n"), file()).unwrap();
        assert_eq!(set("256MiB").store_cache, 256 << 20);
        assert_eq!(set("2GiB").store_cache, 2 << 30);
        assert_eq!(set("4096KiB").store_cache, 4 << 20);
        assert_eq!(set("1048576").store_cache, 1 << 20);
        assert_eq!(
            errors("store_cache: 64MB\n"),
            [
                "/etc/jitca/jitca.yaml:1: store_cache: cannot read \"64MB\": give a size such as 64MiB or 1GiB"
            ]
        );
        assert_eq!(
            errors("store_cache: 512KiB\n"),
            ["/etc/jitca/jitca.yaml:1: store_cache: must be at least 1MiB"]
        );
    }

    #[test]
    fn audit_key_and_checkpoint_interval() {
        let config = parse("", file()).unwrap();
        assert_eq!(config.audit_key, Path::new("/etc/jitca/audit_ed25519"));
        assert_eq!(config.checkpoint_interval, DEFAULT_CHECKPOINT_INTERVAL);
        let set = parse("audit_key: keys/audit\ncheckpoint_interval: 15m\n", file()).unwrap();
        assert_eq!(set.audit_key, Path::new("/etc/jitca/keys/audit"));
        assert_eq!(set.audit_key_line, Some(1));
        assert_eq!(set.checkpoint_interval, Duration::from_secs(900));
        assert_eq!(
            errors("checkpoint_interval: 8d\n"),
            [
                "/etc/jitca/jitca.yaml:1: checkpoint_interval: 8d is longer than the most jitca allows (7d)"
            ]
        );
        assert_eq!(
            errors("audit_key: \"\"\n"),
            ["/etc/jitca/jitca.yaml:1: audit_key: is empty; give a file path"]
        );
    }

    #[test]
    fn webhook_urls() {
        for url in [
            "https://hooks.slack.com/services/T0/B0/xyz",
            "http://127.0.0.1:8080/hook",
            "https://[::1]:8443/x?token=abc",
            "https://user:pw@example.com:8443/a/b?c=d&e=f",
        ] {
            assert_eq!(check_hook_url(url), Ok(()), "{url}");
        }
        for (url, why) in [
            ("", "https://"),
            ("ftp://example.com/x", "https://"),
            ("HTTPS://example.com", "https://"),
            ("file:///etc/passwd", "https://"),
            ("https://", "no host"),
            ("https:///path", "no host"),
            ("https://:8080/x", "no host"),
            ("https://exa mple.com/", "without spaces"),
            ("https://example.com/\u{7}", "without spaces"),
            ("https://exämple.com/", "percent-encode"),
            ("https://example.com:/x", "port"),
            ("https://example.com:99999/x", "port"),
            ("https://example.com:0/x", "port"),
            ("https://[::1]:/x", "port"),
            ("https://[::1/x", "unclosed"),
        ] {
            let err = check_hook_url(url).expect_err(url);
            assert!(err.contains(why), "{url:?}: {err}");
            if url.len() > 12 {
                assert!(!err.contains(url), "the message repeats the URL: {err}");
            }
        }
    }

    #[test]
    fn governance_mistakes_are_named() {
        let at = "/etc/jitca/jitca.yaml:23: rules[0].";
        let max_at = "/etc/jitca/jitca.yaml:21: rules[0].";
        one_error(
            "    approvers: [sre]\n",
            "    approvers: [sre]\n    reason_pattern: \"(INC\"\n",
            &format!("{at}reason_pattern: \"(INC\" is not a regular expression: unclosed group"),
        );
        one_error(
            "    approvers: [sre]\n",
            "    approvers: [sre]\n    review: sometimes\n",
            &format!(
                "{at}review: \"sometimes\" is not a review setting; write required or optional"
            ),
        );
        one_error(
            "    approvers: [sre]\n",
            "    approvers: [sre]\n    approver_mfa: sms\n",
            &format!("{at}approver_mfa: \"sms\" is not a second factor; write totp (or none)"),
        );
        one_error(
            "    approvers: [sre]\n",
            "    approvers: [sre]\n    break_glass: true\n    approvals: 1\n",
            "/etc/jitca/jitca.yaml:24: rules[0].approvals: is 1, but a break_glass rule issues at once without approval; \
             remove approvals (its approvers review each use afterwards)",
        );
        one_error(
            "    max_duration: 2h\n",
            "    max_duration: 5h\n    break_glass: true\n",
            &format!("{max_at}max_duration: 5h is longer than the most jitca allows (4h)"),
        );
        one_error(
            "auditors: [audit]\n",
            "auditors: [audit]\nnotify:\n  - url: ftp://hooks.example.com/x\n",
            "/etc/jitca/jitca.yaml:25: notify[0].url: must start with https:// (or http://)",
        );
        one_error(
            "auditors: [audit]\n",
            "auditors: [audit]\nnotify:\n  - url: https://hooks.example.com/x\n    events: [everything]\n",
            "/etc/jitca/jitca.yaml:26: notify[0].events[0]: unknown event \"everything\"; known: \
             request_made, decided, break_glass, revoked, review_due, checkpoint",
        );
        one_warning(
            "auditors: [audit]\n",
            "auditors: [audit]\noperators: [ops]\n",
            "/etc/jitca/jitca.yaml:24: warning: group ops has no members (no user lists it in groups); operators: nobody can use that until someone joins it",
        );
    }

    #[test]
    fn rule_durations() {
        let at = "/etc/jitca/jitca.yaml:21: rules[0].max_duration: ";
        one_error(
            "max_duration: 2h",
            "max_duration: 0h",
            &format!("{at}must be more than zero"),
        );
        one_error(
            "max_duration: 2h",
            "max_duration: 8d",
            &format!("{at}8d is longer than the most jitca allows (7d)"),
        );
        one_error(
            "max_duration: 2h",
            "max_duration: 169h",
            &format!("{at}169h is longer than the most jitca allows (7d)"),
        );
        one_error(
            "max_duration: 2h",
            "max_duration: 2 hours",
            &format!(
                "{at}cannot read \"2 hours\": unknown duration unit \" hours\"; use s, m, h or d (like 90s, 15m, 2h, 1d)"
            ),
        );
        one_error(
            "max_duration: 2h",
            "max_duration: 7200",
            &format!(
                "{at}cannot read \"7200\": a duration needs a unit after the number: s, m, h or d (like 90s, 15m, 2h, 1d)"
            ),
        );
        assert!(
            parse(
                &good().replace("max_duration: 2h", "max_duration: 7d"),
                file()
            )
            .is_ok()
        );
    }

    #[test]
    fn approvals() {
        one_error(
            "    approvers: [sre]\n",
            "",
            "/etc/jitca/jitca.yaml:17: rules[0].approvers: approvals is 1 but the rule names no approvers; add approvers: [GROUP] or set approvals: 0",
        );
        one_warning(
            "    approvers: [sre]\n",
            "    approvals: 3\n    approvers: [sre]\n",
            "/etc/jitca/jitca.yaml:22: warning: rules[0].approvals: needs 3 approvals but only 2 users may approve under this rule (bob, carol), so no request under it can be approved until more join",
        );
        // Members are counted once even when in two approver groups.
        one_warning(
            "    approvers: [sre]\n",
            "    approvals: 3\n    approvers: [sre, audit]\n",
            "/etc/jitca/jitca.yaml:22: warning: rules[0].approvals: needs 3 approvals but only 2 users may approve under this rule (bob, carol), so no request under it can be approved until more join",
        );
        assert!(
            parse(
                &good().replace(
                    "    approvers: [sre]\n",
                    "    approvals: 2\n    approvers: [sre]\n"
                ),
                file()
            )
            .is_ok()
        );
        assert!(
            parse(
                &good().replace("    approvers: [sre]\n", "    approvals: 0\n"),
                file()
            )
            .is_ok()
        );
    }

    #[test]
    fn approvals_with_a_single_approver() {
        let text = good().replace("approvers: [sre]", "approvals: 2\n    approvers: [dev]");
        let warnings: Vec<String> = parse(&text, file())
            .unwrap()
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(
            warnings,
            [
                "/etc/jitca/jitca.yaml:22: warning: rules[0].approvals: needs 2 approvals but only 1 user may approve under this rule (alice), so no request under it can be approved until more join"
            ]
        );
    }

    #[test]
    fn extensions() {
        one_error(
            "    approvers: [sre]\n",
            "    approvers: [sre]\n    extensions: [permit-pty, permit-everything]\n",
            "/etc/jitca/jitca.yaml:23: rules[0].extensions[1]: unknown extension \"permit-everything\"; known: permit-X11-forwarding, permit-agent-forwarding, permit-port-forwarding, permit-pty, permit-user-rc, no-touch-required",
        );
        one_error(
            "    approvers: [sre]\n",
            "    approvers: [sre]\n    extensions: [permit-pty, permit-pty]\n",
            "/etc/jitca/jitca.yaml:23: rules[0].extensions[1]: extension permit-pty is listed twice",
        );
        for known in KNOWN_EXTENSIONS {
            let text = good().replace(
                "    approvers: [sre]\n",
                &format!("    approvers: [sre]\n    extensions: [{known}]\n"),
            );
            assert!(parse(&text, file()).is_ok(), "{known}");
        }
    }

    #[test]
    fn force_command() {
        let with = |value: &str| {
            good().replace(
                "    approvers: [sre]\n",
                &format!("    approvers: [sre]\n    force_command: {value}\n"),
            )
        };
        assert_eq!(
            errors(&with("\"\"")),
            [
                "/etc/jitca/jitca.yaml:23: rules[0].force_command: is empty; give a command or remove force_command"
            ]
        );
        assert_eq!(errors(&with("\"  \"")).len(), 1);
        assert_eq!(
            errors(&with("\"ls\\nrm -rf /\"")),
            [
                "/etc/jitca/jitca.yaml:23: rules[0].force_command: contains a control character (U+000A); a command is one line of text"
            ]
        );
        assert!(errors(&with("\"ls\\u001b\""))[0].contains("U+001B"));
        assert!(parse(&with("\"/usr/bin/journalctl -u app -f\""), file()).is_ok());
    }

    #[test]
    fn source_address() {
        for ok in [
            "10.0.0.0/8",
            "192.0.2.7",
            "10.0.0.0/8,192.0.2.7/32",
            "::1",
            "2001:db8::/32",
            "0.0.0.0/0",
            "::/0",
        ] {
            assert_eq!(check_source_address(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "is empty"),
            ("10.0.0.0/8,", "has an empty entry"),
            (
                "10.0.0.0/8, 192.0.2.7",
                "\" 192.0.2.7\" is not an IP address",
            ),
            ("example.com", "\"example.com\" is not an IP address"),
            ("10.0.0.*", "is not an IP address"),
            (
                "10.0.0.0/33",
                "\"10.0.0.0/33\" has a bad prefix length (0 to 32 for IPv4)",
            ),
            ("::/129", "has a bad prefix length (0 to 128 for IPv6)"),
            ("10.0.0.0/", "bad prefix length"),
            ("10.0.0.0/+8", "bad prefix length"),
            ("10.0.0.0/8/8", "bad prefix length"),
            ("10.0.0.1/8", "has bits set after the prefix length"),
            ("2001:db8::1/32", "has bits set after the prefix length"),
            ("fe80::1%eth0", "is not an IP address"),
        ];
        for (value, want) in cases {
            let got = check_source_address(value).unwrap_err();
            assert!(got.contains(want), "{value}: {got}");
        }
        let text = good().replace(
            "    approvers: [sre]\n",
            "    approvers: [sre]\n    source_address: \"10.0.0.1/8\"\n",
        );
        assert_eq!(
            errors(&text),
            [
                "/etc/jitca/jitca.yaml:23: rules[0].source_address: \"10.0.0.1/8\" has bits set after the prefix length; write the network address"
            ]
        );
    }

    #[test]
    fn messages_never_carry_control_characters_from_the_file() {
        let text = "listen: \"\\e[2J\"\nusers:\n  \"x\\e\": {keys: []}\n";
        for e in errors(text) {
            assert!(!e.chars().any(char::is_control), "{e:?}");
        }
        // serde_yaml's own messages quote keys too.
        let serde = errors("users:\n  \"x\\e\\u202e\": {\"k\\n\": 1}\n");
        assert_eq!(serde.len(), 1);
        assert!(
            !serde[0].chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{serde:?}"
        );
        assert!(serde[0].contains("\\u{1b}"), "{serde:?}");
    }

    #[test]
    fn load_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jitca.yaml");
        std::fs::write(&path, good()).unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.ca_key, dir.path().join("ca"));
        let missing = dir.path().join("missing.yaml");
        let err = load(&missing).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, None);
        assert!(
            err.to_string().starts_with(&format!(
                "{}: cannot read the config file: ",
                missing.display()
            )),
            "{err}"
        );
    }

    const PRIVATE_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBXDJwruQLud59Epqer4bDfP8Rna5rdkaKd4OOMyq65gwAAAJDl2hEc5doR
HAAAAAtzc2gtZWQyNTUxOQAAACBXDJwruQLud59Epqer4bDfP8Rna5rdkaKd4OOMyq65gw
AAAEDk0c0cIPxZ7+xwuSdakAxZn5PIVTx+bQbfPwWu/qhPPFcMnCu5Au53n0Smp6vhsN8/
xGdrmt2Rop3g44zKrrmDAAAABmFAdGVzdAECAwQFBgc=
-----END OPENSSH PRIVATE KEY-----
";

    const ENCRYPTED_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABCKQAFAT2
c29fH0HXSoxlpZAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIJgizcDTwtD+nPtr
kjU/FZilJ0Fpr2jtPcBWQuvCeKFaAAAAkBVGTwUPaNi9onWKWOytayE5XkP4+KPmtTcc7K
gybHgDgUQZCmmYa2UH+zFKigEazRDbjjmaooydwy6/bJ7t14LOntva7WfugEijUTDrF14X
HE8ZnkbPtNg+4y2Qcqj1Xo4DTdkkBAkGdS+V/lTx3Hzjrmtq0Ja8P2dUccJFiLwp+U+R88
mL/d+EgOFfEh0Ncw==
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jitca.yaml");
        std::fs::write(
            &path,
            "listen: \"127.0.0.1:0\"\nca_key: ca\nhost_key: host\n",
        )
        .unwrap();
        let config = load(&path).unwrap();

        let err = config.check_key_files().unwrap_err();
        assert_eq!(err.0.len(), 2);
        assert_eq!(err.0[0].line, Some(2));
        assert!(
            err.0[0].message.starts_with("ca_key: cannot read "),
            "{err}"
        );
        assert_eq!(err.0[1].line, Some(3));
        assert!(
            err.0[1].message.starts_with("host_key: cannot read "),
            "{err}"
        );

        std::fs::write(dir.path().join("ca"), PRIVATE_KEY).unwrap();
        std::fs::write(dir.path().join("host"), format!("{ALICE}\n")).unwrap();
        // Key files must be closed to group and others (config/ca.rs tests that part).
        for key in ["ca", "host"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path().join(key), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        let err = config.check_key_files().unwrap_err();
        assert_eq!(err.0.len(), 1);
        let line = err.to_string();
        assert!(
            line.starts_with(&format!("{}:3: host_key: ", path.display())),
            "{line}"
        );
        assert!(
            line.contains("is not a usable OpenSSH private key"),
            "{line}"
        );

        std::fs::write(dir.path().join("host"), ENCRYPTED_KEY).unwrap();
        let err = config.check_key_files().unwrap_err();
        assert!(
            err.to_string().contains("is encrypted with a passphrase"),
            "{err}"
        );

        std::fs::write(dir.path().join("host"), PRIVATE_KEY).unwrap();
        assert_eq!(config.check_key_files(), Ok(()));

        // Defaults: no line to name.
        let config = parse("", &dir.path().join("other.yaml")).unwrap();
        let err = config.check_key_files().unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, None);
        assert!(
            err.0[0].message.starts_with("host_key: cannot read "),
            "{err}"
        );
    }

    #[test]
    fn error_display() {
        let with_line = ConfigError {
            file: "j.yaml".into(),
            line: Some(7),
            message: "bad".into(),
        };
        let without = ConfigError {
            file: "j.yaml".into(),
            line: None,
            message: "worse".into(),
        };
        assert_eq!(with_line.to_string(), "j.yaml:7: bad");
        assert_eq!(without.to_string(), "j.yaml: worse");
        assert_eq!(
            ConfigErrors(vec![with_line, without]).to_string(),
            "j.yaml:7: bad\nj.yaml: worse"
        );
    }
}
