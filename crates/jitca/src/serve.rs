//! `jitca serve`: load and check the config, open the store, and run the control channel.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use jitca_authority::{AuditRecord, Authority, EventKind, Settings, audit::DAEMON};
use jitca_control::ServerOptions;
use jitca_metrics::{Metrics, Reload};
use jitca_signer::CertAuthority;
use jitca_store::SledStore;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::cli::ServeArgs;
use crate::config::{Config, LogFormat};

pub fn run(args: ServeArgs) -> Result<()> {
    let config_path = match &args.config {
        Some(path) => path.clone(),
        None => crate::dev::prepare(&args.dir)?,
    };
    // Read before logging starts, for its log_format; its refusal goes to stderr as any
    // command's error does.
    let config = read(&config_path)?;
    init_logging(config.log_format);
    let config = checked(config, KeyCheck::Full)?;
    let listen = args.listen.unwrap_or(config.listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The daemon runs as a task on the runtime's worker threads. `block_on` would poll it on
    // this thread instead: every accepted connection then cost two thread hand-offs (a worker
    // waking this thread for the accept, this thread waking a worker for the new task).
    let daemon = runtime.spawn(serve(config, listen, args.dev.then_some(args.dir)));
    match runtime.block_on(daemon) {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(anyhow!("the daemon's task ended unexpectedly: {e}")),
    }
}

/// Logs go to stderr (the journal, under systemd): colours only on a terminal, and one JSON
/// object a line with `log_format: json`.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("JITCA_LOG").ok().as_deref()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// `JITCA_LOG` (default `info`). Below debug, russh's notices about each channel request it
/// does not know (PuTTY's `simple@putty.projects.tartarus.org` and `winadj@...`, sent on
/// every session) and each terminal mode it does not know are kept out: nobody can act on
/// them. They show with `JITCA_LOG=debug`, or any `JITCA_LOG` that names russh.
fn log_filter(asked: Option<&str>) -> EnvFilter {
    let filter = asked
        .and_then(|text| EnvFilter::try_new(text).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let verbose = filter
        .max_level_hint()
        .is_none_or(|level| level >= LevelFilter::DEBUG);
    if verbose || asked.is_some_and(|text| text.contains("russh")) {
        return filter;
    }
    filter.add_directive(
        "russh::server::encrypted=error"
            .parse()
            .expect("a valid directive"),
    )
}

/// How much of the keys [`load`] checks.
#[derive(Clone, Copy)]
enum KeyCheck {
    /// Everything `jitca check` checks, the CA key's ssh-agent included: at start-up.
    Full,
    /// All but asking the agent: on a reload, which keeps the CA in use, so that an agent that
    /// is down cannot stop a reload that ends the access of removed users.
    WithoutAgent,
}

/// The config, with the same checks as `jitca check`: a daemon never starts on a bad one.
fn load(path: &std::path::Path, keys: KeyCheck) -> Result<Config> {
    checked(read(path)?, keys)
}

/// The config file, parsed and validated; the key files are not looked at yet.
fn read(path: &std::path::Path) -> Result<Config> {
    crate::config::load(path).map_err(|e| anyhow!("invalid config:\n{e}"))
}

/// Logs the config's warnings and checks its key files.
fn checked(config: Config, keys: KeyCheck) -> Result<Config> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    match keys {
        KeyCheck::Full => config.check_key_files(),
        KeyCheck::WithoutAgent => config.check_key_files_offline(),
    }
    .map_err(|e| anyhow!("invalid config:\n{e}"))?;
    Ok(config)
}

async fn serve(
    config: Config,
    listen: std::net::SocketAddr,
    dev_dir: Option<std::path::PathBuf>,
) -> Result<()> {
    // Opened (and checked) before anything else: the key file's owner and mode, the passphrase,
    // or an agent that holds the key. Only where the key is and its fingerprint are logged.
    let signer = CertAuthority::open(&config.ca.source)?;
    let ca_fingerprint = signer
        .public_key()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    tracing::info!(source = %config.ca.source, fingerprint = %ca_fingerprint, "CA key ready");
    let host_key = jitca_signer::load_private_key(&config.host_key)?;
    let opened = crate::store::open(&config, listen)?;
    if let crate::store::Opened::Sled(sled) = &opened {
        // A store written by an older release is packed while the daemon already serves.
        let sled = sled.clone();
        tokio::task::spawn_blocking(move || pack_audit_backlog(&sled));
    }
    let store = opened.shared();
    let earlier_cas = config
        .ca
        .previous_public_keys()
        .map_err(|e| anyhow!("previous_ca_keys: {e}"))?;
    let metrics = Metrics::new();
    let webhooks = crate::alerts::Webhooks::start(&config.notify, &metrics);
    let fixed = Fixed::of(&config);
    let authority = Arc::new(Authority::new(
        config.policy,
        Settings {
            pending_ttl: config.pending_ttl,
            audit_log: config.audit_log.clone(),
            krl_path: config.krl_path.clone(),
            earlier_cas,
            notify: webhooks
                .clone()
                .map(|w| w as Arc<dyn jitca_authority::Notify>),
            host_key: Some(host_key.public_key().clone()),
            metrics: metrics.clone(),
        },
        store.clone(),
        signer,
    )?);
    // Second factors: the key that seals their secrets, checked like the CA key if it exists
    // (made at the first enrolment otherwise).
    authority.use_mfa_key(&config.mfa_key)?;
    // The audit signing key: checked like the CA key (a bad one stops the start), or made now
    // for a set-up older than checkpoints (logged by the authority). A daemon that may not
    // write next to its config still starts, with checkpoints off until the key is made.
    match authority.use_audit_key(&config.audit_key) {
        Ok(_) => {}
        Err(e) if !config.audit_key.exists() => tracing::error!(
            path = %config.audit_key.display(),
            error = %e,
            "cannot make the audit signing key: checkpoints are off until `jitca init \
             --audit-key-only --dir DIR` makes it and the daemon restarts"
        ),
        Err(e) => {
            return Err(anyhow!(e))
                .with_context(|| format!("audit_key {}", config.audit_key.display()));
        }
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr()?;
    // Bound before anything is recorded: a port in use stops the start, as `listen`'s does.
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (metrics_listen)"))?,
        ),
        None => None,
    };
    // Fail closed: a daemon that cannot record its own start records nothing else either.
    blocking(&authority, move |a| {
        a.record(
            AuditRecord::new(EventKind::DaemonStarted, DAEMON)
                .with("version", env!("CARGO_PKG_VERSION"))
                .with("listen", bound.to_string())
                .with("ca_fingerprint", ca_fingerprint),
        )
    })
    .await
    .context("cannot record the daemon's start in the audit log")?;
    // The config may have lost users while the daemon was down: end their access now, and
    // publish a fresh KRL (a new version at every start).
    blocking(&authority, |a| {
        let ended = a.end_access_of_removed_users()?;
        if !ended.is_empty() {
            tracing::info!(requests = ?ended, "ended the access of users no longer in the config");
        }
        a.krl_changed()
    })
    .await
    .context("cannot publish the revocation list")?;
    let hint = format!("ssh -p {} jitca@{}", bound.port(), bound.ip());
    tracing::info!(address = %bound, config = %config.file.display(), "listening on {bound}");
    if let Some(dir) = dev_dir {
        crate::dev::print_next_steps(&dir, &hint);
    }

    let mut tasks = vec![
        tokio::spawn(lapse_sweeper(authority.clone())),
        tokio::spawn(checkpoints(authority.clone(), config.checkpoint_interval)),
        tokio::spawn(reload_on_sighup(
            authority.clone(),
            config.file.clone(),
            fixed,
            metrics.clone(),
            bound,
        )),
    ];
    if let Some(listener) = metrics_listener {
        let at = listener.local_addr()?;
        tracing::info!(address = %at, "metrics on http://{at}/metrics");
        tasks.push(tokio::spawn(jitca_metrics::serve(
            listener,
            metrics.clone(),
            std::future::pending(),
        )));
    }
    if let Some(interval) = crate::systemd::watchdog_interval() {
        let alive = {
            let authority = authority.clone();
            move || authority.store_alive().map_err(|e| e.to_string())
        };
        tasks.push(tokio::spawn(crate::systemd::keep_alive(interval, alive)));
    }
    // The listener is bound and the start recorded: connections are accepted from here on.
    crate::systemd::ready(&serving(bound));
    jitca_control::serve(
        listener,
        authority.clone(),
        ServerOptions {
            host_key,
            ssh_hint: hint,
            limits: config.limits,
            metrics,
        },
        async {
            shutdown_signal().await;
            crate::systemd::stopping();
        },
    )
    .await?;
    for task in tasks {
        task.abort();
    }
    blocking(&authority, |a| {
        a.record(AuditRecord::new(EventKind::DaemonStopped, DAEMON))
    })
    .await
    .context("cannot record the daemon's stop in the audit log")?;
    tokio::task::spawn_blocking(move || jitca_store::Store::flush(store.as_ref())).await??;
    if let Some(webhooks) = webhooks {
        tokio::task::spawn_blocking(move || webhooks.drain()).await?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The `STATUS=` line while serving.
fn serving(bound: std::net::SocketAddr) -> String {
    format!("serving on {bound}")
}

/// Runs an authority operation on a blocking thread.
async fn blocking<T: Send + 'static>(
    authority: &Arc<Authority>,
    op: impl FnOnce(&Authority) -> Result<T, jitca_authority::AuthorityError> + Send + 'static,
) -> Result<T> {
    let authority = authority.clone();
    Ok(tokio::task::spawn_blocking(move || op(&authority)).await??)
}

/// Re-reads the config on SIGHUP. A config that fails the checks of `jitca check` is refused
/// and the one in force stays; the log and the audit trail say so either way.
/// Settings read only at start: a reload that changes them says they wait for a restart.
#[derive(PartialEq)]
struct Fixed {
    notify: Vec<jitca_notify::Webhook>,
    mfa_key: std::path::PathBuf,
    audit_key: std::path::PathBuf,
    checkpoint_interval: Duration,
    listen: std::net::SocketAddr,
    data_dir: std::path::PathBuf,
    store: crate::config::StoreLocation,
    store_cache: u64,
    metrics_listen: Option<std::net::SocketAddr>,
    log_format: LogFormat,
}

impl Fixed {
    fn of(config: &Config) -> Self {
        Self {
            notify: config.notify.clone(),
            mfa_key: config.mfa_key.clone(),
            audit_key: config.audit_key.clone(),
            checkpoint_interval: config.checkpoint_interval,
            listen: config.listen,
            data_dir: config.data_dir.clone(),
            store: config.store.clone(),
            store_cache: config.store_cache,
            metrics_listen: config.metrics_listen,
            log_format: config.log_format,
        }
    }
}

async fn reload_on_sighup(
    authority: Arc<Authority>,
    file: std::path::PathBuf,
    fixed: Fixed,
    metrics: Metrics,
    bound: std::net::SocketAddr,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP: reloads are off");
        return;
    };
    while hangup.recv().await.is_some() {
        crate::systemd::reloading();
        let path = file.clone();
        let mut result = Reload::Done;
        let outcome = match load(&file, KeyCheck::WithoutAgent) {
            Ok(config) => {
                if Fixed::of(&config) != fixed {
                    tracing::warn!(
                        "listen, data_dir, store, store_cache, mfa_key, audit_key, checkpoint_interval, notify, \
                         metrics_listen or log_format changed: they take effect at the next \
                         restart; the rest of the config is reloaded now"
                    );
                }
                blocking(&authority, move |a| a.reload(config.policy, &path)).await
            }
            Err(e) => {
                result = Reload::Refused;
                tracing::error!("config reload refused, the config in force stays: {e:#}");
                let why = format!("{e:#}");
                blocking(&authority, move |a| {
                    let mut event = AuditRecord::new(EventKind::ConfigReloaded, DAEMON)
                        .with("file", path.display().to_string())
                        .with("result", "refused: the config in force stays");
                    event.reason = Some(why);
                    a.record(event)
                })
                .await
            }
        };
        if let Err(e) = outcome {
            tracing::error!("config reload failed: {e:#}");
            if result == Reload::Done {
                result = Reload::Failed;
            }
        }
        metrics.reloaded(result);
        crate::systemd::ready(&serving(bound));
    }
}

/// Retries what failed on the way to ending access (`Authority::upkeep`), lapses pending
/// requests nobody decided on (for requests with nobody waiting on them), lets
/// long-expired certificates leave the KRL, and closes the failed-authentication rate window
/// so a flood's count is recorded.
/// Packs the audit records of a store written before the chain was packed, a block at a time
/// (readers and appends go on between blocks), saying in the log how far it got.
fn pack_audit_backlog(store: &SledStore) {
    let started = std::time::Instant::now();
    let mut next_report = 0;
    let packed = store.pack_backlog(&mut |packed, length| {
        if packed >= next_report {
            tracing::info!(
                packed,
                records = length,
                "packing the audit chain of an older store"
            );
            next_report = packed + length / 10;
        }
    });
    match packed {
        Ok(0) => {}
        Ok(blocks) => tracing::info!(
            blocks,
            seconds = started.elapsed().as_secs(),
            "packed the audit chain of an older store"
        ),
        Err(e) => tracing::error!(error = %e, "cannot pack the audit chain; appends pack it \
            a block at a time"),
    }
}

async fn lapse_sweeper(authority: Arc<Authority>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        let outcome = blocking(&authority, move |a| {
            // First what failed on the way to ending access (records, revocations, the KRL).
            if let Err(e) = a.upkeep() {
                tracing::error!(error = %e, "ending access: something still fails");
            }
            // With several daemons on one database: their KRL versions, and every 30 s the
            // gauges.
            if let Err(e) = a.follow_others(ticks.is_multiple_of(6)) {
                tracing::error!(error = %e, "cannot follow the shared store");
            }
            a.lapse_due()?;
            a.prune_krl()?;
            a.record_auth_failure(None)?;
            jitca_store::release_free_memory();
            Ok(())
        })
        .await;
        if let Err(e) = outcome {
            tracing::error!(error = %e, "periodic upkeep failed");
        }
    }
}

/// Every `interval`, a signed checkpoint of the audit chain: recorded in the chain (and so in
/// the `audit_log` file), logged, and sent to the `notify:` webhooks, so that copies live
/// outside the CA host (docs/audit.md).
async fn checkpoints(authority: Arc<Authority>, interval: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match blocking(&authority, |a| a.checkpoint(None)).await {
            Ok(signed) => tracing::info!(checkpoint = %signed, "audit checkpoint signed"),
            Err(e) => tracing::error!(error = %e, "cannot sign an audit checkpoint"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    use super::log_filter;

    /// Whether a `level` event from russh's server (where its "unknown channel request" line
    /// comes from) and one from jitca pass the filter `JITCA_LOG` gives.
    fn shown(asked: Option<&str>, level: Level) -> (bool, bool) {
        let subscriber = tracing_subscriber::registry().with(log_filter(asked));
        tracing::subscriber::with_default(subscriber, || {
            macro_rules! at {
                ($target:literal) => {
                    match level {
                        Level::WARN => tracing::enabled!(target: $target, Level::WARN),
                        Level::INFO => tracing::enabled!(target: $target, Level::INFO),
                        _ => tracing::enabled!(target: $target, Level::DEBUG),
                    }
                };
            }
            (at!("russh::server::encrypted"), at!("jitca::serve"))
        })
    }

    #[test]
    fn russh_channel_request_notices_show_only_at_debug() {
        // By default, and with an explicit info or warn: russh's warn and info are kept out,
        // jitca's are not.
        for asked in [None, Some("info"), Some("warn"), Some("not a filter[")] {
            assert_eq!(shown(asked, Level::WARN), (false, true), "{asked:?}");
            assert!(!shown(asked, Level::INFO).0, "{asked:?}");
        }
        // Asking for debug, or naming russh, shows them.
        assert_eq!(shown(Some("debug"), Level::WARN), (true, true));
        assert_eq!(shown(Some("info,russh=warn"), Level::WARN), (true, true));
    }
}
