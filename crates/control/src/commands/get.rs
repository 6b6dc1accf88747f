use super::ctx::{Ctx, Failure, Outcome, sole_positional};
use crate::args::Spec;

const SPEC: Spec = Spec {
    usage: "get ID",
    positionals: &["ID"],
    options: &[],
    required: &[],
};

/// The request's id.
pub(super) fn parse(args: &[String]) -> Result<String, Failure> {
    sole_positional(&SPEC, args)
}

pub(super) async fn run(ctx: &mut Ctx, id: String) -> Outcome {
    let certificate = ctx.call(move |a, c| a.certificate(c, &id)).await?;
    ctx.out.stdout(format!("{certificate}\n")).await;
    Ok(())
}
