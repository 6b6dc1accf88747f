//! `mfa enroll|confirm|status|reset`: the caller's second factor (a TOTP authenticator app),
//! and an operator's reset of someone else's. One file each under `mfa/`.

mod confirm;
mod enroll;
mod reset;
mod status;

use super::ctx::{Ctx, Failure, Outcome};

const USAGE: &str = "mfa enroll | mfa confirm CODE | mfa status | mfa reset USER";

/// The subcommand asked for, checked.
#[derive(Debug)]
pub(super) enum Args {
    Enroll,
    Confirm { code: String },
    Status,
    Reset { user: String },
}

/// The subcommand and its grammar, and a reset's user name.
pub(super) fn parse(args: &[String]) -> Result<Args, Failure> {
    let Some((sub, rest)) = args.split_first() else {
        return Err(Failure::Usage(format!(
            "mfa needs a subcommand; usage: {USAGE}"
        )));
    };
    match sub.as_str() {
        "enroll" => enroll::parse(rest).map(|()| Args::Enroll),
        "confirm" => confirm::parse(rest).map(|code| Args::Confirm { code }),
        "status" => status::parse(rest).map(|()| Args::Status),
        "reset" => reset::parse(rest).map(|user| Args::Reset { user }),
        other => Err(Failure::Usage(format!(
            "unknown mfa subcommand {}; usage: {USAGE}",
            crate::args::shown(other)
        ))),
    }
}

pub(super) async fn run(ctx: &mut Ctx, args: Args) -> Outcome {
    match args {
        Args::Enroll => enroll::run(ctx).await,
        Args::Confirm { code } => confirm::run(ctx, code).await,
        Args::Status => status::run(ctx).await,
        Args::Reset { user } => reset::run(ctx, user).await,
    }
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
