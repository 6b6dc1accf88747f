use super::{Ctx, Outcome, parse};
use crate::args::Spec;

pub(super) const SPEC: Spec = Spec {
    usage: "get ID",
    positionals: &["ID"],
    options: &[],
    required: &[],
};

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let id = parse(&SPEC, args)?.positionals.remove(0);
    let certificate = ctx.call(move |a, c| a.certificate(c, &id)).await?;
    ctx.out.stdout(format!("{certificate}\n")).await;
    Ok(())
}
