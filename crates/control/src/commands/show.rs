use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::{Kind, Spec};
use crate::render;

const SPEC: Spec = Spec {
    usage: "show ID [--json]",
    positionals: &["ID"],
    options: &[("--json", Kind::Flag)],
    required: &[],
};

/// What `show` was asked, checked.
#[derive(Debug)]
pub(super) struct Args {
    id: String,
    json: bool,
}

pub(super) fn parse(args: &[String]) -> Result<Args, Failure> {
    let mut parsed = grammar(&SPEC, args)?;
    Ok(Args {
        json: parsed.flag("--json"),
        id: parsed.positionals.remove(0),
    })
}

pub(super) async fn run(ctx: &mut Ctx, Args { id, json }: Args) -> Outcome {
    let request = ctx.call(move |a, c| a.show(c, &id)).await?;
    let now = chrono::Utc::now();
    let text = if json {
        format!("{}\n", render::request_json(&request, now))
    } else {
        let eligible = ctx.authority.eligible_approvers(&request);
        render::request_block(&request, now, &eligible)
    };
    ctx.out.stdout(text).await;
    Ok(())
}
