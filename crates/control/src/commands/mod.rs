//! One file per command: its grammar (`SPEC`), its arguments typed and checked (`parse`), and
//! what it does (`run`). Here: the one table of command names, the one function that turns a
//! command line into a [`Command`], and [`dispatch`], which matches on it. The daemon and the
//! public check ([`crate::check_command_line`]) run the same [`parse`], so what the fuzz target
//! checks is what the daemon does.

mod approve;
mod audit;
mod ca_key;
mod ctx;
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

pub(crate) use ctx::Ctx;
use ctx::{Failure, IdAndReason, Outcome};

use crate::args::shown;

/// Longest command line accepted; far more than any real command needs.
const MAX_COMMAND_LINE: usize = 8 * 1024;

/// A command line's command, its arguments typed and checked: what [`dispatch`] runs.
#[derive(Debug)]
enum Command {
    Whoami,
    Request(request::Args),
    Show(show::Args),
    List(list::Args),
    Approve {
        id: String,
    },
    Watch {
        json: bool,
    },
    Deny(IdAndReason),
    Get {
        id: String,
    },
    Done {
        id: String,
    },
    Revoke(IdAndReason),
    Review(review::Args),
    /// `usage --sshd-log -`: the log comes on stdin.
    Usage,
    Krl,
    Status {
        serials: Vec<u64>,
    },
    CaKey,
    Audit(audit::Args),
    Report(report::Args),
    Mfa(mfa::Args),
    Help,
}

/// How the words after a command's name become a [`Command`].
type Parser = fn(&[String]) -> Result<Command, Failure>;

/// Every command the daemon knows: its name as typed, and how its arguments parse. The one
/// list of names ([`NAMES`]), in `help`'s order.
const TABLE: &[(&str, Parser)] = &[
    ("whoami", |a| whoami::parse(a).map(|()| Command::Whoami)),
    ("request", |a| request::parse(a).map(Command::Request)),
    ("show", |a| show::parse(a).map(Command::Show)),
    ("list", |a| list::parse(a).map(Command::List)),
    ("approve", |a| {
        approve::parse(a).map(|id| Command::Approve { id })
    }),
    ("watch", |a| {
        watch::parse(a).map(|json| Command::Watch { json })
    }),
    ("deny", |a| deny::parse(a).map(Command::Deny)),
    ("get", |a| get::parse(a).map(|id| Command::Get { id })),
    ("done", |a| done::parse(a).map(|id| Command::Done { id })),
    ("revoke", |a| revoke::parse(a).map(Command::Revoke)),
    ("review", |a| review::parse(a).map(Command::Review)),
    ("usage", |a| usage::parse(a).map(|()| Command::Usage)),
    ("krl", |a| krl::parse(a).map(|()| Command::Krl)),
    ("status", |a| {
        status::parse(a).map(|serials| Command::Status { serials })
    }),
    ("ca-key", |a| ca_key::parse(a).map(|()| Command::CaKey)),
    ("audit", |a| audit::parse(a).map(Command::Audit)),
    ("report", |a| report::parse(a).map(Command::Report)),
    ("mfa", |a| mfa::parse(a).map(Command::Mfa)),
    // `help` takes no grammar: whatever follows it, the whole text is the answer.
    ("help", |_| Ok(Command::Help)),
    ("--help", |_| Ok(Command::Help)),
];

/// The name of every command the daemon knows, `--help` included, in `help`'s order.
pub const NAMES: [&str; TABLE.len()] = {
    let mut names = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        names[i] = TABLE[i].0;
        i += 1;
    }
    names
};

/// A command line, parsed.
#[derive(Debug)]
struct Line {
    /// The command's name, as typed (one of [`NAMES`]).
    name: &'static str,
    /// The words after it, split as a shell would.
    args: Vec<String>,
    command: Command,
}

/// The one parse of a command line, before the command reads stdin or asks the authority
/// anything: the size limit, UTF-8, the shell-like split, the command's name, its grammar, and
/// every typed value through its validator. A refusal is the one the daemon gives.
fn parse(line: &[u8]) -> Result<Line, Failure> {
    let (typed, args) = split(line)?;
    let Some(&(name, parse_args)) = TABLE.iter().find(|(name, _)| *name == typed) else {
        return Err(Failure::Usage(format!(
            "unknown command {}; try `help`",
            shown(&typed)
        )));
    };
    let command = parse_args(&args)?;
    Ok(Line {
        name,
        args,
        command,
    })
}

/// Runs one command line; returns the exit status.
pub(crate) async fn dispatch(ctx: &mut Ctx, line: &[u8]) -> u32 {
    let outcome = run(ctx, line).await;
    let (status, message, store_down) = match outcome {
        Ok(()) => return 0,
        Err(Failure::Refused(m)) => (1, m, false),
        Err(Failure::Usage(m)) => (2, m, false),
        Err(Failure::Unavailable(m)) => (1, m, true),
    };
    tracing::info!(user = %ctx.caller.user, status, message = %message.escape_debug(), "command refused");
    let text = mfa::recorded_line(String::from_utf8_lossy(line).into_owned());
    let recorded = message.clone();
    if store_down {
        // Tried, but not waited for: the store that just failed holds the audit log too, and
        // the refusal must reach the user within the store's time-out, not twice that.
        let (authority, caller) = (ctx.authority.clone(), ctx.caller.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = authority.record_refusal(&caller, &text, &recorded) {
                tracing::error!(error = %e, "cannot record a refused command");
            }
        });
    } else if let Err(Failure::Refused(e) | Failure::Unavailable(e)) = ctx
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
    match parse(line)?.command {
        Command::Whoami => whoami::run(ctx).await,
        Command::Request(args) => request::run(ctx, args).await,
        Command::Show(args) => show::run(ctx, args).await,
        Command::List(args) => list::run(ctx, args).await,
        Command::Approve { id } => approve::run(ctx, id).await,
        Command::Watch { json } => watch::run(ctx, json).await,
        Command::Deny(args) => deny::run(ctx, args).await,
        Command::Get { id } => get::run(ctx, id).await,
        Command::Done { id } => done::run(ctx, id).await,
        Command::Revoke(args) => revoke::run(ctx, args).await,
        Command::Review(args) => review::run(ctx, args).await,
        Command::Usage => usage::run(ctx).await,
        Command::Krl => krl::run(ctx).await,
        Command::Status { serials } => status::run(ctx, serials).await,
        Command::CaKey => ca_key::run(ctx).await,
        Command::Audit(args) => audit::run(ctx, args).await,
        Command::Report(args) => report::run(ctx, args).await,
        Command::Mfa(args) => mfa::run(ctx, args).await,
        Command::Help => help::run(ctx).await,
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

/// What a command line asks for, once checked as `dispatch` checks it before the command
/// does anything (reads stdin, calls the authority). See [`crate::check_command_line`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedCommand {
    /// The command's name, as typed (`request`, `audit`, ...): one of [`NAMES`].
    pub command: String,
    /// Its arguments, split as a shell would.
    pub args: Vec<String>,
    /// `request`: the hosts, checked, repeats dropped.
    pub hosts: Vec<String>,
    /// `request`: the logins, checked, repeats dropped.
    pub logins: Vec<String>,
    /// `request`: the duration asked for.
    pub duration: Option<std::time::Duration>,
    /// `request`, `deny`, `revoke`: the reason, checked and trimmed; `review`: the note.
    pub reason: Option<String>,
}

impl From<Line> for CheckedCommand {
    fn from(line: Line) -> Self {
        let mut checked = CheckedCommand {
            command: line.name.to_string(),
            args: line.args,
            ..CheckedCommand::default()
        };
        match line.command {
            Command::Request(request) => {
                checked.hosts = request.hosts;
                checked.logins = request.logins;
                checked.duration = Some(request.duration);
                checked.reason = Some(request.reason);
            }
            Command::Deny(args) | Command::Revoke(args) => checked.reason = Some(args.reason),
            Command::Review(args) => checked.reason = Some(args.note),
            // Listed, not matched by `_`: a new command carrying typed text must say here
            // whether the check API shows it.
            Command::Whoami
            | Command::Show(_)
            | Command::List(_)
            | Command::Approve { .. }
            | Command::Watch { .. }
            | Command::Get { .. }
            | Command::Done { .. }
            | Command::Usage
            | Command::Krl
            | Command::Status { .. }
            | Command::CaKey
            | Command::Audit(_)
            | Command::Report(_)
            | Command::Mfa(_)
            | Command::Help => {}
        }
        checked
    }
}

/// Why a command line was refused before anything ran: the exit status the daemon gives
/// (1 refused, 2 usage error) and the message it sends after `jitca: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRefusal {
    /// 1 refused, 2 usage error.
    pub status: u32,
    pub message: String,
}

impl std::fmt::Display for CommandRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}: {}", self.status, self.message)
    }
}

impl std::error::Error for CommandRefusal {}

/// [`parse`], for the public check: its refusal as the exit status and message the daemon
/// would give.
pub(crate) fn check(line: &[u8]) -> Result<CheckedCommand, CommandRefusal> {
    parse(line).map(CheckedCommand::from).map_err(|f| match f {
        Failure::Refused(message) | Failure::Unavailable(message) => {
            CommandRefusal { status: 1, message }
        }
        Failure::Usage(message) => CommandRefusal { status: 2, message },
    })
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
        // A reset's user name is checked before anything runs, as the daemon checks it.
        let bad_user = refusal("mfa reset ../alice");
        assert_eq!(bad_user.status, 1);
        assert!(bad_user.message.contains("name"), "{bad_user}");
    }

    /// The variant each name must parse to, written out apart from [`TABLE`] so that a table
    /// entry pointing at the wrong variant fails here.
    fn variant_name(command: &Command) -> &'static str {
        match command {
            Command::Whoami => "whoami",
            Command::Request(_) => "request",
            Command::Show(_) => "show",
            Command::List(_) => "list",
            Command::Approve { .. } => "approve",
            Command::Watch { .. } => "watch",
            Command::Deny(_) => "deny",
            Command::Get { .. } => "get",
            Command::Done { .. } => "done",
            Command::Revoke(_) => "revoke",
            Command::Review(_) => "review",
            Command::Usage => "usage",
            Command::Krl => "krl",
            Command::Status { .. } => "status",
            Command::CaKey => "ca-key",
            Command::Audit(_) => "audit",
            Command::Report(_) => "report",
            Command::Mfa(_) => "mfa",
            Command::Help => "help",
        }
    }

    #[test]
    fn every_name_parses_to_its_variant() {
        let lines = [
            "whoami",
            "request web1 --as deploy --for 1h --reason INC-1",
            "show r7k2m9x4ab",
            "list",
            "approve r7k2m9x4ab",
            "watch --json",
            "deny r7k2m9x4ab --reason no",
            "get r7k2m9x4ab",
            "done r7k2m9x4ab",
            "revoke r7k2m9x4ab --reason left",
            "review r7k2m9x4ab --outcome ok --note fine",
            "usage --sshd-log -",
            "krl",
            "status 7",
            "ca-key",
            "audit",
            "report",
            "mfa status",
            "help",
            "--help",
        ];
        let mut names: Vec<&str> = NAMES.to_vec();
        for line in lines {
            let parsed = parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            let typed = line.split(' ').next().unwrap();
            assert_eq!(parsed.name, typed);
            let expected = if typed == "--help" { "help" } else { typed };
            assert_eq!(variant_name(&parsed.command), expected, "{line}");
            names.retain(|n| *n != typed);
        }
        assert!(names.is_empty(), "names not tried: {names:?}");
        // One entry per name: a second would never be reached.
        let mut sorted = NAMES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), NAMES.len());
    }

    /// `help` documents every command the daemon knows, and no other.
    #[test]
    fn help_documents_exactly_the_commands() {
        // A command's entry starts two spaces in; continuation lines further, the example
        // after `HINT`.
        let documented: Vec<&str> = help::HELP
            .lines()
            .filter_map(|l| l.strip_prefix("  "))
            .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for name in NAMES.iter().filter(|n| **n != "--help") {
            assert!(documented.contains(name), "help does not document {name}");
        }
        for name in documented {
            assert!(NAMES.contains(&name), "help documents unknown {name}");
        }
    }
}
