use super::ctx::{Ctx, Failure, Outcome, sole_positional};
use crate::args::Spec;

const SPEC: Spec = Spec {
    usage: "approve ID",
    positionals: &["ID"],
    options: &[],
    required: &[],
};

/// The request's id.
pub(super) fn parse(args: &[String]) -> Result<String, Failure> {
    sole_positional(&SPEC, args)
}

pub(super) async fn run(ctx: &mut Ctx, id: String) -> Outcome {
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
