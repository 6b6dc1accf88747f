use super::{Ctx, Outcome, parse};
use crate::args::Spec;

pub(super) const SPEC: Spec = Spec {
    usage: "approve ID",
    positionals: &["ID"],
    options: &[],
    required: &[],
};

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let id = parse(&SPEC, args)?.positionals.remove(0);
    let request = ctx.call(move |a, c| a.approve(c, &id)).await?;
    let message = match request.issuance() {
        Some(i) => format!(
            "approved request {}: certificate serial {} issued to {}",
            request.id, i.serial, request.requester
        ),
        None => format!(
            "approved request {} ({}/{} approvals)",
            request.id,
            request.approvals.len(),
            request.approvals_needed
        ),
    };
    ctx.out.stderr(&message).await;
    Ok(())
}
