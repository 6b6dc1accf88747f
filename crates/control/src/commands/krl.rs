use super::{Ctx, Outcome, parse};
use crate::args::Spec;

pub(super) const SPEC: Spec = Spec {
    usage: "krl > FILE",
    positionals: &[],
    options: &[],
    required: &[],
};

/// The current KRL, binary, on stdout: what hosts point `RevokedKeys` at.
pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    parse(&SPEC, args)?;
    let krl = ctx.call(|a, _| a.krl()).await?;
    ctx.out.stdout(krl).await;
    Ok(())
}
