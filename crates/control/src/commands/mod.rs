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
mod mfa;
mod report;
mod request;
mod review;
mod revoke;
mod show;
mod status;
mod usage;
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
    /// The key the connection authenticated with ([`Ctx::identify_again`]).
    pub key: russh::keys::PublicKey,
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
    /// Refuses unless the connection's key still identifies its caller under the policy in
    /// force: checked before every command, and by `watch` at every reload.
    pub(crate) fn identify_again(&self) -> Result<(), Failure> {
        self.authority
            .identify_again(&self.key, &self.caller.user)
            .map_err(Failure::from)
    }

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
    let text = mfa::recorded_line(String::from_utf8_lossy(line).into_owned());
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
    // Identity on every command: the config may have changed since the connection
    // authenticated (ssh multiplexing keeps one open for as long as it likes).
    ctx.identify_again()?;
    let (name, args) = split(line)?;
    let args = args.as_slice();
    match name.as_str() {
        "whoami" => whoami::run(ctx, args).await,
        "request" => request::run(ctx, args).await,
        "show" => show::run(ctx, args).await,
        "list" => list::run(ctx, args).await,
        "approve" => approve::run(ctx, args).await,
        "audit" => audit::run(ctx, args).await,
        "report" => report::run(ctx, args).await,
        "deny" => deny::run(ctx, args).await,
        "get" => get::run(ctx, args).await,
        "done" => done::run(ctx, args).await,
        "revoke" => revoke::run(ctx, args).await,
        "review" => review::run(ctx, args).await,
        "usage" => usage::run(ctx, args).await,
        "krl" => krl::run(ctx, args).await,
        "status" => status::run(ctx, args).await,
        "watch" => watch::run(ctx, args).await,
        "ca-key" => ca_key::run(ctx, args).await,
        "mfa" => mfa::run(ctx, args).await,
        "help" | "--help" => help::run(ctx, args).await,
        other => Err(unknown_command(other)),
    }
}

/// The size check, UTF-8 and the shell-like split: the command's name and its arguments.
fn split(line: &[u8]) -> Result<(String, Vec<String>), Failure> {
    if line.len() > MAX_COMMAND_LINE {
        return Err(Failure::Refused(format!(
            "the command line is longer than {MAX_COMMAND_LINE} bytes"
        )));
    }
    let text = std::str::from_utf8(line)
        .map_err(|_| Failure::Refused("the command line is not valid UTF-8".into()))?;
    let mut words = shlex::split(text).ok_or_else(|| {
        Failure::Usage("cannot split the command line (unbalanced quotes?)".into())
    })?;
    if words.is_empty() {
        return Err(Failure::Usage("no command given; try `help`".into()));
    }
    let name = words.remove(0);
    Ok((name, words))
}

fn unknown_command(name: &str) -> Failure {
    Failure::Usage(format!("unknown command {}; try `help`", shown(name)))
}

/// What a command line asks for, once checked as [`run`] checks it before the command does
/// anything (reads stdin, calls the authority). See [`crate::check_command_line`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedCommand {
    /// The command's name, as typed (`request`, `audit`, ...).
    pub command: String,
    /// Its arguments, split as a shell would.
    pub args: Vec<String>,
    /// `request`: the hosts, checked, repeats dropped.
    pub hosts: Vec<String>,
    /// `request`: the logins, checked, repeats dropped.
    pub logins: Vec<String>,
    /// `request`: the duration asked for.
    pub duration: Option<std::time::Duration>,
    /// `request`, `deny`, `revoke`: the reason, checked and trimmed.
    pub reason: Option<String>,
}

/// Why a command line was refused before anything ran: the exit status the daemon gives
/// (1 refused, 2 usage error) and the message it sends after `jitca: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRefusal {
    pub status: u32,
    pub message: String,
}

impl std::fmt::Display for CommandRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}: {}", self.status, self.message)
    }
}

impl std::error::Error for CommandRefusal {}

/// Everything [`run`] does with a command line before the command touches stdin or the
/// authority: the same functions, in the same order, with the same refusals.
pub(crate) fn check(line: &[u8]) -> Result<CheckedCommand, CommandRefusal> {
    check_inner(line).map_err(|f| match f {
        Failure::Refused(message) => CommandRefusal { status: 1, message },
        Failure::Usage(message) => CommandRefusal { status: 2, message },
    })
}

fn check_inner(line: &[u8]) -> Result<CheckedCommand, Failure> {
    let (command, args) = split(line)?;
    let mut checked = CheckedCommand::default();
    let grammar = |spec: &crate::args::Spec| parse(spec, &args).map(|_| ());
    match command.as_str() {
        "whoami" => grammar(&whoami::SPEC)?,
        "request" => {
            let typed = request::check(&args)?;
            checked.hosts = typed.hosts;
            checked.logins = typed.logins;
            checked.duration = Some(typed.duration);
            checked.reason = Some(typed.reason);
        }
        "show" => grammar(&show::SPEC)?,
        "list" => grammar(&list::SPEC)?,
        "approve" => grammar(&approve::SPEC)?,
        "audit" => {
            audit::check(&args)?;
        }
        "report" => {
            report::check(&args)?;
        }
        "deny" => checked.reason = Some(deny::check(&args)?.1),
        "get" => grammar(&get::SPEC)?,
        "done" => grammar(&done::SPEC)?,
        "revoke" => checked.reason = Some(revoke::check(&args)?.1),
        "review" => checked.reason = Some(review::check(&args)?.2),
        "usage" => usage::check(&args)?,
        "krl" => grammar(&krl::SPEC)?,
        "status" => {
            status::check(&args)?;
        }
        "watch" => grammar(&watch::SPEC)?,
        "ca-key" => grammar(&ca_key::SPEC)?,
        "mfa" => mfa::check(&args)?,
        "help" | "--help" => {}
        other => return Err(unknown_command(other)),
    }
    checked.command = command;
    checked.args = args;
    Ok(checked)
}

/// Parses `args` with `spec`, turning a grammar error into a usage failure.
pub(crate) fn parse(
    spec: &crate::args::Spec,
    args: &[String],
) -> Result<crate::args::Parsed, Failure> {
    spec.parse(args).map_err(Failure::Usage)
}

/// `COMMAND ID --reason TEXT`: the id, and the reason checked like a request's.
pub(crate) fn id_and_reason(
    spec: &crate::args::Spec,
    args: &[String],
) -> Result<(String, String), Failure> {
    let mut parsed = parse(spec, args)?;
    let reason = jitca_policy::check_reason(parsed.value("--reason").unwrap_or_default())
        .map_err(|e| Failure::Refused(e.to_string()))?;
    Ok((parsed.positionals.remove(0), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(line: &str) -> CommandRefusal {
        check(line.as_bytes()).unwrap_err()
    }

    #[test]
    fn check_gives_what_the_daemon_checks() {
        let ok = check(b"request web1,web2,web1 --as deploy --for 1h --reason INC-42 disk full")
            .unwrap();
        assert_eq!(ok.command, "request");
        assert_eq!(ok.hosts, ["web1", "web2"]);
        assert_eq!(ok.logins, ["deploy"]);
        assert_eq!(ok.duration, Some(std::time::Duration::from_secs(3600)));
        assert_eq!(ok.reason.as_deref(), Some("INC-42 disk full"));
        assert_eq!(
            check(b"deny r7k2m9x4ab --reason  freeze ")
                .unwrap()
                .reason
                .as_deref(),
            Some("freeze")
        );
        for line in [
            "whoami",
            "show x",
            "list --pending --json",
            "approve x",
            "audit --since 2h",
            "audit verify",
            "audit verify --checkpoint -",
            "audit key",
            "audit checkpoint",
            "report --since 7d --format html",
            "get x",
            "done x",
            "revoke x --reason r",
            "review x --outcome concern --note ran an unlisted command",
            "usage --sshd-log -",
            "list --unreviewed --unused",
            "request web1 --as deploy --for 1h --reason INC-1 --break-glass",
            "krl",
            "status 1 42",
            "watch",
            "ca-key",
            "mfa enroll",
            "mfa confirm 123456",
            "mfa status",
            "mfa reset alice",
            "help anything at all",
            "--help",
        ] {
            assert!(check(line.as_bytes()).is_ok(), "{line}");
        }
        let long = vec![b'a'; MAX_COMMAND_LINE + 1];
        assert_eq!(check(&long).unwrap_err().status, 1);
        assert_eq!(check(b"\xff").unwrap_err().status, 1);
        assert_eq!(refusal("request 'web1").status, 2);
        assert_eq!(refusal("").status, 2);
        assert_eq!(refusal("rm -rf /").status, 2);
        assert_eq!(refusal("show").status, 2);
        assert_eq!(refusal("status 1 x").status, 2);
        let bad_host = refusal("request web* --as deploy --for 1h --reason x");
        assert_eq!(bad_host.status, 1);
        assert!(bad_host.message.contains("'*'"), "{bad_host}");
        assert_eq!(refusal("audit --serial x").status, 1);
        assert_eq!(refusal("audit verify --checkpoint cp.txt").status, 1);
        assert_eq!(refusal("report --format pdf").status, 1);
        assert_eq!(refusal("report --since 1d --until 2d").status, 1);
        assert_eq!(refusal("revoke x --reason a\u{7}b").status, 1);
        assert_eq!(refusal("review x --outcome fine --note n").status, 1);
        assert_eq!(refusal("review x --outcome ok").status, 2);
        assert_eq!(refusal("usage --sshd-log /var/log/auth.log").status, 1);
    }
}
