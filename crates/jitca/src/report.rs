//! `jitca report --data DIR|--config FILE`: the period report offline, from a stopped
//! daemon's store (or a copy of it). Built by the same `jitca_report::build` as the control
//! channel's `report`, and, like `jitca audit`, it never writes to the store.

use std::io::Write;

use anyhow::{Result, anyhow};
use jitca_report::{Format, Period};

use crate::cli::ReportArgs;

pub fn run(args: ReportArgs) -> Result<()> {
    let format = Format::parse(&args.format).map_err(|e| anyhow!(e))?;
    let now = chrono::Utc::now();
    let time = |t: &Option<String>| crate::audit::time_arg(t, now);
    let period = Period {
        since: time(&args.since)?,
        until: time(&args.until)?,
    };
    if let (Some(s), Some(u)) = (period.since, period.until)
        && s >= u
    {
        return Err(anyhow!("--since must be before --until"));
    }
    let config = args
        .config
        .as_deref()
        .map(|path| crate::config::load(path).map_err(|e| anyhow!("invalid config:\n{e}")))
        .transpose()?;
    let store: Box<dyn jitca_store::Store> = match (&args.data, &config) {
        (Some(dir), _) => Box::new(crate::audit::open(dir)?),
        (None, Some(config)) => crate::store::open_offline(config)?,
        (None, None) => unreachable!("clap requires --data or --config"),
    };
    let report = jitca_report::build(
        store.as_ref(),
        config.as_ref().map(|c| &c.policy),
        period,
        now,
    )?;
    let text = format.render(&report);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
