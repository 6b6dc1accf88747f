//! `jitca audit --data DIR`: the audit log read offline, with the daemon stopped. It only
//! reads: a store under investigation is evidence, and is never written to.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use jitca_authority::{AuditQuery, parse_time};
use jitca_store::{SledStore, Store};

use crate::cli::{AuditAction, AuditArgs};

pub fn run(args: AuditArgs) -> Result<()> {
    match args.action {
        Some(AuditAction::Verify {
            data,
            checkpoint: Some(checkpoint),
            key: Some(key),
        }) => verify_checkpoint(&data, &checkpoint, &key),
        Some(AuditAction::Verify { data, .. }) => verify(&data),
        None => query(args),
    }
}

pub fn open(dir: &Path) -> Result<SledStore> {
    // sled creates a missing store: check first, so a typo cannot make an empty "log".
    if !dir.join("db").is_file() {
        bail!(
            "{} is not a jitca store (no sled database in it)",
            dir.display()
        );
    }
    // Opening writes nothing to the chain, and this command appends nothing: a store under
    // investigation stays as it was.
    SledStore::open(dir).map_err(|e| {
        anyhow!("{e} (stop the daemon first, or read the log over the control channel)")
    })
}

/// The chain against a signed checkpoint, with an audit public key the auditor kept.
fn verify_checkpoint(dir: &Path, checkpoint: &Path, key: &Path) -> Result<()> {
    let key = read_audit_public_key(key)?;
    let signed = std::fs::read_to_string(checkpoint)
        .with_context(|| format!("cannot read {}", checkpoint.display()))?;
    let checkpoint = jitca_authority::Checkpoint::verify(&signed, &key).map_err(|e| anyhow!(e))?;
    let store = open(dir)?;
    match jitca_authority::checkpoint::check_chain(&store, &checkpoint)? {
        Ok(head) => {
            println!(
                "audit log intact and holds the checkpoint: {} records, head {}",
                head.seq, head.hash
            );
            Ok(())
        }
        Err(broken) => bail!("audit log does not hold the checkpoint: {broken}"),
    }
}

/// An OpenSSH public key line, alone or inside an allowed-signers line.
pub fn read_audit_public_key(path: &Path) -> Result<ssh_key::PublicKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter_map(|line| {
            let start = line.find("ssh-")?;
            ssh_key::PublicKey::from_openssh(line[start..].trim()).ok()
        })
        .next()
        .ok_or_else(|| anyhow!("{} holds no OpenSSH public key", path.display()))
}

fn verify(dir: &Path) -> Result<()> {
    let store = open(dir)?;
    match jitca_store::verify_audit(&store)? {
        Ok(head) => {
            println!("audit log intact: {} records, head {}", head.seq, head.hash);
            Ok(())
        }
        Err(broken) => bail!("audit log broken at {broken}"),
    }
}

/// A `--since`/`--until` value (RFC 3339, a date, or a duration back from `now`), if given.
pub(crate) fn time_arg(
    t: &Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    t.as_deref()
        .map(|t| parse_time(t, now))
        .transpose()
        .map_err(|e| anyhow!(e))
}

fn query(args: AuditArgs) -> Result<()> {
    let dir = args.data.context("--data DIR is required")?;
    let store = open(&dir)?;
    let now = chrono::Utc::now();
    let time = |t: &Option<String>| time_arg(t, now);
    let query = AuditQuery {
        since: time(&args.since)?,
        until: time(&args.until)?,
        user: args.user,
        host: args.host,
        serial: args.serial,
        request: args.request,
        after_seq: None,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    if !args.json {
        out.write_all(jitca_control::render::AUDIT_HEADER.as_bytes())?;
    }
    let mut failed = None;
    store.scan_audit(&query, &mut |record, line| {
        let written = if args.json {
            out.write_all(line).and_then(|()| out.write_all(b"\n"))
        } else {
            out.write_all(jitca_control::render::audit_row(record).as_bytes())
        };
        match written {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match failed {
        // A reader that went away (`| head`) is not an error.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(e.into()),
        None => match out.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(()),
        },
    }
}
