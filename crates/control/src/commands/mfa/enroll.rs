use crate::args::Spec;
use crate::commands::ctx::{Ctx, Failure, Outcome, grammar};

const SPEC: Spec = Spec {
    usage: "mfa enroll",
    positionals: &[],
    options: &[],
    required: &[],
};

/// No arguments.
pub(super) fn parse(args: &[String]) -> Result<(), Failure> {
    grammar(&SPEC, args).map(drop)
}

pub(super) async fn run(ctx: &mut Ctx) -> Outcome {
    let enrolment = ctx.call(|a, c| a.mfa_enroll(c)).await?;
    if enrolment.replaced {
        ctx.out
            .stderr("your earlier unconfirmed enrolment is replaced by this one")
            .await;
    }
    ctx.out
        .stderr(&format!(
            "scan this otpauth:// URI (stdout) with an authenticator app, or type the secret \
             {} into it (TOTP, SHA-1, 6 digits, 30 s);\n\
             then confirm with the code it shows: {} mfa confirm CODE\n\
             Until confirmed, no code is asked. Keep the URI secret: it holds the secret.",
            enrolment.secret.as_str(),
            ctx.hint
        ))
        .await;
    ctx.out
        .stdout(format!("{}\n", enrolment.uri.as_str()))
        .await;
    Ok(())
}
