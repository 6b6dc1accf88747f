use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::Spec;

const SPEC: Spec = Spec {
    usage: "krl > FILE",
    positionals: &[],
    options: &[],
    required: &[],
};

/// No arguments.
pub(super) fn parse(args: &[String]) -> Result<(), Failure> {
    grammar(&SPEC, args).map(drop)
}

/// The current KRL, binary, on stdout: what hosts point `RevokedKeys` at.
pub(super) async fn run(ctx: &mut Ctx) -> Outcome {
    let krl = ctx.call(|a, _| a.krl()).await?;
    ctx.out.stdout(krl).await;
    Ok(())
}
