use super::super::{Ctx, Failure, Outcome, parse};
use crate::args::Spec;

pub(super) const SPEC: Spec = Spec {
    usage: "mfa reset USER",
    positionals: &["USER"],
    options: &[],
    required: &[],
};

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let user = parse(&SPEC, args)?.positionals.remove(0);
    jitca_policy::check_name(&user).map_err(|e| Failure::Refused(e.to_string()))?;
    let target = user.clone();
    ctx.call(move |a, c| a.mfa_reset(c, &target)).await?;
    ctx.out
        .stderr(&format!(
            "{user}'s second factor is removed; they enrol again with mfa enroll"
        ))
        .await;
    Ok(())
}
