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
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file to validate.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}
