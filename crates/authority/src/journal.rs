//! The audit journal: events that go with no request change (daemon start and stop, refused
//! commands, failed authentications, reads of the log), the auditors' reads and verification
//! of the chain, and durability: the store flushed and the JSON-lines copy caught up, which
//! every path that lets a certificate leave goes through.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use jitca_store::{AuditQuery, AuditRecord, ChainBreak, EventKind, Head, Store};

use crate::audit::{self, AuditFile, AuthFailure, AuthFailureLimiter};
use crate::{Authority, AuthorityError, Caller};

/// The journal's own state: the audit log file, and the rate limit on recording failed
/// authentications.
pub(crate) struct Journal {
    file: Option<AuditFile>,
    auth_failures: Mutex<AuthFailureLimiter>,
}

impl Journal {
    /// Opens the audit log file at `path`, if one is configured; fails if it belongs to
    /// another store.
    pub(crate) fn open(path: Option<&Path>, store: &dyn Store) -> Result<Self, AuthorityError> {
        Ok(Self {
            file: path.map(|path| AuditFile::open(path, store)).transpose()?,
            auth_failures: Mutex::new(AuthFailureLimiter::new()),
        })
    }
}

impl Authority {
    /// Records an event that goes with no request change (daemon start and stop, reloads).
    pub fn record(&self, event: AuditRecord) -> Result<(), AuthorityError> {
        self.store.append_audit(&[event])?;
        self.durable()
    }

    /// Records a refused command: who, the command line, and why.
    pub fn record_refusal(
        &self,
        caller: &Caller,
        line: &str,
        message: &str,
    ) -> Result<(), AuthorityError> {
        self.metrics.command_refused();
        self.record(audit::refused(caller, line, message))
    }

    /// Records a connection that ended without authenticating, within a rate limit. `None`
    /// only closes the rate-limit window, recording how many were not recorded one by one.
    pub fn record_auth_failure(&self, failure: Option<&AuthFailure>) -> Result<(), AuthorityError> {
        let events = self
            .journal
            .auth_failures
            .lock()
            .expect("auth failure limiter")
            .admit(failure, Instant::now());
        if events.is_empty() {
            return Ok(());
        }
        self.store.append_audit(&events)?;
        self.durable()
    }

    /// The audit records matching `query`, for auditors only; the read itself is recorded
    /// first. `visit` returns false to stop.
    pub fn read_audit(
        &self,
        caller: &Caller,
        query: &AuditQuery,
        visit: &mut dyn FnMut(&AuditRecord, &[u8]) -> bool,
    ) -> Result<(), AuthorityError> {
        self.ensure_auditor(caller)?;
        self.record(audit::audit_read(caller, query))?;
        self.store.scan_audit(query, visit)?;
        Ok(())
    }

    /// Verifies the audit chain end to end, for auditors only; the outcome is recorded.
    pub fn verify_audit(
        &self,
        caller: &Caller,
    ) -> Result<Result<Head, ChainBreak>, AuthorityError> {
        self.ensure_auditor(caller)?;
        let outcome = jitca_store::verify_audit(self.store.as_ref())?;
        let event = AuditRecord::new(EventKind::AuditVerified, &caller.user);
        self.record(audit::verified(event, caller, &outcome))?;
        Ok(outcome)
    }

    /// Refuses unless the caller is an auditor.
    pub(crate) fn ensure_auditor(&self, caller: &Caller) -> Result<(), AuthorityError> {
        if self.policy().is_auditor(&caller.user) {
            Ok(())
        } else {
            Err(AuthorityError::Denied(jitca_policy::Denial::NotAuditor))
        }
    }

    /// Whether the store still completes a flush: the watchdog's sign that the daemon can
    /// still do its work (a storage engine stuck inside itself never returns from it).
    pub fn store_alive(&self) -> Result<(), AuthorityError> {
        self.store.flush()?;
        Ok(())
    }

    /// Makes every write so far durable: the store flushed, and the audit file (if any)
    /// caught up and synced. Every path that lets a certificate leave goes through here.
    pub(crate) fn durable(&self) -> Result<(), AuthorityError> {
        self.store.flush()?;
        if let Some(file) = &self.journal.file {
            file.catch_up(self.store.as_ref())?;
        }
        Ok(())
    }
}
