use jitca_policy::check_reason;

use super::{Ctx, Failure, Outcome, parse};
use crate::args::{Kind, Spec};

const SPEC: Spec = Spec {
    usage: "deny ID --reason TEXT",
    positionals: &["ID"],
    options: &[("--reason", Kind::Words)],
    required: &["--reason"],
};

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let mut parsed = parse(&SPEC, args)?;
    let reason = check_reason(parsed.value("--reason").unwrap_or_default())
        .map_err(|e| Failure::Refused(e.to_string()))?;
    let id = parsed.positionals.remove(0);
    let request = ctx.call(move |a, c| a.deny(c, &id, &reason)).await?;
    ctx.out
        .stderr(&format!("denied request {}", request.id))
        .await;
    Ok(())
}
