//! End-to-end tests: the real `jitca` binary, the real OpenSSH client, real `sshd`s.
//! `scripts/test` runs them as root with openssh-server installed.

mod audit;
mod cli;
mod harness;
mod lifecycle;
mod login;
mod refusals;
mod revocation;
