use super::{Ctx, Outcome, parse};
use crate::args::{Kind, Spec};
use crate::render;

pub(super) const SPEC: Spec = Spec {
    usage: "show ID [--json]",
    positionals: &["ID"],
    options: &[("--json", Kind::Flag)],
    required: &[],
};

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let mut parsed = parse(&SPEC, args)?;
    let id = parsed.positionals.remove(0);
    let request = ctx.call(move |a, c| a.show(c, &id)).await?;
    let now = chrono::Utc::now();
    let text = if parsed.flag("--json") {
        format!("{}\n", render::request_json(&request, now))
    } else {
        let eligible = ctx
            .authority
            .policy()
            .eligible_approvers(&request.requester, &jitca_authority::grant_of(&request));
        render::request_block(&request, now, &eligible)
    };
    ctx.out.stdout(text).await;
    Ok(())
}
