//! End-to-end tests: the real `jitca` binary, the real OpenSSH client, real `sshd`s.
//! `scripts/test` runs them as root with openssh-server installed.

mod audit;
mod bench_smoke;
mod ca_key;
mod cli;
mod evidence;
mod faults;
mod first_run;
mod governance;
mod ha;
mod hardening;
mod harness;
mod host_setup;
mod lifecycle;
mod login;
mod mfa;
mod offboarding;
mod operable;
mod package;
mod quickstart;
mod refusals;
mod revocation;
mod russh_client;
mod sessions;
