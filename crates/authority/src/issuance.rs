//! The issuance order, in one function, and the two ways a certificate leaves the daemon.
//!
//! Every certificate is issued by [`Authority::issue`]: a serial is taken, the approved
//! request is signed, the issued request is written with its audit records in one atomic
//! step, and everything is made durable; only then is there a [`Recorded`] issuance, and only
//! a [`Recorded`] gives a [`Certificate`]. Both a request that needs no approval and the last
//! approval of one that does go through here.

use chrono::{DateTime, Utc};
use jitca_store::{AuditRecord, Request, State};

use crate::states::{Approved, Certificate, Recorded};
use crate::swap::Attempt;
use crate::{Authority, AuthorityError, Caller, audit};

impl Authority {
    /// Issues the certificate of `approved`: serial, signature, the write of the issued
    /// request with `events` and its issuance record (by `actor`), durable. A conflicting
    /// write (the request changed since it was read, or a new request's id was taken) is
    /// returned for the caller to read again and decide again; the serial taken is then
    /// simply never used.
    pub(crate) fn issue(
        &self,
        approved: Approved,
        mut events: Vec<AuditRecord>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Attempt<Recorded>, AuthorityError> {
        let serial = self.store.next_serial()?;
        let signed = approved.sign(&self.signer, serial, now)?;
        events.push(audit::issued(signed.request(), signed.issuance(), actor));
        signed.record(self, &events)
    }

    /// The requester's issued certificate, while it is valid, for `get` (recorded). Durable
    /// before it is returned.
    pub fn certificate(&self, caller: &Caller, id: &str) -> Result<Certificate, AuthorityError> {
        let request = self.valid_certificate(caller, id)?;
        let serial = request.issuance().map_or(0, |i| i.serial);
        self.store
            .append_audit(&[audit::fetched(&request, caller, serial)])?;
        self.recorded(request)
    }

    /// The certificate for the requester's own waiting session: its issuance event is the
    /// record of it leaving. Durable before it is returned.
    pub fn issued_certificate(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Certificate, AuthorityError> {
        let request = self.valid_certificate(caller, id)?;
        self.recorded(request)
    }

    /// The certificate of an issued request read back. The issuance may have been written by
    /// a swap whose flush (or audit file write) is still running or failed: nothing leaves
    /// before it is durable everywhere.
    fn recorded(&self, request: Request) -> Result<Certificate, AuthorityError> {
        Ok(Recorded::read_back(self, request)?.certificate())
    }

    /// The caller's own request `id`, if it is issued and its certificate still valid.
    fn valid_certificate(&self, caller: &Caller, id: &str) -> Result<Request, AuthorityError> {
        let request = self.find(id)?.request;
        if request.requester != caller.user {
            return Err(AuthorityError::NotFound(id.to_string()));
        }
        let now = Utc::now();
        match &request.state {
            State::Issued(issuance) if now < issuance.valid_before => Ok(request),
            _ => Err(AuthorityError::Conflict(format!(
                "request {id} has no valid certificate: it is {}",
                request.state_name(now)
            ))),
        }
    }
}
