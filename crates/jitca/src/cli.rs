//! The command line, as typed. Validated settings are built from it elsewhere.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "jitca",
    version,
    about = "SSH certificate authority for temporary, approved production access"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground, logging to stderr.
    Serve(ServeArgs),
    /// Create a CA key, a host key and a commented config in a new folder.
    Init(InitArgs),
    /// Validate a config file (exit 0), or name the file, line and problem (exit 1).
    Check(CheckArgs),
    /// Read the audit log offline, while the daemon is stopped (or `audit verify`).
    Audit(AuditArgs),
    /// The period's evidence offline (daemon stopped): grants, decisions, revocations,
    /// reviews, usage, rules and the chain's verification, as text, JSON or HTML.
    Report(ReportArgs),
    /// Ask for access with a fresh key pair; on approval load key and certificate into
    /// ssh-agent for exactly the certificate's lifetime (or write them with --out).
    Login(LoginArgs),
    /// Print what one host needs to trust jitca: a sh script to run as root there (or --format text).
    HostSetup(HostSetupArgs),
    /// Record which grants were used, from an sshd log (daemon stopped; while it runs, auditors
    /// send the log over the control channel: `ssh jitca usage --sshd-log - < FILE`).
    Usage(UsageArgs),
    /// Move a stopped daemon's sled store into an empty PostgreSQL database (`store copy`).
    Store(StoreArgs),
    /// Print a shell completion script for SHELL on stdout.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout, or write one page per command with --dir.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub action: StoreAction,
}

#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Copy every request, the serial counter and the audit chain (same hashes) of the sled
    /// store the config names into an empty database, then verify the copy. The daemon must
    /// be stopped; a password the database asks for is read from PGPASSWORD.
    Copy {
        /// The jitca config file of the sled store (its data_dir).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The database: postgres://USER@HOST:PORT/DB (?sslmode=verify-full for TLS).
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The hosts, comma-separated (web1,web2).
    #[arg(value_name = "HOSTS")]
    pub hosts: String,
    /// The login(s) on those hosts, comma-separated.
    #[arg(long = "as", value_name = "LOGIN")]
    pub login: String,
    /// How long: 90s, 15m, 2h, 1d; at most the rule's max_duration.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Why, for the approver and the audit log (quotes optional: it runs to the next option).
    #[arg(long, value_name = "TEXT", num_args = 1.., required = true)]
    pub reason: Vec<String>,
    /// The CA: HOST, HOST:PORT or [IPv6]:PORT (a Host alias from ~/.ssh/config works too).
    #[arg(long, value_name = "HOST:PORT", env = "JITCA_CA")]
    pub ca: String,
    /// Write the key to PATH and the certificate to PATH-cert.pub instead of loading them
    /// into ssh-agent.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// An option for the ssh that talks to the CA (like ssh -o), repeatable.
    #[arg(short = 'o', value_name = "OPTION")]
    pub ssh_options: Vec<String>,
    /// The identity ssh uses to authenticate to the CA (like ssh -i).
    #[arg(short = 'i', value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// The store's folder (the config's data_dir).
    #[arg(long, value_name = "DIR", required = true)]
    pub data: Option<PathBuf>,
    /// Records at or after T: RFC 3339, a date (2026-11-29), or a duration ago (2h).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Records before T.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Records whose actor or requester is USER.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Records naming HOST.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Records of the certificate with this serial.
    #[arg(long, value_name = "N")]
    pub serial: Option<u64>,
    /// Records of one request.
    #[arg(long, value_name = "ID")]
    pub request: Option<String>,
    /// One JSON object a line (the stored records, verbatim), for SIEM ingestion.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).multiple(true).args(["data", "config"])))]
pub struct ReportArgs {
    /// The store's folder (the config's data_dir); the rules are then unknown unless
    /// --config is given too.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The jitca config file: its data_dir and the rules in force.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// From T: RFC 3339, a date (2026-11-01), or a duration ago (30d).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Up to (not including) T.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// text, json or html (one self-contained file).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// The sshd log: syslog (auth.log, secure), journald/rsyslog ISO 8601, or `sshd -E`
    /// output; `-` reads stdin. sshd logs certificate logins at LogLevel INFO and VERBOSE.
    #[arg(long, value_name = "FILE")]
    pub sshd_log: PathBuf,
    /// The jitca config file (for the store's folder and the CA keys).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the hash chain end to end; exit 1 naming the first bad record.
    Verify {
        /// The store's folder (the config's data_dir).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Also check that the chain still holds this signed checkpoint (`audit checkpoint`
        /// output) at its count.
        #[arg(long, value_name = "FILE", requires = "key")]
        checkpoint: Option<PathBuf>,
        /// The audit public key that signed the checkpoint (`audit key` output, an
        /// audit_ed25519.pub, or an allowed-signers line): your own copy, not the CA host's.
        #[arg(long, value_name = "FILE", requires = "checkpoint")]
        key: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config", "dev"])))]
pub struct ServeArgs {
    /// The config file (YAML).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run the embedded default: keys, config and store in --dir, created if absent.
    #[arg(long)]
    pub dev: bool,
    /// Folder for --dev.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "jitca-dev",
        requires = "dev"
    )]
    pub dir: PathBuf,
    /// Listen here instead of the config's `listen` (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder to create the keys and config in.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Make only the audit signing key (audit_ed25519), for an existing set-up.
    #[arg(long)]
    pub audit_key_only: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file to validate.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct HostSetupArgs {
    /// The jitca config file (checked like `jitca check`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The host, as named in the config's host groups.
    #[arg(long, value_name = "NAME")]
    pub host: String,
    /// The host's sshd folder: where the CA key, principals, KRL and drop-in go.
    #[arg(long, value_name = "DIR", default_value = "/etc/ssh")]
    pub ssh_dir: PathBuf,
    /// The CA as the host reaches it (default: the config's listen address, or this
    /// machine's host name when it listens on every address).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub ca: Option<String>,
    /// Also trust the CA public key(s) in FILE, for a CA key rotation (repeatable).
    #[arg(long, value_name = "FILE")]
    pub extra_ca: Vec<PathBuf>,
    /// `script`: a sh script that writes the files; `text`: a plain listing of them.
    #[arg(long, value_enum, default_value = "script")]
    pub format: HostSetupFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostSetupFormat {
    Script,
    Text,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write jitca.1 and one page per command (jitca-serve.1, ...) into DIR instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}
