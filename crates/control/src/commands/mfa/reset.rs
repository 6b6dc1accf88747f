use crate::args::Spec;
use crate::commands::ctx::{Ctx, Failure, Outcome, sole_positional};

const SPEC: Spec = Spec {
    usage: "mfa reset USER",
    positionals: &["USER"],
    options: &[],
    required: &[],
};

/// The user's name, checked as the config checks names.
pub(super) fn parse(args: &[String]) -> Result<String, Failure> {
    let user = sole_positional(&SPEC, args)?;
    jitca_policy::check_name(&user).map_err(|e| Failure::Refused(e.to_string()))?;
    Ok(user)
}

pub(super) async fn run(ctx: &mut Ctx, user: String) -> Outcome {
    let target = user.clone();
    ctx.call(move |a, c| a.mfa_reset(c, &target)).await?;
    ctx.out
        .stderr(&format!(
            "{user}'s second factor is removed; they enrol again with mfa enroll"
        ))
        .await;
    Ok(())
}
