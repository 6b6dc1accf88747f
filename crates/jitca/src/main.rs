//! `jitca`: an SSH certificate authority for temporary, approved production access.
//!
//! This binary holds the command line (clap), config loading and logging; the daemon itself is
//! assembled in `serve.rs` from the workspace crates: `jitca-policy` decides, `jitca-store`
//! remembers, `jitca-signer` signs, `jitca-authority` runs the request lifecycle and
//! `jitca-control` is the SSH server users talk to.

mod alerts;
mod audit;
mod cli;
mod config;
mod dev;
mod generate;
mod host_setup;
mod init;
mod login;
mod report;
mod serve;
mod store;
mod systemd;
mod usage;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Init(args) if args.audit_key_only => init::audit_key_only(&args.dir),
        Command::Init(args) => init::run(&args.dir),
        Command::Check(args) => return check(&args.config),
        Command::Audit(args) => audit::run(args),
        Command::Report(args) => report::run(args),
        Command::Login(args) => login::run(args),
        Command::HostSetup(args) => host_setup::run(args),
        Command::Usage(args) => usage::run(args),
        Command::Store(args) => store::run(args),
        Command::Completions(args) => generate::completions(args.shell),
        Command::Man(args) => generate::man(args.dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jitca: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Like `sshd -t`: exit 0 for a good config, or 1 naming the file, line and problem.
fn check(path: &std::path::Path) -> ExitCode {
    let config = config::load(path).and_then(|config| {
        config.check_key_files()?;
        let store_warnings = config.check_store()?;
        Ok((config, store_warnings))
    });
    match config {
        Ok((config, store_warnings)) => {
            // Allowed but worth a look (a group nobody is in): on stderr, exit status 0.
            for warning in config.warnings.iter().chain(&store_warnings) {
                eprintln!("{warning}");
            }
            println!(
                "{}: OK ({}, {})",
                path.display(),
                count(config.policy.users().count(), "user"),
                count(config.policy.rules().len(), "rule")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(1)
        }
    }
}

/// "1 rule", "2 rules", "0 rules".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
