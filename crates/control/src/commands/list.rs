use jitca_authority::ListFilter;

use super::{Ctx, Outcome, parse};
use crate::args::{Kind, Spec};
use crate::render;

pub(super) const SPEC: Spec = Spec {
    usage: "list [--pending] [--mine] [--json]",
    positionals: &[],
    options: &[
        ("--pending", Kind::Flag),
        ("--mine", Kind::Flag),
        ("--json", Kind::Flag),
    ],
    required: &[],
};

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let parsed = parse(&SPEC, args)?;
    let filter = ListFilter {
        pending_only: parsed.flag("--pending"),
        mine_only: parsed.flag("--mine"),
    };
    let requests = ctx.call(move |a, c| a.list(c, filter)).await?;
    let now = chrono::Utc::now();
    let text = if parsed.flag("--json") {
        requests
            .iter()
            .map(|r| format!("{}\n", render::request_json(r, now)))
            .collect()
    } else if requests.is_empty() {
        ctx.out.stderr("no requests").await;
        String::new()
    } else {
        render::table(&requests, now)
    };
    ctx.out.stdout(text).await;
    Ok(())
}
