//! One file per command: its grammar (`SPEC`) and what it does (`run`).

mod approve;
mod audit;
mod ca_key;
mod deny;
mod done;
mod get;
mod help;
mod krl;
mod list;
mod request;
mod revoke;
mod show;
mod watch;
mod whoami;

use std::sync::Arc;

use jitca_authority::{Authority, AuthorityError, Caller};

use crate::args::shown;
use crate::channel::{Output, Stdin};

/// Longest command line accepted; far more than any real command needs.
const MAX_COMMAND_LINE: usize = 8 * 1024;

/// What a command runs with.
pub(crate) struct Ctx {
    pub authority: Arc<Authority>,
    pub caller: Caller,
    pub out: Output,
    /// Taken by the command that reads it; the others leave it.
    pub stdin: Option<Stdin>,
    /// `ssh -p PORT jitca@HOST`, for messages that tell what to run next.
    pub hint: Arc<str>,
}

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Refused or bad input: exit 1.
    Refused(String),
    /// The command line does not fit the grammar: exit 2.
    Usage(String),
}

impl From<AuthorityError> for Failure {
    fn from(e: AuthorityError) -> Self {
        if matches!(
            e,
            AuthorityError::Store(_) | AuthorityError::Signer(_) | AuthorityError::AuditLog(_)
        ) {
            tracing::error!(error = %e, "operation failed");
        }
        Failure::Refused(e.to_string())
    }
}

pub(crate) type Outcome = Result<(), Failure>;

impl Ctx {
    /// Runs an authority operation on a blocking thread: it finishes even if the client leaves.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Authority, &Caller) -> Result<T, AuthorityError> + Send + 'static,
    ) -> Result<T, Failure> {
        let authority = self.authority.clone();
        let caller = self.caller.clone();
        tokio::task::spawn_blocking(move || op(&authority, &caller))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "operation panicked");
                Failure::Refused("internal error; nothing was changed or issued".into())
            })?
            .map_err(Failure::from)
    }
}

/// Runs one command line; returns the exit status.
pub(crate) async fn dispatch(ctx: &mut Ctx, line: &[u8]) -> u32 {
    let outcome = run(ctx, line).await;
    let (status, message) = match outcome {
        Ok(()) => return 0,
        Err(Failure::Refused(m)) => (1, m),
        Err(Failure::Usage(m)) => (2, m),
    };
    tracing::info!(user = %ctx.caller.user, status, message = %message.escape_debug(), "command refused");
    let text = String::from_utf8_lossy(line).into_owned();
    let recorded = message.clone();
    if let Err(Failure::Refused(e)) = ctx
        .call(move |a, c| a.record_refusal(c, &text, &recorded))
        .await
    {
        tracing::error!(error = %e, "cannot record a refused command");
    }
    ctx.out.stderr(&format!("jitca: {message}")).await;
    status
}

async fn run(ctx: &mut Ctx, line: &[u8]) -> Outcome {
    if line.len() > MAX_COMMAND_LINE {
        return Err(Failure::Refused(format!(
            "the command line is longer than {MAX_COMMAND_LINE} bytes"
        )));
    }
    let text = std::str::from_utf8(line)
        .map_err(|_| Failure::Refused("the command line is not valid UTF-8".into()))?;
    let words = shlex::split(text).ok_or_else(|| {
        Failure::Usage("cannot split the command line (unbalanced quotes?)".into())
    })?;
    let Some((name, args)) = words.split_first() else {
        return Err(Failure::Usage("no command given; try `help`".into()));
    };
    match name.as_str() {
        "whoami" => whoami::run(ctx, args).await,
        "request" => request::run(ctx, args).await,
        "show" => show::run(ctx, args).await,
        "list" => list::run(ctx, args).await,
        "approve" => approve::run(ctx, args).await,
        "audit" => audit::run(ctx, args).await,
        "deny" => deny::run(ctx, args).await,
        "get" => get::run(ctx, args).await,
        "done" => done::run(ctx, args).await,
        "revoke" => revoke::run(ctx, args).await,
        "krl" => krl::run(ctx, args).await,
        "watch" => watch::run(ctx, args).await,
        "ca-key" => ca_key::run(ctx, args).await,
        "help" | "--help" => help::run(ctx, args).await,
        other => Err(Failure::Usage(format!(
            "unknown command {}; try `help`",
            shown(other)
        ))),
    }
}

/// Parses `args` with `spec`, turning a grammar error into a usage failure.
pub(crate) fn parse(
    spec: &crate::args::Spec,
    args: &[String],
) -> Result<crate::args::Parsed, Failure> {
    spec.parse(args).map_err(Failure::Usage)
}
