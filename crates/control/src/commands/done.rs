use super::ctx::{Ctx, Failure, Outcome, sole_positional};
use crate::args::Spec;

const SPEC: Spec = Spec {
    usage: "done ID",
    positionals: &["ID"],
    options: &[],
    required: &[],
};

/// The request's id.
pub(super) fn parse(args: &[String]) -> Result<String, Failure> {
    sole_positional(&SPEC, args)
}

pub(super) async fn run(ctx: &mut Ctx, id: String) -> Outcome {
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
