//! `report`: the period report for auditors, built by `jitca_report` from the verified chain
//! and the policy in force; the read itself is recorded first, like every audit read.

use chrono::Utc;
use jitca_report::{Period, Report};
use jitca_store::AuditQuery;

use crate::{Authority, AuthorityError, Caller};

impl Authority {
    /// The report for `period`, for auditors only. `format` is only recorded.
    pub fn report(
        &self,
        caller: &Caller,
        period: Period,
        format: &str,
    ) -> Result<Report, AuthorityError> {
        self.ensure_auditor(caller)?;
        let query = AuditQuery {
            since: period.since,
            until: period.until,
            ..AuditQuery::default()
        };
        self.record(crate::audit::audit_read(caller, &query).with("report", format))?;
        let policy = self.policy();
        Ok(jitca_report::build(
            self.store.as_ref(),
            Some(&policy),
            period,
            Utc::now(),
        )?)
    }
}
