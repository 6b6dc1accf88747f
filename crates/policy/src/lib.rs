//! The policy of jitca: YAML in, a validated [`Policy`] and its decisions out.
//!
//! [`parse`] turns the policy sections of the config file (`users`, `hosts`, `rules`,
//! `auditors`, `operators`, `principal_format`) into a [`Policy`], or into every problem found,
//! each on its line; the [`Policy`] answers who a key belongs to, who may request which logins
//! on which hosts for how long, who may approve, and who may see what. [`document`] is the one
//! way of reading a config document and reporting a problem in it: the daemon's settings, the
//! CA key sources, the control channel's limits and the webhooks are read with it by the crates
//! that use them. The control channel also uses [`names`] to check every piece of text a person
//! types.
//!
//! The crate is pure: no I/O, no other jitca crate, no async runtime, no SSH library. A user's
//! key is held as its SSH wire-format blob ([`UserKey`]), which is what a client presents.

pub mod config;
pub mod decide;
pub mod document;
pub mod duration;
pub mod keys;
pub mod locate;
pub mod names;
pub mod show;

pub use config::{KNOWN_EXTENSIONS, Parsed, PolicyText, parse};
pub use decide::{Ask, Decided, Denial, Eligible, Grant, Policy, ReasonPattern, Rule, User};
pub use document::{ConfigError, ConfigErrors, Problems};
pub use duration::{DurationError, format_duration, parse_duration};
pub use keys::UserKey;
pub use locate::{LineIndex, YamlPath};
pub use names::{
    InputError, check_host_name, check_login, check_name, check_reason, parse_host_list,
    parse_login_list, parse_request_duration,
};
