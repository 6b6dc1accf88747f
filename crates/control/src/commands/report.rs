//! `report [--since T] [--until T] [--format text|json|html]`: the period report, for auditors.

use jitca_authority::parse_time;
use jitca_report::{Format, Period};

use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::{Kind, Spec};

const SPEC: Spec = Spec {
    usage: "report [--since T] [--until T] [--format text|json|html]",
    positionals: &[],
    options: &[
        ("--since", Kind::Value),
        ("--until", Kind::Value),
        ("--format", Kind::Value),
    ],
    required: &[],
};

/// What `report` was asked, checked.
#[derive(Debug)]
pub(super) struct Args {
    period: Period,
    format: Format,
}

/// The period and format as typed, checked.
pub(super) fn parse(args: &[String]) -> Result<Args, Failure> {
    let parsed = grammar(&SPEC, args)?;
    let now = chrono::Utc::now();
    let time = |name: &str| {
        parsed
            .value(name)
            .map(|t| parse_time(t, now))
            .transpose()
            .map_err(Failure::Refused)
    };
    let period = Period {
        since: time("--since")?,
        until: time("--until")?,
    };
    if let (Some(s), Some(u)) = (period.since, period.until)
        && s >= u
    {
        return Err(Failure::Refused("--since must be before --until".into()));
    }
    let format =
        Format::parse(parsed.value("--format").unwrap_or("text")).map_err(Failure::Refused)?;
    Ok(Args { period, format })
}

pub(super) async fn run(ctx: &mut Ctx, Args { period, format }: Args) -> Outcome {
    let report = ctx
        .call(move |a, c| a.report(c, period, format.name()))
        .await?;
    let text = tokio::task::spawn_blocking(move || format.render(&report))
        .await
        .map_err(|_| Failure::Refused("internal error while writing the report".into()))?;
    let bytes = bytes::Bytes::from(text);
    for start in (0..bytes.len()).step_by(64 * 1024) {
        let end = (start + 64 * 1024).min(bytes.len());
        ctx.out.stdout(bytes.slice(start..end)).await;
    }
    Ok(())
}
