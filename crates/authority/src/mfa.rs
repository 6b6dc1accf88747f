//! Second factors: enrolment, confirmation, status and reset (the `mfa` commands), and the
//! check of a one-time code during authentication, whose outcome becomes the connection's
//! [`Factor`].
//!
//! The TOTP secret is sealed with the key in `mfa_key` (outside the data folder; checked like
//! the CA key: a regular file of the daemon's user, no access for group or others), with the
//! person's name as associated data. A code is accepted for a time step later than the last
//! one used, and that step is stored by compare-and-swap, so a code works once, also across
//! connections and restarts. Wrong codes are limited per person: after [`MAX_WRONG`] within
//! [`WRONG_WINDOW`] codes are not even checked until the oldest of them is that old. The times
//! of wrong codes are stored with the factor and counted by the same compare-and-swap, so the
//! limit holds across connections racing and across restarts.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jitca_mfa::{Check, SealingKey, Secret};
pub use jitca_store::FactorState;
use jitca_store::{AuditRecord, EventKind, SecondFactor, VersionedFactor};
use zeroize::Zeroizing;

use crate::swap::{self, Attempt};
use crate::{Authority, AuthorityError, Caller, Factor};

/// Wrong codes a person may give within [`WRONG_WINDOW`] before codes are not checked.
pub const MAX_WRONG: usize = 5;
/// See [`MAX_WRONG`].
pub const WRONG_WINDOW: Duration = Duration::from_secs(5 * 60);

pub const WRONG: &str = "the one-time code was wrong";
pub const REPLAYED: &str = "that one-time code was used already; wait for the next one";

/// The second-factor state an [`Authority`] keeps in memory.
#[derive(Default)]
pub(crate) struct MfaState {
    /// Where the sealing key is (`mfa_key`); `None` until [`Authority::use_mfa_key`].
    key_path: Mutex<Option<PathBuf>>,
    /// The sealing key once read or made.
    key: Mutex<Option<SealingKey>>,
}

/// A person's second factor as `mfa status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorStatus {
    pub state: FactorState,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
}

/// What enrolment hands the person: the URI to scan (it holds the secret).
pub struct Enrolment {
    pub uri: Zeroizing<String>,
    /// The secret in base32, for apps that take it typed.
    pub secret: Zeroizing<String>,
    /// Whether an earlier unconfirmed enrolment was replaced.
    pub replaced: bool,
}

/// What checking a one-time code came to.
enum Checked {
    /// No second factor in force: none is asked.
    NotActive,
    /// Too many wrong codes lately: not checked (the text says how long to wait).
    Limited(String),
    /// Checked and written: the step used, or a wrong code counted (why, and what the
    /// person is told).
    Written(Option<(&'static str, &'static str)>),
}

fn refused(text: impl Into<String>) -> AuthorityError {
    AuthorityError::Refused(text.into())
}

fn hex_sealed(sealed: &[u8]) -> String {
    hex::encode(sealed)
}

/// Reads the key file, with the same owner and mode checks as the CA key.
fn read_key(path: &Path) -> Result<SealingKey, String> {
    let mut file =
        jitca_signer::open_private_file(path, "SECOND-FACTOR KEY").map_err(|e| e.to_string())?;
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    SealingKey::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Creates the key file (mode 0400, never over an existing file) and returns the key.
pub fn create_key_file(path: &Path) -> Result<SealingKey, String> {
    let key = SealingKey::generate().map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(key.to_hex_line().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}

impl Authority {
    /// Where the sealing key is. Read (and checked) now if the file exists, so a daemon never
    /// starts with a key file others can read; otherwise made at the first enrolment.
    pub fn use_mfa_key(&self, path: &Path) -> Result<(), AuthorityError> {
        *self.mfa.key_path.lock().expect("mfa key lock") = Some(path.to_path_buf());
        *self.mfa.key.lock().expect("mfa key lock") = None;
        if path.exists() {
            let key = read_key(path).map_err(refused)?;
            *self.mfa.key.lock().expect("mfa key lock") = Some(key);
        }
        Ok(())
    }

    /// The sealing key; made (and written to `mfa_key`) when `create` and there is none.
    fn sealing_key(&self, create: bool) -> Result<SealingKey, String> {
        let mut cached = self.mfa.key.lock().expect("mfa key lock");
        if let Some(key) = cached.as_ref() {
            return Ok(key.clone());
        }
        let Some(path) = self.mfa.key_path.lock().expect("mfa key lock").clone() else {
            return Err("this CA has no second-factor key set up (mfa_key)".into());
        };
        let key = if path.exists() || !create {
            read_key(&path)?
        } else if self.store.shared() {
            // Another daemon on the same database sealed its secrets with its own key: one made
            // here would open none of them, and theirs none of ours.
            return Err(format!(
                "{} does not exist: with several daemons on one database, every daemon needs \
                 the same mfa_key; copy it from the first (jitca init made it)",
                path.display()
            ));
        } else {
            match create_key_file(&path) {
                Ok(key) => {
                    tracing::info!(path = %path.display(), "created the second-factor key");
                    key
                }
                // Made by someone else in between: use theirs.
                Err(_) if path.exists() => read_key(&path)?,
                Err(e) => return Err(e),
            }
        };
        *cached = Some(key.clone());
        Ok(key)
    }

    /// `mfa enroll`: a new secret, not in force until confirmed. Replaces an unconfirmed one;
    /// refused when an active factor exists.
    pub fn mfa_enroll(&self, caller: &Caller) -> Result<Enrolment, AuthorityError> {
        let key = self.sealing_key(true).map_err(|e| {
            tracing::error!(error = %e, "cannot enrol a second factor");
            refused(format!(
                "second factors cannot be enrolled on this CA now ({e}); tell an operator"
            ))
        })?;
        let (secret, replaced) = swap::retry(
            || Ok(self.store.second_factor(&caller.user)?),
            |current| {
                if current
                    .as_ref()
                    .is_some_and(|c| c.factor.state == FactorState::Active)
                {
                    return Err(refused(format!(
                        "you have a second factor already; an operator can reset it: mfa reset {}",
                        caller.user
                    )));
                }
                let secret = Secret::generate().map_err(|e| refused(e.to_string()))?;
                let sealed = key
                    .seal(&caller.user, &secret)
                    .map_err(|e| refused(e.to_string()))?;
                let next = SecondFactor {
                    state: FactorState::Unconfirmed,
                    sealed: hex_sealed(&sealed),
                    last_step: 0,
                    created_at: Utc::now(),
                    confirmed_at: None,
                    wrong_codes: Vec::new(),
                };
                let replaced = current.is_some();
                let mut event = AuditRecord::new(EventKind::MfaEnrolled, &caller.user)
                    .with("replaced", replaced);
                event.source = Some(caller.source.clone());
                let swap = self.store.swap_second_factor(
                    &caller.user,
                    current.as_ref(),
                    Some(&next),
                    &[event],
                )?;
                Ok((swap, (secret, replaced)).into())
            },
        )?;
        self.durable()?;
        tracing::info!(user = %caller.user, "second factor enrolled (unconfirmed)");
        Ok(Enrolment {
            uri: jitca_mfa::otpauth_uri(&caller.user, &secret),
            secret: secret.base32(),
            replaced,
        })
    }

    /// `mfa confirm CODE`: puts the enrolled factor in force with a first code.
    pub fn mfa_confirm(&self, caller: &Caller, code: &str) -> Result<(), AuthorityError> {
        swap::retry(
            || Ok(self.store.second_factor(&caller.user)?),
            |current| {
                let Some(current) = current else {
                    return Err(refused(
                        "you have no second factor to confirm; start with mfa enroll",
                    ));
                };
                if current.factor.state == FactorState::Active {
                    return Err(refused("your second factor is confirmed already"));
                }
                let secret = self.open_secret(&caller.user, &current)?;
                let last = (current.factor.last_step > 0).then_some(current.factor.last_step);
                let step = match secret.verify(code, jitca_mfa::now(), last) {
                    Check::Valid { step } => step,
                    Check::Wrong | Check::Replayed => {
                        self.record_mfa_failure(caller, "wrong code at confirmation")?;
                        return Err(refused(
                            "that code is wrong; enter the code your app shows now \
                             (check that the phone's clock is right)",
                        ));
                    }
                };
                let next = SecondFactor {
                    state: FactorState::Active,
                    last_step: step,
                    confirmed_at: Some(Utc::now()),
                    ..current.factor.clone()
                };
                let mut event = AuditRecord::new(EventKind::MfaConfirmed, &caller.user);
                event.source = Some(caller.source.clone());
                let swap = self.store.swap_second_factor(
                    &caller.user,
                    Some(&current),
                    Some(&next),
                    &[event],
                )?;
                Ok((swap, ()).into())
            },
        )?;
        self.durable()?;
        tracing::info!(user = %caller.user, "second factor confirmed");
        Ok(())
    }

    /// `mfa status`: the caller's own second factor, if any.
    pub fn mfa_status(&self, caller: &Caller) -> Result<Option<FactorStatus>, AuthorityError> {
        Ok(self
            .store
            .second_factor(&caller.user)?
            .map(|v| FactorStatus {
                state: v.factor.state,
                created_at: v.factor.created_at,
                confirmed_at: v.factor.confirmed_at,
            }))
    }

    /// `mfa reset USER`: an operator removes someone else's second factor (enrolled or
    /// active); the person enrols again.
    pub fn mfa_reset(&self, caller: &Caller, user: &str) -> Result<(), AuthorityError> {
        if !self.policy().is_operator(&caller.user) {
            return Err(refused(
                "only operators (the config's operators groups) may reset a second factor",
            ));
        }
        if user == caller.user {
            return Err(refused(
                "you may not reset your own second factor; ask another operator",
            ));
        }
        swap::retry(
            || Ok(self.store.second_factor(user)?),
            |current| {
                let Some(current) = current else {
                    return Err(refused(format!("{user} has no second factor")));
                };
                let mut event = AuditRecord::new(EventKind::MfaReset, &caller.user)
                    .with("user", user)
                    .with("state", current.factor.state.as_str());
                event.requester = Some(user.to_string());
                event.source = Some(caller.source.clone());
                let swap = self
                    .store
                    .swap_second_factor(user, Some(&current), None, &[event])?;
                Ok((swap, ()).into())
            },
        )?;
        self.durable()?;
        tracing::info!(operator = %caller.user, %user, "second factor reset");
        Ok(())
    }

    /// Whether `user` has a second factor in force (so the code is asked at connection).
    pub fn mfa_active(&self, user: &str) -> Result<bool, AuthorityError> {
        Ok(self
            .store
            .second_factor(user)?
            .is_some_and(|v| v.factor.state == FactorState::Active))
    }

    /// Checks the answer to the code prompt of `user` connecting from `source`: the
    /// connection's [`Factor`]. Failures are recorded (never the code).
    pub fn mfa_check(&self, user: &str, source: &str, answer: &str) -> Factor {
        let who = Caller {
            user: user.to_string(),
            source: source.to_string(),
            factor: Factor::NotEnrolled,
        };
        match self.check_code(&who, answer) {
            Ok(factor) => factor,
            Err(e) => {
                tracing::error!(%user, error = %e, "cannot check a one-time code");
                Factor::Failed(
                    "the one-time code could not be checked (a problem on the CA; tell an \
                     operator)"
                        .into(),
                )
            }
        }
    }

    fn check_code(&self, caller: &Caller, answer: &str) -> Result<Factor, AuthorityError> {
        let answer = answer.trim();
        if answer.is_empty() {
            return Ok(Factor::Skipped);
        }
        let window = chrono::TimeDelta::from_std(WRONG_WINDOW).expect("a short window");
        let checked = swap::retry(
            || Ok(self.store.second_factor(&caller.user)?),
            |current| {
                let Some(current) = current else {
                    return Ok(Attempt::Done(Checked::NotActive));
                };
                if current.factor.state != FactorState::Active {
                    return Ok(Attempt::Done(Checked::NotActive));
                }
                let now = Utc::now();
                let recent: Vec<DateTime<Utc>> = current
                    .factor
                    .wrong_codes
                    .iter()
                    .copied()
                    .filter(|t| now - *t < window)
                    .collect();
                if recent.len() >= MAX_WRONG {
                    let wait = (recent[0] + window - now).num_seconds().max(1) as u64;
                    let minutes = wait.div_ceil(60);
                    let why = format!("too many wrong codes; try again in {minutes} minutes");
                    self.record_mfa_failure(caller, "too many wrong codes: not checked")?;
                    return Ok(Attempt::Done(Checked::Limited(why)));
                }
                let secret = self.open_secret(&caller.user, &current)?;
                let last = (current.factor.last_step > 0).then_some(current.factor.last_step);
                let (next, failed) = match secret.verify(answer, jitca_mfa::now(), last) {
                    Check::Valid { step } => (
                        SecondFactor {
                            last_step: step,
                            wrong_codes: recent,
                            ..current.factor.clone()
                        },
                        None,
                    ),
                    refused => {
                        let (why, said) = match refused {
                            Check::Replayed => ("code used already", REPLAYED),
                            _ => ("wrong code", WRONG),
                        };
                        let mut wrong_codes = recent;
                        wrong_codes.push(now);
                        let skip = wrong_codes.len().saturating_sub(MAX_WRONG);
                        wrong_codes.drain(..skip);
                        let next = SecondFactor {
                            wrong_codes,
                            ..current.factor.clone()
                        };
                        (next, Some((why, said)))
                    }
                };
                let events: Vec<AuditRecord> = failed
                    .iter()
                    .map(|(why, _)| self.mfa_failure_event(caller, why))
                    .collect();
                // Another connection may have used this very code, or given a wrong one, in
                // between: then the swap loses, and the code is checked again against what it
                // stored (a new last step, one wrong code more).
                let swap = self.store.swap_second_factor(
                    &caller.user,
                    Some(&current),
                    Some(&next),
                    &events,
                )?;
                Ok((swap, Checked::Written(failed)).into())
            },
        )?;
        Ok(match checked {
            Checked::NotActive => Factor::NotEnrolled,
            Checked::Limited(why) => Factor::Failed(why),
            Checked::Written(failed) => {
                // The step (or the wrong code) is durable before the connection goes on.
                self.durable()?;
                match failed {
                    None => Factor::Verified,
                    Some((why, said)) => {
                        tracing::info!(user = %caller.user, source = %caller.source, why,
                            "one-time code refused");
                        Factor::Failed(said.into())
                    }
                }
            }
        })
    }

    fn open_secret(&self, user: &str, stored: &VersionedFactor) -> Result<Secret, AuthorityError> {
        let key = self.sealing_key(false).map_err(|e| {
            tracing::error!(error = %e, "the second-factor key is not available");
            refused(format!(
                "the second factor cannot be checked on this CA now ({e}); tell an operator"
            ))
        })?;
        let sealed = hex::decode(&stored.factor.sealed).unwrap_or_default();
        key.open(user, &sealed).map_err(|e| {
            tracing::error!(%user, error = %e, "a stored second-factor secret does not open");
            refused(format!(
                "your second factor cannot be checked ({e}); an operator can reset it: \
                 mfa reset {user}"
            ))
        })
    }

    fn mfa_failure_event(&self, caller: &Caller, why: &str) -> AuditRecord {
        let mut event = AuditRecord::new(EventKind::MfaFailed, &caller.user).with("why", why);
        event.source = Some(caller.source.clone());
        event
    }

    fn record_mfa_failure(&self, caller: &Caller, why: &str) -> Result<(), AuthorityError> {
        tracing::info!(user = %caller.user, source = %caller.source, why, "one-time code refused");
        self.store
            .append_audit(&[self.mfa_failure_event(caller, why)])?;
        Ok(())
    }
}
