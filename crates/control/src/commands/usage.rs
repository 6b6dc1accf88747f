//! `usage --sshd-log -`: an sshd log on stdin tells which grants were used (auditors).

use super::{Ctx, Failure, Outcome, parse};
use crate::args::{Kind, Spec};
use crate::channel::StdinRead;

/// Largest log accepted in one command; split a bigger one (`split -C 256M`).
const MAX_LOG_BYTES: usize = 256 * 1024 * 1024;

pub(super) const SPEC: Spec = Spec {
    usage: "usage --sshd-log - < /var/log/auth.log",
    positionals: &[],
    options: &[("--sshd-log", Kind::Value)],
    required: &["--sshd-log"],
};

pub(super) fn check(args: &[String]) -> Result<(), Failure> {
    let parsed = parse(&SPEC, args)?;
    if parsed.value("--sshd-log") != Some("-") {
        return Err(Failure::Refused(
            "the daemon cannot open files of yours: send the log on stdin with --sshd-log - < FILE"
                .into(),
        ));
    }
    Ok(())
}

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    check(args)?;
    // Auditors only: refused before a byte of the log is read.
    if !ctx.authority.policy().is_auditor(&ctx.caller.user) {
        return Err(Failure::Refused(
            jitca_policy::Denial::NotAuditor.to_string(),
        ));
    }
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
