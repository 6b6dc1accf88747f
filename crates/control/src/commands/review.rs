//! `review`: the post-access review of an ended grant (approvers of its rule, auditors).

use jitca_authority::ReviewOutcome;
use jitca_authority::governance::MAX_NOTE;

use super::{Ctx, Failure, Outcome, parse};
use crate::args::{Kind, Spec};

pub(super) const SPEC: Spec = Spec {
    usage: "review ID --outcome ok|concern --note TEXT",
    positionals: &["ID"],
    options: &[("--outcome", Kind::Value), ("--note", Kind::Words)],
    required: &["--outcome", "--note"],
};

/// The grammar, the outcome and the note, checked: the id, the outcome and the trimmed note.
pub(super) fn check(args: &[String]) -> Result<(String, ReviewOutcome, String), Failure> {
    let mut parsed = parse(&SPEC, args)?;
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
    Ok((parsed.positionals.remove(0), outcome, note))
}

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let (id, outcome, note) = check(args)?;
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
