//! `usage --sshd-log -`: an sshd log on stdin tells which grants were used (auditors).

use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::{Kind, Spec};
use crate::io::StdinRead;

/// Largest log accepted in one command; split a bigger one (`split -C 256M`).
const MAX_LOG_BYTES: usize = 256 * 1024 * 1024;

const SPEC: Spec = Spec {
    usage: "usage --sshd-log - < /var/log/auth.log",
    positionals: &[],
    options: &[("--sshd-log", Kind::Value)],
    required: &["--sshd-log"],
};

/// The grammar, and the log on stdin (`-`): nothing else can be read.
pub(super) fn parse(args: &[String]) -> Result<(), Failure> {
    let parsed = grammar(&SPEC, args)?;
    if parsed.value("--sshd-log") != Some("-") {
        return Err(Failure::Refused(
            "the daemon cannot open files of yours: send the log on stdin with --sshd-log - < FILE"
                .into(),
        ));
    }
    Ok(())
}

pub(super) async fn run(ctx: &mut Ctx) -> Outcome {
    // Auditors only: refused before a byte of the log is read.
    ctx.authority.check_auditor(&ctx.caller)?;
    let Some(mut stdin) = ctx.stdin.take() else {
        return Err(Failure::Refused("stdin was already read".into()));
    };
    let log = match stdin.read_to_end(MAX_LOG_BYTES).await {
        StdinRead::Complete(bytes) => bytes,
        StdinRead::TooLong => {
            return Err(Failure::Refused(format!(
                "the log is longer than {} MiB; send it in parts",
                MAX_LOG_BYTES / 1024 / 1024
            )));
        }
    };
    let report = ctx
        .call(move |a, c| a.record_usage(c, &mut log.as_slice()))
        .await?;
    ctx.out.stdout(crate::render::usage_report(&report)).await;
    Ok(())
}
