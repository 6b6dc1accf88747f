use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::Spec;

const SPEC: Spec = Spec {
    usage: "ca-key",
    positionals: &[],
    options: &[],
    required: &[],
};

/// No arguments.
pub(super) fn parse(args: &[String]) -> Result<(), Failure> {
    grammar(&SPEC, args).map(drop)
}

pub(super) async fn run(ctx: &mut Ctx) -> Outcome {
    let line = format!("{}\n", ctx.authority.ca_public_key());
    ctx.out.stdout(line).await;
    Ok(())
}
