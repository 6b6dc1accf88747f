//! `audit` and `audit verify`: the audit log, for auditors.

use jitca_authority::{AuditQuery, parse_time};

use super::{Ctx, Failure, Outcome, parse};
use crate::args::{Kind, Parsed, Spec};
use crate::render;

const QUERY: Spec = Spec {
    usage: "audit [--since T] [--until T] [--user U] [--host H] [--serial N] [--request ID] [--json] | audit verify",
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
    usage: "audit verify",
    positionals: &[],
    options: &[],
    required: &[],
};

/// Bytes of output gathered before they are sent on.
const CHUNK: usize = 64 * 1024;

/// What `audit` was asked, checked.
pub(super) enum Asked {
    Verify,
    Query { query: AuditQuery, json: bool },
}

/// The grammar and the filters, checked, before the log is touched.
pub(super) fn check(args: &[String]) -> Result<Asked, Failure> {
    if args.first().map(String::as_str) == Some("verify") {
        parse(&VERIFY, &args[1..])?;
        return Ok(Asked::Verify);
    }
    let parsed = parse(&QUERY, args)?;
    let query = query_from(&parsed).map_err(Failure::Refused)?;
    Ok(Asked::Query {
        query,
        json: parsed.flag("--json"),
    })
}

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let (query, json) = match check(args)? {
        Asked::Query { query, json } => (query, json),
        Asked::Verify => return verify(ctx).await,
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

/// The filters as typed, checked.
pub(crate) fn query_from(parsed: &Parsed) -> Result<AuditQuery, String> {
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
