use std::fmt::Write;

use jitca_policy::format_duration;

use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::Spec;

const SPEC: Spec = Spec {
    usage: "whoami",
    positionals: &[],
    options: &[],
    required: &[],
};

/// No arguments.
pub(super) fn parse(args: &[String]) -> Result<(), Failure> {
    grammar(&SPEC, args).map(drop)
}

pub(super) async fn run(ctx: &mut Ctx) -> Outcome {
    let name = &ctx.caller.user;
    let me = ctx.authority.whoami(&ctx.caller);
    let mut text = String::new();
    let _ = writeln!(text, "user     {name}");
    let _ = writeln!(text, "groups   {}", me.groups.join(", "));
    let _ = writeln!(text, "may request:");
    if me.may_request.is_empty() {
        let _ = writeln!(text, "  nothing");
    }
    for rule in &me.may_request {
        let mut conditions = Vec::new();
        if let Some(pattern) = &rule.reason_pattern {
            conditions.push(format!("reason matching {}", crate::render::clean(pattern)));
        }
        if rule.requester_mfa {
            conditions.push("a one-time code".to_string());
        }
        if rule.approver_mfa {
            conditions.push("approvers give a one-time code".to_string());
        }
        if rule.review_required {
            conditions.push("reviewed after".to_string());
        }
        let _ = writeln!(
            text,
            "  {}: {} on {} for up to {}, {}{}",
            rule.name,
            rule.logins.join(","),
            rule.hosts.join(","),
            format_duration(rule.max_duration),
            match rule.approvals {
                _ if rule.break_glass =>
                    "BREAK-GLASS: issued at once with --break-glass, alerted".to_string(),
                0 => "no approval needed".to_string(),
                1 => format!("1 approval from {}", rule.approvers.join(",")),
                n => format!("{n} approvals from {}", rule.approvers.join(",")),
            },
            if conditions.is_empty() {
                String::new()
            } else {
                format!("; {}", conditions.join(", "))
            }
        );
    }
    let _ = writeln!(text, "may approve:");
    if me.may_approve.is_empty() {
        let _ = writeln!(text, "  nothing");
    }
    for rule in &me.may_approve {
        let _ = writeln!(
            text,
            "  {}: requests by {} for {} on {}",
            rule.name,
            rule.requesters.join(","),
            rule.logins.join(","),
            rule.hosts.join(",")
        );
    }
    if me.auditor {
        let _ = writeln!(text, "auditor  yes");
    }
    if me.operator {
        let _ = writeln!(text, "operator yes");
        // Where revocations stand: a krl_path that cannot be written is an operator's problem.
        let status = ctx.call(|a, _| a.krl_status()).await?;
        let _ = write!(text, "krl      version {}", status.version);
        match status.path {
            None => {}
            Some((path, None)) => {
                let _ = write!(text, "; krl_path {} written", path.display());
            }
            Some((path, Some(failing))) => {
                let _ = write!(
                    text,
                    "; krl_path {} NOT WRITTEN since {} ({} attempts): {}",
                    path.display(),
                    failing
                        .since
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    failing.attempts,
                    crate::render::clean(&failing.error)
                );
            }
        }
        let _ = writeln!(text);
    }
    ctx.out.stdout(text).await;
    Ok(())
}
