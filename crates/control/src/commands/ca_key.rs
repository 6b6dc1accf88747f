use super::{Ctx, Outcome, parse};
use crate::args::Spec;

pub(super) const SPEC: Spec = Spec {
    usage: "ca-key",
    positionals: &[],
    options: &[],
    required: &[],
};

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    parse(&SPEC, args)?;
    let line = format!("{}\n", ctx.authority.ca_public_key());
    ctx.out.stdout(line).await;
    Ok(())
}
