//! `audit`, `audit verify [--checkpoint -]`, `audit key` and `audit checkpoint`: the audit log
//! and its signed checkpoints, for auditors.

use jitca_authority::{AuditQuery, parse_time};

use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::{Kind, Parsed, Spec};
use crate::io::StdinRead;
use crate::render;

const QUERY: Spec = Spec {
    usage: "audit [--since T] [--until T] [--user U] [--host H] [--serial N] [--request ID] [--json] | audit verify [--checkpoint -] | audit key | audit checkpoint",
    positionals: &[],
    options: &[
        ("--since", Kind::Value),
        ("--until", Kind::Value),
        ("--user", Kind::Value),
        ("--host", Kind::Value),
        ("--serial", Kind::Value),
        ("--request", Kind::Value),
        ("--json", Kind::Flag),
    ],
    required: &[],
};

const VERIFY: Spec = Spec {
    usage: "audit verify [--checkpoint - < CHECKPOINT]",
    positionals: &[],
    options: &[("--checkpoint", Kind::Value)],
    required: &[],
};

const KEY: Spec = Spec {
    usage: "audit key",
    positionals: &[],
    options: &[],
    required: &[],
};

const CHECKPOINT: Spec = Spec {
    usage: "audit checkpoint",
    positionals: &[],
    options: &[],
    required: &[],
};

/// Largest checkpoint read from stdin (one is about 500 bytes).
const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;

/// Bytes of output gathered before they are sent on.
const CHUNK: usize = 64 * 1024;

/// What `audit` was asked, checked.
#[derive(Debug)]
pub(super) enum Args {
    Verify { checkpoint: bool },
    Key,
    Checkpoint,
    Query { query: AuditQuery, json: bool },
}

/// The grammar and the filters, checked, before the log is touched.
pub(super) fn parse(args: &[String]) -> Result<Args, Failure> {
    match args.first().map(String::as_str) {
        Some("verify") => {
            let parsed = grammar(&VERIFY, &args[1..])?;
            return match parsed.value("--checkpoint") {
                None => Ok(Args::Verify { checkpoint: false }),
                Some("-") => Ok(Args::Verify { checkpoint: true }),
                Some(_) => Err(Failure::Refused(
                    "the daemon cannot open files of yours: send the checkpoint on stdin with \
                     --checkpoint - < FILE"
                        .into(),
                )),
            };
        }
        Some("key") => {
            grammar(&KEY, &args[1..])?;
            return Ok(Args::Key);
        }
        Some("checkpoint") => {
            grammar(&CHECKPOINT, &args[1..])?;
            return Ok(Args::Checkpoint);
        }
        _ => {}
    }
    let parsed = grammar(&QUERY, args)?;
    let query = query_from(&parsed).map_err(Failure::Refused)?;
    Ok(Args::Query {
        query,
        json: parsed.flag("--json"),
    })
}

pub(super) async fn run(ctx: &mut Ctx, args: Args) -> Outcome {
    let (query, json) = match args {
        Args::Query { query, json } => (query, json),
        Args::Verify { checkpoint: false } => return verify(ctx).await,
        Args::Verify { checkpoint: true } => return verify_checkpoint(ctx).await,
        Args::Key => {
            let line = ctx.call(|a, c| a.audit_public_key(c)).await?;
            ctx.out.stdout(format!("{line}\n")).await;
            return Ok(());
        }
        Args::Checkpoint => {
            let signed = ctx.call(|a, c| a.checkpoint(Some(c))).await?;
            ctx.out.stdout(signed).await;
            return Ok(());
        }
    };

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let reading = ctx.call(move |a, c| {
        let mut buf = Vec::with_capacity(CHUNK);
        if !json {
            buf.extend_from_slice(render::AUDIT_HEADER.as_bytes());
        }
        let mut open = true;
        a.read_audit(c, &query, &mut |record, line| {
            if json {
                buf.extend_from_slice(line);
                buf.push(b'\n');
            } else {
                buf.extend_from_slice(render::audit_row(record).as_bytes());
            }
            if buf.len() >= CHUNK {
                open = tx.blocking_send(std::mem::take(&mut buf)).is_ok();
            }
            open
        })?;
        if !buf.is_empty() {
            let _ = tx.blocking_send(buf);
        }
        Ok(())
    });
    let writing = async {
        while let Some(chunk) = rx.recv().await {
            ctx.out.stdout(chunk).await;
        }
    };
    let (read, ()) = tokio::join!(reading, writing);
    read
}

/// `audit verify`: the hash chain, end to end.
async fn verify(ctx: &mut Ctx) -> Outcome {
    match ctx.call(|a, c| a.verify_audit(c)).await? {
        Ok(head) => {
            ctx.out
                .stdout(format!(
                    "audit log intact: {} records, head {}\n",
                    head.seq, head.hash
                ))
                .await;
            Ok(())
        }
        Err(broken) => Err(Failure::Refused(format!("audit log broken at {broken}"))),
    }
}

/// `audit verify --checkpoint -`: a checkpoint on stdin, its signature and the chain against it.
async fn verify_checkpoint(ctx: &mut Ctx) -> Outcome {
    // Auditors only: refused before a byte of stdin is read.
    ctx.authority.check_auditor(&ctx.caller)?;
    let Some(mut stdin) = ctx.stdin.take() else {
        return Err(Failure::Refused("stdin was already read".into()));
    };
    let bytes = match stdin.read_to_end(MAX_CHECKPOINT_BYTES).await {
        StdinRead::Complete(bytes) => bytes,
        StdinRead::TooLong => {
            return Err(Failure::Refused(
                "that is no checkpoint: more than 64 KiB on stdin".into(),
            ));
        }
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::Refused("the checkpoint is not UTF-8 text".into()))?;
    match ctx.call(move |a, c| a.verify_checkpoint(c, &text)).await? {
        Ok(head) => {
            ctx.out
                .stdout(format!(
                    "audit log intact and holds the checkpoint: {} records, head {}\n",
                    head.seq, head.hash
                ))
                .await;
            Ok(())
        }
        Err(broken) => Err(Failure::Refused(format!(
            "audit log does not hold the checkpoint: record {}",
            broken.to_string().trim_start_matches("record ")
        ))),
    }
}

/// The filters as typed, checked.
fn query_from(parsed: &Parsed) -> Result<AuditQuery, String> {
    let now = chrono::Utc::now();
    let time = |name: &str| parsed.value(name).map(|t| parse_time(t, now)).transpose();
    let serial = parsed
        .value("--serial")
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| format!("{} is not a serial number", crate::args::shown(s)))
        })
        .transpose()?;
    Ok(AuditQuery {
        since: time("--since")?,
        until: time("--until")?,
        user: parsed.value("--user").map(str::to_string),
        host: parsed.value("--host").map(str::to_string),
        serial,
        request: parsed.value("--request").map(str::to_string),
        after_seq: None,
    })
}
