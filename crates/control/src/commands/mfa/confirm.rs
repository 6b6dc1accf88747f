use super::super::{Ctx, Outcome, parse};
use crate::args::Spec;

pub(super) const SPEC: Spec = Spec {
    usage: "mfa confirm CODE",
    positionals: &["CODE"],
    options: &[],
    required: &[],
};

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let code = parse(&SPEC, args)?.positionals.remove(0);
    ctx.call(move |a, c| a.mfa_confirm(c, &code)).await?;
    ctx.out
        .stderr(
            "second factor confirmed: from your next connection on, ssh asks for a one-time \
             code (leave it empty when the command needs none)",
        )
        .await;
    Ok(())
}
