use super::ctx::{Ctx, Failure, IdAndReason, Outcome, id_and_reason};
use crate::args::{Kind, Spec};

const SPEC: Spec = Spec {
    usage: "deny ID --reason TEXT",
    positionals: &["ID"],
    options: &[("--reason", Kind::Words)],
    required: &["--reason"],
};

/// The grammar and the reason, checked: the id and the trimmed reason.
pub(super) fn parse(args: &[String]) -> Result<IdAndReason, Failure> {
    id_and_reason(&SPEC, args)
}

pub(super) async fn run(ctx: &mut Ctx, IdAndReason { id, reason }: IdAndReason) -> Outcome {
    let request = ctx.call(move |a, c| a.deny(c, &id, &reason)).await?;
    ctx.out
        .stderr(&format!("denied request {}", request.id))
        .await;
    Ok(())
}
