use jitca_authority::ListFilter;

use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::{Kind, Spec};
use crate::render;

const SPEC: Spec = Spec {
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

/// What `list` was asked, checked.
#[derive(Debug)]
pub(super) struct Args {
    filter: ListFilter,
    json: bool,
}

pub(super) fn parse(args: &[String]) -> Result<Args, Failure> {
    let parsed = grammar(&SPEC, args)?;
    Ok(Args {
        filter: ListFilter {
            pending_only: parsed.flag("--pending"),
            mine_only: parsed.flag("--mine"),
            unreviewed: parsed.flag("--unreviewed"),
            unused: parsed.flag("--unused"),
        },
        json: parsed.flag("--json"),
    })
}

pub(super) async fn run(ctx: &mut Ctx, Args { filter, json }: Args) -> Outcome {
    let requests = ctx.call(move |a, c| a.list(c, filter)).await?;
    let now = chrono::Utc::now();
    let text = if json {
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
