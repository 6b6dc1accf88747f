use super::{Ctx, Outcome, parse};
use crate::args::Spec;

pub(super) const SPEC: Spec = Spec {
    usage: "done ID",
    positionals: &["ID"],
    options: &[],
    required: &[],
};

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let id = parse(&SPEC, args)?.positionals.remove(0);
    let request = ctx.call(move |a, c| a.done(c, &id)).await?;
    let serial = request.issuance().map_or(0, |i| i.serial);
    ctx.out
        .stderr(&format!(
            "request {}: access ended, certificate serial {serial} revoked; hosts refuse it at their next KRL refresh (open sessions end then too)",
            request.id
        ))
        .await;
    Ok(())
}
