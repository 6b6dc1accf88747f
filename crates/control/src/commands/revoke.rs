use super::ctx::{Ctx, Failure, IdAndReason, Outcome, id_and_reason};
use crate::args::{Kind, Spec};

const SPEC: Spec = Spec {
    usage: "revoke ID --reason TEXT",
    positionals: &["ID"],
    options: &[("--reason", Kind::Words)],
    required: &["--reason"],
};

/// The grammar and the reason, checked: the id and the trimmed reason.
pub(super) fn parse(args: &[String]) -> Result<IdAndReason, Failure> {
    id_and_reason(&SPEC, args)
}

pub(super) async fn run(ctx: &mut Ctx, IdAndReason { id, reason }: IdAndReason) -> Outcome {
    let request = ctx.call(move |a, c| a.revoke(c, &id, &reason)).await?;
    let serial = request.issuance().map_or(0, |i| i.serial);
    ctx.out
        .stderr(&format!(
            "request {}: certificate serial {serial} revoked; hosts refuse it at their next KRL refresh (open sessions end then too)",
            request.id
        ))
        .await;
    Ok(())
}
