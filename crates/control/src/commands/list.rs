use jitca_authority::ListFilter;

use super::{Ctx, Outcome, parse};
use crate::args::{Kind, Spec};
use crate::render;

pub(super) const SPEC: Spec = Spec {
    usage: "list [--pending] [--mine] [--unreviewed] [--unused] [--json]",
    positionals: &[],
    options: &[
        ("--pending", Kind::Flag),
        ("--mine", Kind::Flag),
        ("--unreviewed", Kind::Flag),
        ("--unused", Kind::Flag),
        ("--json", Kind::Flag),
    ],
    required: &[],
};

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let parsed = parse(&SPEC, args)?;
    let filter = ListFilter {
        pending_only: parsed.flag("--pending"),
        mine_only: parsed.flag("--mine"),
        unreviewed: parsed.flag("--unreviewed"),
        unused: parsed.flag("--unused"),
    };
    let requests = ctx.call(move |a, c| a.list(c, filter)).await?;
    let now = chrono::Utc::now();
    let text = if parsed.flag("--json") {
        requests
            .iter()
            .map(|r| format!("{}\n", render::request_json(r, now)))
            .collect()
    } else if requests.is_empty() {
        ctx.out
            .stderr(if filter.unreviewed {
                "no ended grant awaits a review"
            } else if filter.unused {
                "no grant is unused"
            } else {
                "no requests"
            })
            .await;
        String::new()
    } else {
        render::table(&requests, now)
    };
    ctx.out.stdout(text).await;
    Ok(())
}
