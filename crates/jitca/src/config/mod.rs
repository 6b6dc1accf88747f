//! The daemon's config file, whole: YAML in, a validated [`Config`] out.
//!
//! The file holds sections owned by different parts of jitca: the daemon's own settings
//! (addresses, paths, timers, log format: here), the CA key sources (`jitca_signer::settings`),
//! the control channel's `limits` (`jitca_control::limits`), the `notify` webhooks
//! (`jitca_notify::settings`) and the policy (`jitca_policy::config`). This module knows every
//! top-level key, so an unknown or misspelt key anywhere is refused; it reads the file once
//! with [`RawFile`] and hands each section to its owner. All of them report through one
//! [`Problems`] collector, so `jitca check` lists every problem, each with its file and line,
//! in line order, like `sshd -t`.

mod keys;
mod store;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jitca_control::limits::{Limits, RawLimits};
use jitca_notify::Webhook;
use jitca_notify::settings::{RawHook, read_hooks};
use jitca_policy::config::{RawHostGroups, RawRules, RawUsers};
use jitca_policy::names::show;
use jitca_policy::{ConfigError, ConfigErrors, LineIndex, Policy, PolicyText, Problems, YamlPath};
use jitca_signer::{CaSettings, CaText};
use serde::Deserialize;

pub use store::StoreLocation;

/// `listen` when the file does not say.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2222";
/// `host_key` when the file does not say.
pub const DEFAULT_HOST_KEY: &str = "host_ed25519";
/// `data_dir` when the file does not say.
pub const DEFAULT_DATA_DIR: &str = "data";
/// `pending_ttl` when the file does not say.
pub const DEFAULT_PENDING_TTL: Duration = Duration::from_secs(60 * 60);
/// The longest `pending_ttl`.
pub const MAX_PENDING_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Where the key that encrypts second-factor secrets is, unless `mfa_key` says.
pub const DEFAULT_MFA_KEY: &str = "mfa.key";
/// Where the key that signs audit checkpoints is, unless `audit_key` says.
pub const DEFAULT_AUDIT_KEY: &str = "audit_ed25519";
/// `checkpoint_interval` when the file does not say.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// The longest `checkpoint_interval`.
pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// `store_cache` when the file does not say: the most memory the store's page cache takes.
pub const DEFAULT_STORE_CACHE: u64 = 32 * 1024 * 1024;
/// The smallest `store_cache`: below it sled reads the same pages again and again.
pub const MIN_STORE_CACHE: u64 = 1024 * 1024;

/// How the daemon writes its log lines (`log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A validated config: the daemon's settings, each section's owner's settings, and the
/// [`Policy`].
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
    /// Where the CA key is, and the earlier CA keys hosts still trust.
    pub ca: CaSettings,
    /// The control channel's host key file, resolved.
    pub host_key: PathBuf,
    /// The sled store's folder, resolved (unused with a PostgreSQL store).
    pub data_dir: PathBuf,
    /// Where requests, serials and the audit chain are kept (`store:`): sled in `data_dir`,
    /// or a PostgreSQL database several daemons share.
    pub store: StoreLocation,
    /// Optional: the audit events also appended here as JSON lines (for log shippers).
    pub audit_log: Option<PathBuf>,
    /// Optional: the current KRL kept here, replaced atomically on every change.
    pub krl_path: Option<PathBuf>,
    /// How long a request nobody decides on stays pending; 1s to 7d.
    pub pending_ttl: Duration,
    /// Connection limits of the control channel.
    pub limits: Limits,
    /// Who may ask for what, and who approves.
    pub policy: Policy,
    /// The key that encrypts second-factor secrets in the store (32 random bytes, hex).
    pub mfa_key: PathBuf,
    /// The ed25519 key that signs audit checkpoints (never the CA key); made by `jitca init`
    /// or at the daemon's first start.
    pub audit_key: PathBuf,
    /// How often the daemon writes a signed checkpoint of the audit chain.
    pub checkpoint_interval: Duration,
    /// The most memory the store's page cache takes, in bytes (`store_cache: 32MiB`).
    pub store_cache: u64,
    /// Webhooks alerted of requests, decisions, break-glass, revocations and reviews due.
    pub notify: Vec<Webhook>,
    /// What is allowed but probably not meant (see [`jitca_policy::Parsed::warnings`]). One
    /// line each, in line order; `check` prints them, the daemon logs them.
    pub warnings: Vec<ConfigError>,
    /// Where each setting is written, for the problems [`Config::check_key_files`] finds.
    index: LineIndex,
}

/// The file as written: every top-level key, each section in its owner's raw form; every field
/// optional so that all problems are found in one pass, not one missing field at a time.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping of config settings")]
struct RawFile {
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
    users: Option<RawUsers>,
    hosts: Option<RawHostGroups>,
    rules: Option<RawRules>,
    auditors: Option<Vec<String>>,
    operators: Option<Vec<String>>,
    mfa_key: Option<String>,
    audit_key: Option<String>,
    checkpoint_interval: Option<String>,
    store_cache: Option<String>,
    store: Option<String>,
    store_password_file: Option<String>,
    notify: Option<Vec<RawHook>>,
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    parse(&jitca_policy::document::read_file(path)?, path)
}

/// Parses and validates config `text`; `file` names it in messages and its folder is where
/// relative paths resolve.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let index = LineIndex::build(text);
    let raw: RawFile = jitca_policy::document::read(text, file, &index)?;
    let mut problems = Problems::new(&index);
    let base = file.parent().unwrap_or(Path::new(""));
    let root = YamlPath::root();

    let (listen, metrics_listen) = addresses(
        raw.listen.as_deref(),
        raw.metrics_listen.as_deref(),
        &mut problems,
    );
    let log_format = log_format(raw.log_format.as_deref(), &mut problems);
    let ca = CaSettings::read(
        CaText {
            ca_key: raw.ca_key,
            ca_key_passphrase_file: raw.ca_key_passphrase_file,
            ca_key_passphrase_credential: raw.ca_key_passphrase_credential,
            ca_agent: raw.ca_agent,
            ca_public_key: raw.ca_public_key,
            previous_ca_keys: raw.previous_ca_keys,
        },
        base,
        &mut problems,
    );
    let path = |problems: &mut Problems<'_>, name: &str, value: Option<String>, default| {
        let value = value.unwrap_or_else(|| String::from(default));
        problems.file_path(&root.key(name), &value, base)
    };
    let host_key = path(&mut problems, "host_key", raw.host_key, DEFAULT_HOST_KEY);
    let data_dir = path(&mut problems, "data_dir", raw.data_dir, DEFAULT_DATA_DIR);
    let audit_log = raw
        .audit_log
        .map(|p| path(&mut problems, "audit_log", Some(p), ""));
    let krl_path = raw
        .krl_path
        .map(|p| path(&mut problems, "krl_path", Some(p), ""));
    let policy = PolicyText {
        principal_format: raw.principal_format,
        users: raw.users,
        hosts: raw.hosts,
        rules: raw.rules,
        auditors: raw.auditors,
        operators: raw.operators,
    }
    .validate(&mut problems);
    let pending_ttl = duration(
        &mut problems,
        raw.pending_ttl,
        DEFAULT_PENDING_TTL,
        MAX_PENDING_TTL,
        &root.key("pending_ttl"),
    );
    let limits = Limits::read(
        raw.limits.unwrap_or_default(),
        &root.key("limits"),
        &mut problems,
    );
    let mfa_key = path(&mut problems, "mfa_key", raw.mfa_key, DEFAULT_MFA_KEY);
    let audit_key = path(&mut problems, "audit_key", raw.audit_key, DEFAULT_AUDIT_KEY);
    let checkpoint_interval = duration(
        &mut problems,
        raw.checkpoint_interval,
        DEFAULT_CHECKPOINT_INTERVAL,
        MAX_CHECKPOINT_INTERVAL,
        &root.key("checkpoint_interval"),
    );
    let store_cache = store_cache(raw.store_cache.as_deref(), &mut problems);
    let store = StoreLocation::read(raw.store, raw.store_password_file, base, &mut problems);
    let notify = read_hooks(
        raw.notify.unwrap_or_default(),
        &root.key("notify"),
        &mut problems,
    );

    let warnings = problems.finish(file)?;
    Ok(Config {
        file: file.to_path_buf(),
        listen,
        metrics_listen,
        log_format,
        ca,
        host_key,
        data_dir,
        store,
        audit_log,
        krl_path,
        pending_ttl,
        limits,
        policy,
        mfa_key,
        audit_key,
        checkpoint_interval,
        store_cache,
        notify,
        warnings,
        index,
    })
}

/// `listen` and `metrics_listen`: socket addresses, and not the same one. A refused address
/// is recorded and stands in as the default (it is never used: the config is refused).
fn addresses(
    listen: Option<&str>,
    metrics_listen: Option<&str>,
    problems: &mut Problems<'_>,
) -> (SocketAddr, Option<SocketAddr>) {
    let root = YamlPath::root();
    let listen_text = listen.unwrap_or(DEFAULT_LISTEN);
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
    let metrics_listen = metrics_listen.and_then(|text| {
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
    let default = DEFAULT_LISTEN.parse().expect("the default listen address");
    (listen.unwrap_or(default), metrics_listen)
}

/// `log_format`: text or json.
fn log_format(written: Option<&str>, problems: &mut Problems<'_>) -> LogFormat {
    match written {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.at(
                &YamlPath::root().key("log_format"),
                format_args!("{} is not a log format; write text or json", show(other)),
            );
            LogFormat::Text
        }
    }
}

/// `store_cache`: a size of at least [`MIN_STORE_CACHE`], [`DEFAULT_STORE_CACHE`] when not
/// written. A refused one is recorded and stands in as the default.
fn store_cache(written: Option<&str>, problems: &mut Problems<'_>) -> u64 {
    let Some(text) = written else {
        return DEFAULT_STORE_CACHE;
    };
    let path = YamlPath::root().key("store_cache");
    match parse_size(text) {
        Some(bytes) if bytes >= MIN_STORE_CACHE => return bytes,
        Some(_) => problems.at(&path, "must be at least 1MiB"),
        None => problems.at(
            &path,
            format_args!(
                "cannot read {}: give a size such as 64MiB or 1GiB",
                show(text)
            ),
        ),
    }
    DEFAULT_STORE_CACHE
}

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

/// A duration setting, `default` when not written; a refused one is recorded and stands in as
/// the default.
fn duration(
    problems: &mut Problems<'_>,
    written: Option<String>,
    default: Duration,
    max: Duration,
    path: &YamlPath,
) -> Duration {
    written
        .and_then(|text| problems.duration(&text, max, path))
        .unwrap_or(default)
}
