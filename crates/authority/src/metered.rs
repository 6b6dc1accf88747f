//! The store as the authority sees it: every call passed on, with its writes timed, its
//! failures counted, and the gauges that follow from the writes (pending requests, audit
//! records) kept up to date, whichever part of the lifecycle made the change.

use std::time::Instant;

use chrono::{DateTime, Utc};
use jitca_metrics::Metrics;
use jitca_store::{
    AuditQuery, AuditRecord, Head, KrlState, Request, SecondFactor, State, Store, StoreError, Swap,
    Versioned, VersionedFactor,
};

pub(crate) struct Metered {
    inner: std::sync::Arc<dyn Store>,
    metrics: Metrics,
}

impl Metered {
    /// Wraps `inner`, first setting the gauges from what it holds (one read of every request).
    pub(crate) fn new(
        inner: std::sync::Arc<dyn Store>,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        set_gauges(inner.as_ref(), &metrics)?;
        Ok(Self { inner, metrics })
    }

    /// Counts a failure (a clash of new request ids is the caller's to retry, not one).
    fn read<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if matches!(&result, Err(e) if !matches!(e, StoreError::Exists(_))) {
            self.metrics.store_error();
        }
        result
    }

    /// Times a write and counts its failure.
    fn write<T>(
        &self,
        op: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = op(self.inner.as_ref());
        self.metrics.store_write(started.elapsed());
        self.read(result)
    }
}

/// Sets the gauges from what `store` holds (one read of every request): at start, and now and
/// then when other daemons change the store too.
pub(crate) fn set_gauges(store: &dyn Store, metrics: &Metrics) -> Result<(), StoreError> {
    let pending = store
        .requests()?
        .iter()
        .filter(|r| matches!(r.state, State::Pending))
        .count();
    metrics.set_pending(pending as u64);
    metrics.set_audit_records(store.audit_head()?.seq);
    metrics.set_krl_version(store.krl_state()?.version);
    Ok(())
}

fn pending(request: &Request) -> i64 {
    i64::from(matches!(request.state, State::Pending))
}

impl Store for Metered {
    fn create_request(&self, request: &Request, events: &[AuditRecord]) -> Result<(), StoreError> {
        let result = self.write(|s| s.create_request(request, events));
        if result.is_ok() {
            self.metrics.pending_changed(pending(request));
            self.metrics.audit_appended(events.len());
        }
        result
    }

    fn request(&self, id: &str) -> Result<Option<Versioned>, StoreError> {
        self.read(self.inner.request(id))
    }

    fn requests(&self) -> Result<Vec<Request>, StoreError> {
        self.read(self.inner.requests())
    }

    fn due(&self, now: DateTime<Utc>) -> Result<Vec<Request>, StoreError> {
        self.read(self.inner.due(now))
    }

    fn replace_request(
        &self,
        current: &Versioned,
        next: &Request,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError> {
        let result = self.write(|s| s.replace_request(current, next, events));
        if let Ok(Swap::Done) = result {
            self.metrics
                .pending_changed(pending(next) - pending(&current.request));
            self.metrics.audit_appended(events.len());
        }
        result
    }

    fn next_serial(&self) -> Result<u64, StoreError> {
        self.write(|s| s.next_serial())
    }

    fn append_audit(&self, events: &[AuditRecord]) -> Result<Head, StoreError> {
        let head = self.write(|s| s.append_audit(events))?;
        self.metrics.set_audit_records(head.seq);
        Ok(head)
    }

    fn audit_head(&self) -> Result<Head, StoreError> {
        self.read(self.inner.audit_head())
    }

    fn scan_audit(
        &self,
        query: &AuditQuery,
        visit: &mut dyn FnMut(&AuditRecord, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.read(self.inner.scan_audit(query, visit))
    }

    fn raw_audit(&self, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        self.read(self.inner.raw_audit(visit))
    }

    fn krl_state(&self) -> Result<KrlState, StoreError> {
        self.read(self.inner.krl_state())
    }

    fn bump_krl(&self, now: DateTime<Utc>) -> Result<KrlState, StoreError> {
        let state = self.write(|s| s.bump_krl(now))?;
        self.metrics.set_krl_version(state.version);
        Ok(state)
    }

    fn mark(&self, name: &str) -> Result<u64, StoreError> {
        self.read(self.inner.mark(name))
    }

    fn set_mark(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.write(|s| s.set_mark(name, value))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.write(|s| s.flush())
    }

    fn second_factor(&self, user: &str) -> Result<Option<VersionedFactor>, StoreError> {
        self.read(self.inner.second_factor(user))
    }

    fn follow(&self, on_change: jitca_store::ChangeHook) {
        self.inner.follow(on_change);
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    fn swap_second_factor(
        &self,
        user: &str,
        current: Option<&VersionedFactor>,
        next: Option<&SecondFactor>,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError> {
        let result = self.write(|s| s.swap_second_factor(user, current, next, events));
        if let Ok(Swap::Done) = result {
            self.metrics.audit_appended(events.len());
        }
        result
    }
}
