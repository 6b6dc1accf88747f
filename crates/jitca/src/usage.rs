//! `jitca usage --sshd-log FILE --config FILE`: which grants were used, read from `sshd`'s
//! own log lines and recorded on the grants (and in the audit log), with the daemon stopped.

use std::io::BufReader;

use anyhow::{Context, Result, anyhow};
use jitca_authority::governance::{read_sshd_log, record_usage};
use jitca_store::{SledStore, Store};
use ssh_key::HashAlg;

use crate::cli::UsageArgs;

/// The actor of usage recorded from the command line.
const ACTOR: &str = "jitca-usage";

pub fn run(args: UsageArgs) -> Result<()> {
    let config = crate::config::load(&args.config).map_err(|e| anyhow!("{e}"))?;
    let mut cas = vec![
        config
            .ca
            .source
            .public_key()
            .map_err(|e| anyhow!("the CA public key: {e}"))?
            .fingerprint(HashAlg::Sha256)
            .to_string(),
    ];
    for key in config
        .ca
        .previous_public_keys()
        .map_err(|e| anyhow!("previous_ca_keys: {e}"))?
    {
        cas.push(key.fingerprint(HashAlg::Sha256).to_string());
    }
    let now = chrono::Utc::now();
    let sightings = if args.sshd_log.as_os_str() == "-" {
        read_sshd_log(&mut std::io::stdin().lock(), now)
    } else {
        let file = std::fs::File::open(&args.sshd_log)
            .with_context(|| format!("cannot open {}", args.sshd_log.display()))?;
        read_sshd_log(&mut BufReader::new(file), now)
    }
    .context("cannot read the log")?;
    let store: Box<dyn Store> = match &config.store {
        // A shared database is written by running daemons too: this writes through it.
        crate::config::StoreLocation::Postgres { .. } => crate::store::open_offline(&config)?,
        crate::config::StoreLocation::Sled => {
            Box::new(SledStore::open(&config.data_dir).map_err(|e| {
                anyhow!(
                    "{e}: while the daemon runs, an auditor sends the log over the control channel: \
                     ssh -p PORT jitca@HOST usage --sshd-log - < {}",
                    args.sshd_log.display()
                )
            })?)
        }
    };
    let report =
        record_usage(store.as_ref(), ACTOR, None, &sightings, &cas).map_err(|e| anyhow!("{e}"))?;
    store.flush()?;
    print!("{}", jitca_control::render::usage_report(&report));
    Ok(())
}
