//! `watch`: the requests the caller may approve, as they arrive and as they are decided, until
//! the connection closes. For an approver's terminal kept open, or a bot.

use std::collections::HashMap;

use jitca_authority::Request;
use tokio::sync::broadcast::error::RecvError;

use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::{Kind, Spec};
use crate::render;

const SPEC: Spec = Spec {
    usage: "watch [--json]",
    positionals: &[],
    options: &[("--json", Kind::Flag)],
    required: &[],
};

/// Whether the lines are JSON.
pub(super) fn parse(args: &[String]) -> Result<bool, Failure> {
    Ok(grammar(&SPEC, args)?.flag("--json"))
}

pub(super) async fn run(ctx: &mut Ctx, json: bool) -> Outcome {
    // Subscribe first: nothing that happens after the listing below is missed.
    let mut changes = ctx.authority.subscribe();
    let pending = ctx
        .call(|a, c| {
            Ok(a.list(
                c,
                jitca_authority::ListFilter {
                    pending_only: true,
                    ..Default::default()
                },
            )?
            .into_iter()
            .filter(|r| a.may_approve(c, r))
            .collect::<Vec<_>>())
        })
        .await?;
    let mut seen: HashMap<String, (&'static str, usize)> = HashMap::new();
    // Oldest first, as a stream reads.
    for request in pending.iter().rev() {
        emit(ctx, request, json, &mut seen).await;
    }
    ctx.out
        .stderr("watching requests you may approve; close the connection to stop")
        .await;
    let mut reloads = ctx.authority.policy_changes();
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            // A reload: the watch ends if it removed this person or key.
            Ok(()) = reloads.changed() => {
                ctx.identify_again()?;
                continue;
            }
        };
        match change {
            Ok(id) => {
                let found = ctx
                    .call(move |a, c| {
                        let Ok(request) = a.show(c, &id) else {
                            return Ok(None);
                        };
                        Ok(a.may_approve(c, &request).then_some(request))
                    })
                    .await?;
                if let Some(request) = found {
                    emit(ctx, &request, json, &mut seen).await;
                }
            }
            Err(RecvError::Lagged(missed)) => {
                ctx.out
                    .stderr(&format!(
                        "missed {missed} changes (too many at once); `list --pending` shows where things stand"
                    ))
                    .await;
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// One line for a change not shown yet: a new request, an approval, or its outcome.
async fn emit(
    ctx: &Ctx,
    request: &Request,
    json: bool,
    seen: &mut HashMap<String, (&'static str, usize)>,
) {
    let now = chrono::Utc::now();
    let state = request.state_name(now);
    let mark = (state, request.approvals.len());
    if seen.get(&request.id) == Some(&mark) {
        return;
    }
    seen.insert(request.id.clone(), mark);
    let line = if json {
        format!("{}\n", render::request_json(request, now))
    } else {
        render::watch_line(request, now)
    };
    ctx.out.stdout(line).await;
}
