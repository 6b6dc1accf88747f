//! The control channel: jitca's SSH server.
//!
//! The caller's SSH key is their identity (public-key authentication only; the login name is
//! ignored). Each session channel runs one command from `ssh ... jitca@CA COMMAND ARGS`: the
//! command line is split as a shell would, parsed by the command's own file under `commands/`,
//! and carried out through the [`Authority`](jitca_authority::Authority). Exit status 0 on
//! success, 1 on a refusal (one line on stderr says why), 2 on a usage error. Shells, ptys,
//! subsystems and forwarding are refused.

mod args;
mod channel;
mod commands;
mod handler;
pub mod render;
mod server;

pub use server::{ServerOptions, serve};
