use crate::args::Spec;
use crate::commands::ctx::{Ctx, Failure, Outcome, sole_positional};

const SPEC: Spec = Spec {
    usage: "mfa confirm CODE",
    positionals: &["CODE"],
    options: &[],
    required: &[],
};

/// The code, as typed: the authority checks it.
pub(super) fn parse(args: &[String]) -> Result<String, Failure> {
    sole_positional(&SPEC, args)
}

pub(super) async fn run(ctx: &mut Ctx, code: String) -> Outcome {
    ctx.call(move |a, c| a.mfa_confirm(c, &code)).await?;
    ctx.out
        .stderr(
            "second factor confirmed: from your next connection on, ssh asks for a one-time \
             code (leave it empty when the command needs none)",
        )
        .await;
    Ok(())
}
