//! The store the config names, opened for the daemon or an offline command, and
//! `jitca store copy`: a stopped daemon's sled store moved into an empty PostgreSQL database.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use jitca_store::{PgOptions, PgStore, SledStore, Store, StoreOptions};

use crate::cli::{StoreAction, StoreArgs};
use crate::config::{Config, StoreLocation};

/// A store opened for the daemon.
pub enum Opened {
    Sled(Arc<SledStore>),
    Postgres(Arc<PgStore>),
}

impl Opened {
    pub fn shared(&self) -> Arc<dyn Store> {
        match self {
            Self::Sled(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }
}

/// This daemon's name among those sharing a database: the host's name and the address it
/// listens on (`--listen` when given, else the config's).
pub fn node(config: &Config) -> String {
    node_at(config.listen)
}

fn node_at(listen: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host} {listen}")
}

/// Opens the store the config names for the daemon listening on `listen`: sled in
/// `data_dir` (created if missing), or the PostgreSQL database (its schema made or migrated).
pub fn open(config: &Config, listen: std::net::SocketAddr) -> Result<Opened> {
    match config.pg_options(&node_at(listen))? {
        None => Ok(Opened::Sled(Arc::new(SledStore::open_with(
            &config.data_dir,
            &StoreOptions {
                cache_bytes: config.store_cache,
            },
        )?))),
        Some(options) => {
            let store = PgStore::open(&options)?;
            tracing::info!(database = %store.shown(), "store: PostgreSQL");
            Ok(Opened::Postgres(Arc::new(store)))
        }
    }
}

/// The store of an offline command given `--config`: the database for a PostgreSQL store
/// (read while daemons run), else the sled store in `data_dir` (the daemon stopped).
pub fn open_offline(config: &Config) -> Result<Box<dyn Store>> {
    match config.pg_options(&node(config))? {
        None => Ok(Box::new(crate::audit::open(&config.data_dir)?)),
        Some(options) => Ok(Box::new(PgStore::open_existing(&options)?)),
    }
}

pub fn run(args: StoreArgs) -> Result<()> {
    match args.action {
        StoreAction::Copy { config, to } => copy(&config, &to),
    }
}

/// Copies the sled store of `config` into the empty database at `to`, then verifies the
/// copy's chain: it must end at the same head.
fn copy(config_path: &std::path::Path, to: &str) -> Result<()> {
    let config = crate::config::load(config_path).map_err(|e| anyhow!("invalid config:\n{e}"))?;
    if config.store != StoreLocation::Sled {
        bail!(
            "{} already names a PostgreSQL store; copy from the config of the sled store",
            config_path.display()
        );
    }
    let from = crate::audit::open(&config.data_dir)?;
    let mut options = PgOptions::new(to);
    options.timeout = config
        .limits
        .store_timeout
        .max(std::time::Duration::from_secs(60));
    options.node = node(&config);
    // A password, when the database wants one, comes from the environment here (PGPASSWORD is
    // what psql reads too), never from the command line.
    options.password = std::env::var("PGPASSWORD").ok();
    let target = PgStore::open(&options)?;
    let head = from.audit_head()?;
    let bar = progress(head.seq);
    let mut last_line = std::time::Instant::now();
    let report = target
        .copy_from(&from, &mut |done, total| match &bar {
            Some(bar) => bar.set_position(done),
            None => {
                if last_line.elapsed().as_secs() >= 5 || done == total {
                    eprintln!("copied {done} of {total} audit records");
                    last_line = std::time::Instant::now();
                }
            }
        })
        .with_context(|| format!("nothing was copied into {}", target.shown()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    // The copy is committed by now: a check that fails says so, for the database must then
    // be dropped before another try (a copy goes only into an empty one).
    let copied = jitca_store::verify_audit(&target)?.map_err(|broken| {
        anyhow!(
            "the copy in {} does not verify: {broken}; drop that database and copy again",
            target.shown()
        )
    })?;
    if copied != head {
        bail!(
            "the copy in {} ends at {} {} but the store at {} {}; drop that database and copy \
             again",
            target.shown(),
            copied.seq,
            copied.hash,
            head.seq,
            head.hash
        );
    }
    println!(
        "copied {} requests, {} audit records (head {}), serials above {} and {} second factors into {}",
        report.requests,
        report.audit_records,
        head.hash,
        report.serial,
        report.second_factors,
        target.shown()
    );
    Ok(())
}

/// A progress bar on a terminal; nothing when stderr is piped.
fn progress(total: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "copying the audit chain {bar:40} {pos}/{len} records ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}
