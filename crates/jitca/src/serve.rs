//! `jitca serve`: load and check the config, open the store, and run the control channel.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use jitca_authority::Authority;
use jitca_control::ServerOptions;
use jitca_policy::Config;
use jitca_signer::CertAuthority;
use jitca_store::SledStore;
use tokio::net::TcpListener;

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> Result<()> {
    init_logging();
    let config_path = match &args.config {
        Some(path) => path.clone(),
        None => crate::dev::prepare(&args.dir)?,
    };
    let config = load(&config_path)?;
    let listen = args.listen.unwrap_or(config.listen);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config, listen, args.dev.then_some(args.dir)))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JITCA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The config, with the same checks as `jitca check`: a daemon never starts on a bad one.
fn load(path: &std::path::Path) -> Result<Config> {
    let config = jitca_policy::load(path).map_err(|e| anyhow!("invalid config:\n{e}"))?;
    config
        .check_key_files()
        .map_err(|e| anyhow!("invalid config:\n{e}"))?;
    Ok(config)
}

async fn serve(
    config: Config,
    listen: std::net::SocketAddr,
    dev_dir: Option<std::path::PathBuf>,
) -> Result<()> {
    let signer = CertAuthority::load(&config.ca_key)?;
    let host_key = jitca_signer::load_private_key(&config.host_key)?;
    let store = Arc::new(SledStore::open(&config.data_dir)?);
    let authority = Arc::new(Authority::new(
        config.policy,
        config.pending_ttl,
        store.clone(),
        signer,
    ));
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr()?;
    let hint = format!("ssh -p {} jitca@{}", bound.port(), bound.ip());
    tracing::info!(address = %bound, config = %config.file.display(), "listening on {bound}");
    if let Some(dir) = dev_dir {
        crate::dev::print_next_steps(&dir, &hint);
    }

    let sweeper = tokio::spawn(lapse_sweeper(authority.clone()));
    jitca_control::serve(
        listener,
        authority,
        ServerOptions {
            host_key,
            ssh_hint: hint,
        },
        shutdown_signal(),
    )
    .await?;
    sweeper.abort();
    tokio::task::spawn_blocking(move || jitca_store::Store::flush(store.as_ref())).await??;
    tracing::info!("stopped");
    Ok(())
}

/// Lapses pending requests nobody decided on, for requests with nobody waiting on them.
async fn lapse_sweeper(authority: Arc<Authority>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let authority = authority.clone();
        match tokio::task::spawn_blocking(move || authority.lapse_due()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "lapsing due requests failed"),
            Err(e) => tracing::error!(error = %e, "lapse sweeper panicked"),
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
