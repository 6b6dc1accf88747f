//! The control channel: jitca's SSH server.
//!
//! The caller's SSH key is their identity (public-key authentication only; the login name is
//! ignored). Each session channel runs one command from `ssh ... jitca@CA COMMAND ARGS`: the
//! command line is split as a shell would, parsed once into a typed command by the command's own
//! file under `commands/`, and carried out through the [`Authority`](jitca_authority::Authority),
//! which alone answers what the policy in force allows. Exit status 0 on
//! success, 1 on a refusal (one line on stderr says why), 2 on a usage error. Shells, ptys,
//! subsystems and forwarding are refused.

mod args;
mod channel;
mod commands;
mod gate;
mod handler;
mod io;
pub mod limits;
mod quickack;
pub mod render;
mod server;

pub use commands::{CheckedCommand, CommandRefusal, NAMES as COMMAND_NAMES};
pub use server::{ServerOptions, serve};

/// Checks one command line exactly as the daemon does before it runs the command: the size
/// limit, UTF-8, the shell-like split, the command's name, its grammar, and every typed value
/// (hosts, logins, duration, reason, audit filters) through the same validators, with the same
/// refusals (exit status and message). Nothing is read from stdin and nothing is stored. The
/// daemon runs this same code; it is public for the fuzz targets in `fuzz/` and for tests.
pub fn check_command_line(line: &[u8]) -> Result<CheckedCommand, CommandRefusal> {
    commands::check(line)
}
