//! `mfa enroll|confirm|status|reset`: the caller's second factor (a TOTP authenticator app),
//! and an operator's reset of someone else's. One file each under `mfa/`.

mod confirm;
mod enroll;
mod reset;
mod status;

use super::{Ctx, Failure, Outcome};

const USAGE: &str = "mfa enroll | mfa confirm CODE | mfa status | mfa reset USER";

fn subcommand(args: &[String]) -> Result<(&str, &[String]), Failure> {
    match args.split_first() {
        Some((sub, rest)) => Ok((sub.as_str(), rest)),
        None => Err(Failure::Usage(format!(
            "mfa needs a subcommand; usage: {USAGE}"
        ))),
    }
}

fn unknown(sub: &str) -> Failure {
    Failure::Usage(format!(
        "unknown mfa subcommand {}; usage: {USAGE}",
        crate::args::shown(sub)
    ))
}

pub(crate) async fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let (sub, rest) = subcommand(args)?;
    match sub {
        "enroll" => enroll::run(ctx, rest).await,
        "confirm" => confirm::run(ctx, rest).await,
        "status" => status::run(ctx, rest).await,
        "reset" => reset::run(ctx, rest).await,
        other => Err(unknown(other)),
    }
}

/// The grammar checks [`run`] makes before anything runs.
pub(crate) fn check(args: &[String]) -> Result<(), Failure> {
    let (sub, rest) = subcommand(args)?;
    let spec = match sub {
        "enroll" => &enroll::SPEC,
        "confirm" => &confirm::SPEC,
        "status" => &status::SPEC,
        "reset" => &reset::SPEC,
        other => return Err(unknown(other)),
    };
    super::parse(spec, rest).map(|_| ())
}

/// The command line as the audit log records a refusal of it: a code given to `mfa confirm`
/// is never recorded.
pub(crate) fn recorded_line(line: String) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() > 2 && words[0] == "mfa" && words[1] == "confirm" {
        return "mfa confirm [code not recorded]".into();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_code_is_never_recorded() {
        assert_eq!(
            recorded_line("mfa confirm 123456".into()),
            "mfa confirm [code not recorded]"
        );
        assert_eq!(recorded_line("mfa  confirm".into()), "mfa  confirm");
        assert_eq!(recorded_line("approve x".into()), "approve x");
    }
}
