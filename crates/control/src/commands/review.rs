//! `review`: the post-access review of an ended grant (approvers of its rule, auditors).

use jitca_authority::ReviewOutcome;
use jitca_authority::governance::MAX_NOTE;

use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::{Kind, Spec};

const SPEC: Spec = Spec {
    usage: "review ID --outcome ok|concern --note TEXT",
    positionals: &["ID"],
    options: &[("--outcome", Kind::Value), ("--note", Kind::Words)],
    required: &["--outcome", "--note"],
};

/// What `review` was asked, checked.
#[derive(Debug)]
pub(super) struct Args {
    id: String,
    outcome: ReviewOutcome,
    /// Checked like a request's reason, trimmed, at most [`MAX_NOTE`] characters.
    pub(super) note: String,
}

/// The grammar, the outcome and the note, checked.
pub(super) fn parse(args: &[String]) -> Result<Args, Failure> {
    let mut parsed = grammar(&SPEC, args)?;
    let outcome = match parsed.value("--outcome").unwrap_or_default() {
        "ok" => ReviewOutcome::Ok,
        "concern" => ReviewOutcome::Concern,
        other => {
            return Err(Failure::Refused(format!(
                "--outcome is {}; write ok or concern",
                crate::args::shown(other)
            )));
        }
    };
    let note = jitca_policy::check_reason(parsed.value("--note").unwrap_or_default())
        .map_err(|e| Failure::Refused(e.to_string().replace("reason", "note")))?;
    if note.chars().count() > MAX_NOTE {
        return Err(Failure::Refused(format!(
            "the note is longer than {MAX_NOTE} characters"
        )));
    }
    Ok(Args {
        id: parsed.positionals.remove(0),
        outcome,
        note,
    })
}

pub(super) async fn run(ctx: &mut Ctx, Args { id, outcome, note }: Args) -> Outcome {
    let request = ctx
        .call(move |a, c| a.review(c, &id, outcome, &note))
        .await?;
    ctx.out
        .stderr(&format!(
            "reviewed request {}: {}",
            request.id,
            outcome.as_str()
        ))
        .await;
    Ok(())
}
