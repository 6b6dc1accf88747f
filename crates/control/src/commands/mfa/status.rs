use jitca_authority::mfa::FactorState;

use crate::args::Spec;
use crate::commands::ctx::{Ctx, Failure, Outcome, grammar};

const SPEC: Spec = Spec {
    usage: "mfa status",
    positionals: &[],
    options: &[],
    required: &[],
};

/// No arguments.
pub(super) fn parse(args: &[String]) -> Result<(), Failure> {
    grammar(&SPEC, args).map(drop)
}

pub(super) async fn run(ctx: &mut Ctx) -> Outcome {
    let status = ctx.call(|a, c| a.mfa_status(c)).await?;
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let line = match status {
        None => "none".to_string(),
        Some(s) => match (s.state, s.confirmed_at) {
            (FactorState::Active, Some(at)) => format!("active since {}", time(at)),
            (FactorState::Active, None) => "active".to_string(),
            (FactorState::Unconfirmed, _) => format!(
                "unconfirmed (enrolled {}; confirm with mfa confirm CODE)",
                time(s.created_at)
            ),
        },
    };
    let verified = if ctx.caller.factor.verified() {
        "; this connection: code verified"
    } else {
        ""
    };
    ctx.out.stdout(format!("{line}{verified}\n")).await;
    Ok(())
}
