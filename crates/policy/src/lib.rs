//! The policy of jitca: the config file as written becomes a validated [`Config`] holding a
//! [`Policy`], which answers who may request which logins on which hosts for how long, who may
//! approve, and who may see what. The crate is pure: the only I/O is [`load`] reading the config
//! file and [`Config::check_key_files`] opening the keys through `jitca-signer` (key and
//! passphrase files, or the CA key's ssh-agent over its local socket); no network, no storage.
//! The control channel also uses [`names`] to check every piece of text a person types.

pub mod config;
pub mod decide;
pub mod duration;
pub mod locate;
pub mod names;
pub mod proof;

pub use config::{
    Config, ConfigError, ConfigErrors, Hook, KNOWN_EXTENSIONS, Limits, LogFormat, NOTIFY_EVENTS,
    load, parse,
};
pub use decide::{Ask, Denial, Grant, Policy, ReasonPattern, Rule, User};
pub use duration::{DurationError, format_duration, parse_duration};
pub use names::{
    InputError, check_host_name, check_login, check_name, check_reason, parse_host_list,
    parse_login_list, parse_request_duration,
};
pub use proof::{Decided, Eligible};
