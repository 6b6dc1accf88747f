//! Ending access before expiry: `done`, `revoke`, users removed from the config, and the
//! OpenSSH KRL that makes stock `sshd` enforce it.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use jitca_krl::Krl;
use jitca_store::{AuditRecord, EventKind, KrlState, Request, Revocation, State, Swap};

use crate::audit::{self, DAEMON};
use crate::{Authority, AuthorityError, Caller, Notice};

/// How long a revoked certificate stays in the KRL after it expires, for hosts whose clocks
/// lag behind the CA's. After that it can no longer be used anywhere and leaves the list.
pub const KRL_GRACE: TimeDelta = TimeDelta::hours(1);

/// The current KRL, encoded, and what decides when it must change.
pub(crate) struct KrlCache {
    pub(crate) bytes: Vec<u8>,
    /// When the earliest entry may leave the list (its expiry plus the grace), if any.
    pub(crate) next_expiry: Option<DateTime<Utc>>,
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
        loop {
            let current = self.find(id)?;
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
            let review_due = next.review_required && next.review.is_none();
            if review_due {
                next.review_due_announced = true;
                events.push(audit::review_due(&next));
            }
            match self.store.replace_request(&current, &next, &events)? {
                Swap::Done => {
                    tracing::info!(%id, by, serial = issuance.serial, reason, "certificate revoked");
                    self.krl_changed()?;
                    self.durable()?;
                    self.announce(id);
                    self.tell(Notice::Revoked, &next, Some(by));
                    if review_due {
                        self.tell(Notice::ReviewDue, &next, None);
                    }
                    return Ok(next);
                }
                Swap::Conflict => continue,
            }
        }
    }

    /// The current KRL (OpenSSH binary format).
    pub fn krl(&self) -> Result<Vec<u8>, AuthorityError> {
        let mut cache = self.krl.lock().expect("krl lock");
        if cache.is_none() {
            *cache = Some(self.build_krl(self.store.krl_state()?)?);
        }
        Ok(cache.as_ref().expect("just built").bytes.clone())
    }

    /// Starts a new KRL version: after every revocation, at start, and when expired entries
    /// leave. Writes `krl_path` if configured.
    pub fn krl_changed(&self) -> Result<(), AuthorityError> {
        let state = self.store.bump_krl(Utc::now())?;
        let built = self.build_krl(state)?;
        if let Some(path) = &self.krl_path {
            write_atomically(path, &built.bytes).map_err(|e| {
                AuthorityError::Krl(format!("cannot write {}: {e}", path.display()))
            })?;
        }
        tracing::info!(
            version = state.version,
            bytes = built.bytes.len(),
            "KRL updated"
        );
        *self.krl.lock().expect("krl lock") = Some(built);
        Ok(())
    }

    /// Lets revoked certificates that can no longer be used leave the KRL (a new version).
    pub fn prune_krl(&self) -> Result<(), AuthorityError> {
        let due = {
            let cache = self.krl.lock().expect("krl lock");
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
        Ok(KrlCache { bytes, next_expiry })
    }

    /// Ends everything of requesters the policy no longer knows: pending requests are ended,
    /// live certificates revoked. Returns the ids touched.
    pub fn end_access_of_removed_users(&self) -> Result<Vec<String>, AuthorityError> {
        let policy = self.policy();
        let now = Utc::now();
        let mut touched = Vec::new();
        for request in self.store.requests()? {
            if policy.user(&request.requester).is_some() {
                continue;
            }
            let why = format!("{} was removed from the config", request.requester);
            match &request.state {
                State::Pending
                    if now < request.lapses_at && self.end_pending(&request.id, &why)? =>
                {
                    touched.push(request.id.clone());
                }
                State::Issued(i) if now < i.valid_before => {
                    match self.revoke_as(DAEMON, &request.id, &why, EventKind::Revoked, None) {
                        Ok(_) => touched.push(request.id.clone()),
                        // Expired or revoked meanwhile: nothing left to end.
                        Err(AuthorityError::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                _ => {}
            }
        }
        Ok(touched)
    }

    fn end_pending(&self, id: &str, why: &str) -> Result<bool, AuthorityError> {
        loop {
            let current = self.find(id)?;
            if !matches!(current.request.state, State::Pending) {
                return Ok(false);
            }
            let mut next = current.request.clone();
            next.state = State::Denied {
                by: DAEMON.to_string(),
                at: Utc::now(),
                reason: why.to_string(),
            };
            let mut event = audit::about(EventKind::Denied, DAEMON, &next);
            event.reason = Some(why.to_string());
            match self.store.replace_request(&current, &next, &[event])? {
                Swap::Done => {
                    self.durable()?;
                    self.announce(id);
                    return Ok(true);
                }
                Swap::Conflict => continue,
            }
        }
    }

    /// Puts a new policy in force (a config reload), then ends the access of anyone it no
    /// longer names. Recorded with the users added and removed.
    pub fn reload(&self, policy: jitca_policy::Policy, file: &Path) -> Result<(), AuthorityError> {
        let old = self.policy();
        let names = |p: &jitca_policy::Policy| -> BTreeSet<String> {
            p.users().map(|u| u.name.clone()).collect()
        };
        let (before, after) = (names(&old), names(&policy));
        *self.policy.write().expect("policy lock") = std::sync::Arc::new(policy);
        self.record(
            AuditRecord::new(EventKind::ConfigReloaded, DAEMON)
                .with("file", file.display().to_string())
                .with("users_added", after.difference(&before).collect::<Vec<_>>())
                .with(
                    "users_removed",
                    before.difference(&after).collect::<Vec<_>>(),
                ),
        )?;
        let ended = self.end_access_of_removed_users()?;
        tracing::info!(file = %file.display(), ended = ended.len(), "config reloaded");
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
