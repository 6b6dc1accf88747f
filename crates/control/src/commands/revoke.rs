use super::{Ctx, Failure, Outcome, id_and_reason};
use crate::args::{Kind, Spec};

const SPEC: Spec = Spec {
    usage: "revoke ID --reason TEXT",
    positionals: &["ID"],
    options: &[("--reason", Kind::Words)],
    required: &["--reason"],
};

/// The grammar and the reason, checked: the id and the trimmed reason.
pub(super) fn check(args: &[String]) -> Result<(String, String), Failure> {
    id_and_reason(&SPEC, args)
}

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let (id, reason) = check(args)?;
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
