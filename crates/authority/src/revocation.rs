//! Ending access before expiry: `done`, `revoke`, users removed from the config, and the
//! OpenSSH KRL that makes stock `sshd` enforce it.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use jitca_krl::Krl;
use jitca_store::{AuditRecord, EventKind, KrlState, Request, Revocation, State};

use crate::audit::{self, DAEMON};
use crate::swap::{Changed, Step};
use crate::{Authority, AuthorityError, Caller, Notice};

/// How long a revoked certificate stays in the KRL after it expires, for hosts whose clocks
/// lag behind the CA's. After that it can no longer be used anywhere and leaves the list.
pub const KRL_GRACE: TimeDelta = TimeDelta::hours(1);

/// What failed on the way to ending access and is tried again by [`Authority::upkeep`] (every
/// few seconds, from the daemon's sweeper) until it succeeds.
#[derive(Default)]
struct Retry {
    /// Audit records the store did not take (a reload's), in order.
    records: Vec<AuditRecord>,
    /// Whether the store or the audit file still has to be made durable.
    durable: bool,
    /// Whether ending the access of people a reload removed failed somewhere.
    removed_users: bool,
    /// Whether a new KRL version could not be made (the store failed).
    krl: bool,
    /// `krl_path` could not be written: since when, how often, and the last error.
    krl_path: Option<PathFailure>,
}

/// A `krl_path` that cannot be written.
#[derive(Clone, Debug)]
pub struct PathFailure {
    pub since: DateTime<Utc>,
    pub attempts: u64,
    pub error: String,
}

/// Where the KRL stands, for operators (`whoami`).
#[derive(Clone, Debug)]
pub struct KrlStatus {
    pub version: u64,
    /// `krl_path`, if set, and its write failure, if it is failing.
    pub path: Option<(std::path::PathBuf, Option<PathFailure>)>,
}

/// The current KRL, encoded, and what decides when it must change.
struct KrlCache {
    /// The version it was built at: another daemon sharing the store may have made a newer.
    version: u64,
    bytes: Vec<u8>,
    /// When the earliest entry may leave the list (its expiry plus the grace), if any.
    next_expiry: Option<DateTime<Utc>>,
}

/// This part's own state: the KRL served, where it is written, and what is retried.
pub(crate) struct Revocations {
    /// Built on first use and after every change.
    cache: Mutex<Option<KrlCache>>,
    /// Where to keep the current KRL, replaced atomically on every change.
    path: Option<PathBuf>,
    retry: Mutex<Retry>,
}

impl Revocations {
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Self {
            cache: Mutex::new(None),
            path,
            retry: Mutex::new(Retry::default()),
        }
    }
}

impl Authority {
    /// The requester ends their own access early: the certificate is revoked.
    pub fn done(&self, caller: &Caller, id: &str) -> Result<Request, AuthorityError> {
        let request = self.show(caller, id)?;
        if request.requester != caller.user {
            return Err(AuthorityError::Conflict(format!(
                "only {}, who made request {id}, can end it with done; approvers and auditors use revoke",
                request.requester
            )));
        }
        self.revoke_as(
            &caller.user,
            id,
            "done by the requester",
            EventKind::Done,
            Some(caller),
        )
    }

    /// An approver of the request's rule, or an auditor, revokes its certificate.
    pub fn revoke(
        &self,
        caller: &Caller,
        id: &str,
        reason: &str,
    ) -> Result<Request, AuthorityError> {
        let request = self.show(caller, id)?;
        let policy = self.policy();
        if !policy.is_approver_of(&caller.user, &request.rule) && !policy.is_auditor(&caller.user) {
            return Err(AuthorityError::Conflict(format!(
                "only approvers of rule {} and auditors may revoke request {id}",
                request.rule
            )));
        }
        self.revoke_as(&caller.user, id, reason, EventKind::Revoked, Some(caller))
    }

    /// Revokes a live certificate, records who and why, and publishes a new KRL.
    pub(crate) fn revoke_as(
        &self,
        by: &str,
        id: &str,
        reason: &str,
        kind: EventKind,
        caller: Option<&Caller>,
    ) -> Result<Request, AuthorityError> {
        let Changed::Written(next) = self.change_request::<Infallible>(id, |current| {
            let now = Utc::now();
            let issuance = match &current.request.state {
                State::Issued(i) if now < i.valid_before => i.clone(),
                State::Issued(_) => {
                    return Err(AuthorityError::Conflict(format!(
                        "request {id}'s certificate has expired already"
                    )));
                }
                State::Revoked { revocation, .. } => {
                    return Err(AuthorityError::Conflict(format!(
                        "request {id}'s certificate was revoked already by {}",
                        revocation.by
                    )));
                }
                other => {
                    return Err(AuthorityError::Conflict(format!(
                        "request {id} has no certificate to revoke: it is {}",
                        state_word(other)
                    )));
                }
            };
            let mut next = current.request.clone();
            next.state = State::Revoked {
                issuance: issuance.clone(),
                revocation: Revocation {
                    by: by.to_string(),
                    at: now,
                    reason: reason.to_string(),
                },
            };
            let mut event = audit::about(kind, by, &next)
                .with("serials", [issuance.serial])
                .with("key_id", &issuance.key_id)
                .with("valid_before", issuance.valid_before);
            event.serial = Some(issuance.serial);
            event.reason = Some(reason.to_string());
            event.source = caller.map(|c| c.source.clone());
            let mut events = vec![event];
            // The grant has ended: a review it needs is due now.
            if next.review_required && next.review.is_none() {
                next.review_due_announced = true;
                events.push(audit::review_due(&next));
            }
            Ok(Step::Write(next, events))
        })?;
        let serial = next.issuance().map(|i| i.serial);
        tracing::info!(%id, by, serial, reason, "certificate revoked");
        // Durable first; then published whatever that gave: a stored revocation is always in
        // the KRL (fail closed), and the caller hears of success only once it is durable.
        let durable = self.durable();
        self.publish_krl();
        self.announce(id);
        self.tell(Notice::Revoked, &next, Some(by));
        if next.review_required && next.review.is_none() {
            self.tell(Notice::ReviewDue, &next, None);
        }
        if let Err(e) = durable {
            // Stored and published, not yet durable: the sweeper retries.
            self.revocations.retry.lock().expect("retry lock").durable = true;
            return Err(e);
        }
        Ok(next)
    }

    /// The current KRL (OpenSSH binary format).
    /// Built again whenever the store's version moved on (a revocation made by another daemon
    /// sharing the store), so every daemon serves the same bytes for the same version.
    pub fn krl(&self) -> Result<Vec<u8>, AuthorityError> {
        Ok(self.krl_as_stored()?.0)
    }

    /// The KRL of the store's current version, and whether it had to be built again for it
    /// (the cache held none, or an older version).
    fn krl_as_stored(&self) -> Result<(Vec<u8>, bool), AuthorityError> {
        let state = self.store.krl_state()?;
        let mut cache = self.revocations.cache.lock().expect("krl lock");
        let stale = cache.as_ref().is_none_or(|c| c.version != state.version);
        if stale {
            *cache = Some(self.build_krl(state)?);
        }
        Ok((cache.as_ref().expect("just built").bytes.clone(), stale))
    }

    /// Starts a new KRL version: after every revocation, at start, and when expired entries
    /// leave. Serves it from then on, and writes `krl_path` if configured: a write that fails
    /// is logged and retried by [`Authority::upkeep`], never an error here.
    pub fn krl_changed(&self) -> Result<(), AuthorityError> {
        let state = self.store.bump_krl(Utc::now())?;
        let built = self.build_krl(state)?;
        tracing::info!(
            version = state.version,
            bytes = built.bytes.len(),
            "KRL updated"
        );
        let bytes = built.bytes.clone();
        *self.revocations.cache.lock().expect("krl lock") = Some(built);
        self.write_krl_path(&bytes);
        Ok(())
    }

    /// With a store other daemons share: catches up with what they changed. A KRL version
    /// another daemon made is served and written to `krl_path` here too (so every daemon's
    /// `krl_path` follows within one call of this, every few seconds), and with `recount` the
    /// gauges (pending requests, audit records, KRL version) are set from the store again.
    /// Nothing to do with a store only this process writes.
    pub fn follow_others(&self, recount: bool) -> Result<(), AuthorityError> {
        if !self.store.shared() {
            return Ok(());
        }
        let (bytes, rebuilt) = self.krl_as_stored()?;
        if rebuilt {
            tracing::info!("KRL version made by another daemon");
            self.write_krl_path(&bytes);
        }
        if recount {
            crate::metered::set_gauges(self.store.as_ref(), &self.metrics)?;
        }
        Ok(())
    }

    /// A new KRL after a revocation, whatever fails: the cache is dropped first, so `krl`
    /// rebuilds from the store (with the revocation) even when no new version can be made;
    /// what failed is retried.
    pub(crate) fn publish_krl(&self) {
        *self.revocations.cache.lock().expect("krl lock") = None;
        if let Err(e) = self.krl_changed() {
            tracing::error!(error = %e, "cannot make a new KRL version; `krl` serves every \
                stored revocation meanwhile; retrying every few seconds");
            self.revocations.retry.lock().expect("retry lock").krl = true;
        }
    }

    /// Writes `krl_path` (if set); remembers and loudly logs a failure, for the retry.
    fn write_krl_path(&self, bytes: &[u8]) {
        let Some(path) = &self.revocations.path else {
            return;
        };
        let written = write_atomically(path, bytes);
        self.metrics.krl_path_written(written.is_ok());
        let mut retry = self.revocations.retry.lock().expect("retry lock");
        match written {
            Ok(()) => {
                if let Some(failed) = retry.krl_path.take() {
                    tracing::warn!(path = %path.display(), attempts = failed.attempts,
                        since = %failed.since, "krl_path written again");
                }
            }
            Err(e) => {
                let failure = retry.krl_path.get_or_insert(PathFailure {
                    since: Utc::now(),
                    attempts: 0,
                    error: String::new(),
                });
                failure.attempts += 1;
                failure.error = e.to_string();
                // Every failure for the first minute, then about once a minute.
                if failure.attempts <= 12 || failure.attempts.is_multiple_of(12) {
                    tracing::error!(path = %path.display(), error = %e,
                        attempts = failure.attempts, since = %failure.since,
                        "cannot write krl_path: hosts that read it miss the latest \
                         revocations (`krl` over the control channel has them); retrying \
                         every few seconds");
                }
            }
        }
    }

    /// Where the KRL stands, for operators.
    pub fn krl_status(&self) -> Result<KrlStatus, AuthorityError> {
        let version = self.store.krl_state()?.version;
        let failure = self
            .revocations
            .retry
            .lock()
            .expect("retry lock")
            .krl_path
            .clone();
        Ok(KrlStatus {
            version,
            path: self.revocations.path.clone().map(|p| (p, failure)),
        })
    }

    /// Tries again what failed on the way to ending access: audit records a reload could not
    /// write, durability, the removed users' revocations, a new KRL version, `krl_path`. Run
    /// every few seconds by the daemon; returns an error naming what still fails.
    pub fn upkeep(&self) -> Result<(), AuthorityError> {
        let (records, durable, removed, krl, path) = {
            let mut retry = self.revocations.retry.lock().expect("retry lock");
            (
                std::mem::take(&mut retry.records),
                std::mem::take(&mut retry.durable),
                std::mem::take(&mut retry.removed_users),
                std::mem::take(&mut retry.krl),
                retry.krl_path.is_some(),
            )
        };
        let mut failed = Vec::new();
        let mut written = false;
        if !records.is_empty() {
            if let Err(e) = self.store.append_audit(&records) {
                // Back in front of any a reload queued meanwhile, in their order.
                let mut retry = self.revocations.retry.lock().expect("retry lock");
                let newer = std::mem::replace(&mut retry.records, records);
                retry.records.extend(newer);
                drop(retry);
                failed.push(format!("writing the audit log: {e}"));
            } else {
                tracing::warn!(
                    records = records.len(),
                    "audit records written after a retry"
                );
                written = true;
            }
        }
        if durable || written {
            self.durable_or_retry();
        }
        if removed {
            self.end_access_or_retry();
        }
        if krl {
            self.publish_krl();
        } else if path {
            let bytes = self.krl()?;
            self.write_krl_path(&bytes);
        }
        let retry = self.revocations.retry.lock().expect("retry lock");
        if retry.durable {
            failed.push("making the store and audit log durable".into());
        }
        if retry.removed_users {
            failed.push("ending the access of removed users".into());
        }
        if retry.krl {
            failed.push("making a new KRL version".into());
        }
        self.metrics.upkeep(!failed.is_empty());
        if failed.is_empty() {
            Ok(())
        } else {
            Err(AuthorityError::Refused(format!(
                "still failing, retried in a few seconds: {}",
                failed.join("; ")
            )))
        }
    }

    fn durable_or_retry(&self) {
        if let Err(e) = self.durable() {
            tracing::error!(error = %e, "cannot make the store and audit log durable; retrying");
            self.revocations.retry.lock().expect("retry lock").durable = true;
        }
    }

    fn end_access_or_retry(&self) {
        match self.end_access_of_removed_users() {
            Ok(ended) if !ended.is_empty() => {
                tracing::info!(requests = ?ended, "ended the access of users no longer in the config");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot end the access of every removed user yet; \
                    retrying every few seconds");
                self.revocations
                    .retry
                    .lock()
                    .expect("retry lock")
                    .removed_users = true;
            }
        }
    }

    /// Lets revoked certificates that can no longer be used leave the KRL (a new version).
    pub fn prune_krl(&self) -> Result<(), AuthorityError> {
        let due = {
            let cache = self.revocations.cache.lock().expect("krl lock");
            cache
                .as_ref()
                .and_then(|c| c.next_expiry)
                .is_some_and(|t| t <= Utc::now())
        };
        if due {
            self.krl_changed()?;
        }
        Ok(())
    }

    fn build_krl(&self, state: KrlState) -> Result<KrlCache, AuthorityError> {
        let mut krl = Krl::new(self.signer.public_key().clone());
        krl.version = state.version;
        krl.generated_date = state.generated_at.timestamp().max(0) as u64;
        krl.comment = "jitca".to_string();
        krl.earlier_cas = self
            .earlier_cas
            .iter()
            .filter(|k| k.key_data() != self.signer.public_key().key_data())
            .cloned()
            .collect();
        let mut serials = BTreeSet::new();
        let mut next_expiry: Option<DateTime<Utc>> = None;
        for request in self.store.requests()? {
            if let State::Revoked { issuance, .. } = &request.state {
                let leaves = issuance.valid_before + KRL_GRACE;
                if leaves > state.generated_at {
                    serials.insert(issuance.serial);
                    next_expiry = Some(next_expiry.map_or(leaves, |t| t.min(leaves)));
                }
            }
        }
        krl.serials = serials;
        let bytes = krl
            .try_encode()
            .map_err(|e| AuthorityError::Krl(e.to_string()))?;
        Ok(KrlCache {
            version: state.version,
            bytes,
            next_expiry,
        })
    }

    /// Ends everything of requesters the policy no longer knows: pending requests are ended,
    /// live certificates revoked. Goes on past a request that fails, then fails naming how
    /// many did. Returns the ids touched.
    pub fn end_access_of_removed_users(&self) -> Result<Vec<String>, AuthorityError> {
        let policy = self.policy();
        let now = Utc::now();
        let mut touched = Vec::new();
        let mut failed: Vec<(String, AuthorityError)> = Vec::new();
        for request in self.store.requests()? {
            if policy.user(&request.requester).is_some() {
                continue;
            }
            let why = format!("{} was removed from the config", request.requester);
            let outcome = match &request.state {
                State::Pending if now < request.lapses_at => self.end_pending(&request.id, &why),
                State::Issued(i) if now < i.valid_before => {
                    match self.revoke_as(DAEMON, &request.id, &why, EventKind::Revoked, None) {
                        Ok(_) => Ok(true),
                        // Expired or revoked meanwhile: nothing left to end.
                        Err(AuthorityError::Conflict(_)) => Ok(false),
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(false),
            };
            match outcome {
                Ok(true) => touched.push(request.id.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(id = %request.id, requester = %request.requester, error = %e,
                        "cannot end the access of a removed user");
                    failed.push((request.id.clone(), e));
                }
            }
        }
        match failed.pop() {
            None => Ok(touched),
            Some((id, e)) => Err(AuthorityError::Refused(format!(
                "could not end {} request(s) of removed users (last: {id}: {e})",
                failed.len() + 1
            ))),
        }
    }

    /// Ends a pending request of a removed user; whether it was still pending.
    fn end_pending(&self, id: &str, why: &str) -> Result<bool, AuthorityError> {
        let changed = self.change_request(id, |current| {
            if !matches!(current.request.state, State::Pending) {
                return Ok(Step::Keep(()));
            }
            let mut next = current.request.clone();
            next.state = State::Denied {
                by: DAEMON.to_string(),
                at: Utc::now(),
                reason: why.to_string(),
            };
            let mut event = audit::about(EventKind::Denied, DAEMON, &next);
            event.reason = Some(why.to_string());
            Ok(Step::Write(next, vec![event]))
        })?;
        let Changed::Written(_) = changed else {
            return Ok(false);
        };
        self.metrics
            .request_ended(jitca_metrics::Outcome::Withdrawn);
        self.durable()?;
        self.announce(id);
        Ok(true)
    }

    /// Puts a new policy in force (a config reload), then ends the access of anyone it no
    /// longer names. Recorded with the users added and removed. The access ends even when
    /// the record cannot be written; whatever fails is logged and retried by
    /// [`Authority::upkeep`].
    pub fn reload(&self, policy: jitca_policy::Policy, file: &Path) -> Result<(), AuthorityError> {
        let old = self.policy();
        let names = |p: &jitca_policy::Policy| -> BTreeSet<String> {
            p.users().map(|u| u.name.clone()).collect()
        };
        let (before, after) = (names(&old), names(&policy));
        let event = AuditRecord::new(EventKind::ConfigReloaded, DAEMON)
            .with("file", file.display().to_string())
            .with("users_added", after.difference(&before).collect::<Vec<_>>())
            .with(
                "users_removed",
                before.difference(&after).collect::<Vec<_>>(),
            );
        let appended = self.put_in_force(policy, || {
            self.store.append_audit(std::slice::from_ref(&event))
        });
        match appended {
            Ok(_) => self.durable_or_retry(),
            Err(e) => {
                tracing::error!(error = %e, "cannot record the config reload in the audit log; \
                    the access of removed users ends anyway; the record is retried");
                self.revocations
                    .retry
                    .lock()
                    .expect("retry lock")
                    .records
                    .push(event);
            }
        }
        self.end_access_or_retry();
        tracing::info!(file = %file.display(), "config reloaded");
        Ok(())
    }
}

fn state_word(state: &State) -> &'static str {
    match state {
        State::Pending => "pending",
        State::Issued(_) => "issued",
        State::Denied { .. } => "denied",
        State::Lapsed { .. } => "lapsed",
        State::Revoked { .. } => "revoked",
    }
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one, never a
/// missing or partial one (`sshd` refuses every key when its `RevokedKeys` file is missing).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
