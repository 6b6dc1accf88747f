//! `status`: what hosts ask about the certificates of their open sessions, so that
//! `jitca-krl-refresh` can end a session whose certificate has expired (sshd's log does not
//! carry a certificate's validity).

use chrono::{DateTime, Utc};
use jitca_store::{AuditQuery, Request, State, Store, StoreError};

use crate::{Authority, AuthorityError};

/// Where the certificate with one serial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertState {
    /// Issued and still within its validity.
    Live,
    /// Revoked before it expired (`done`, `revoke`, the requester removed).
    Revoked,
    /// Issued, and past its validity.
    Expired,
    /// No certificate with this serial was issued here.
    Unknown,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Live => "live",
            CertState::Revoked => "revoked",
            CertState::Expired => "expired",
            CertState::Unknown => "unknown",
        }
    }
}

/// One line of `status`: the serial, its state, and when the certificate stops being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialStatus {
    pub serial: u64,
    pub state: CertState,
    /// `None` when the serial is unknown.
    pub valid_before: Option<DateTime<Utc>>,
}

impl Authority {
    /// The state of each certificate serial, in the order asked. Each serial is found through
    /// the audit log's serial index (the issuance record names the request), not by reading
    /// every request.
    pub fn status(&self, serials: &[u64]) -> Result<Vec<SerialStatus>, AuthorityError> {
        let now = Utc::now();
        serials
            .iter()
            .map(|&serial| {
                let request = issued_with(self.store.as_ref(), serial)?;
                Ok(status_of(serial, request.as_ref(), now))
            })
            .collect()
    }
}

/// The request whose certificate has `serial`, if one was issued: the audit records carrying
/// the serial name their request, whose own issuance record must carry the same serial.
fn issued_with(store: &dyn Store, serial: u64) -> Result<Option<Request>, StoreError> {
    if serial == 0 {
        // Never handed out.
        return Ok(None);
    }
    let query = AuditQuery {
        serial: Some(serial),
        ..AuditQuery::default()
    };
    let mut ids: Vec<String> = Vec::new();
    store.scan_audit(&query, &mut |record, _| {
        if let Some(id) = &record.request
            && !ids.contains(id)
        {
            ids.push(id.clone());
        }
        // The issuance record comes first; a few more ids are enough to be sure.
        ids.len() < 4
    })?;
    for id in ids {
        if let Some(found) = store.request(&id)?
            && found.request.issuance().is_some_and(|i| i.serial == serial)
        {
            return Ok(Some(found.request));
        }
    }
    Ok(None)
}

/// What `status` says of `serial`, given the request that issued it (if any).
fn status_of(serial: u64, request: Option<&Request>, now: DateTime<Utc>) -> SerialStatus {
    let (state, valid_before) = match request.map(|r| &r.state) {
        Some(State::Issued(i)) if i.serial == serial && now < i.valid_before => {
            (CertState::Live, Some(i.valid_before))
        }
        Some(State::Issued(i)) if i.serial == serial => (CertState::Expired, Some(i.valid_before)),
        Some(State::Revoked { issuance, .. }) if issuance.serial == serial => {
            (CertState::Revoked, Some(issuance.valid_before))
        }
        _ => (CertState::Unknown, None),
    };
    SerialStatus {
        serial,
        state,
        valid_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use jitca_store::{Issuance, Revocation};

    fn issuance(serial: u64, valid_before: DateTime<Utc>) -> Issuance {
        Issuance {
            serial,
            key_id: format!("jitca:r{serial}:alice:approvers=bob"),
            issued_at: valid_before - TimeDelta::hours(1),
            valid_after: valid_before - TimeDelta::hours(1),
            valid_before,
            certificate: String::new(),
        }
    }

    fn request(state: State) -> Request {
        let at = Utc::now();
        Request {
            id: "r7k2m9x4ab".into(),
            requester: "alice".into(),
            public_key: "ssh-ed25519 AAAA".into(),
            fingerprint: "SHA256:x".into(),
            hosts: vec!["web1".into()],
            logins: vec!["root".into()],
            principals: vec!["root@web1".into()],
            duration_secs: 3600,
            reason: "INC-1".into(),
            rule: "dev-web".into(),
            approvals_needed: 1,
            extensions: Vec::new(),
            critical_options: Default::default(),
            source: "127.0.0.1:1".into(),
            created_at: at,
            lapses_at: at,
            approvals: Vec::new(),
            state,
            break_glass: false,
            review_required: false,
            requester_mfa: false,
            review: None,
            review_due_announced: false,
            usage: None,
        }
    }

    #[test]
    fn live_expired_revoked_and_unknown() {
        let now = Utc::now();
        let later = now + TimeDelta::minutes(5);
        let live = request(State::Issued(issuance(7, later)));
        let s = status_of(7, Some(&live), now);
        assert_eq!((s.state, s.valid_before), (CertState::Live, Some(later)));

        // At valid_before exactly, the certificate is no longer valid.
        let s = status_of(7, Some(&live), later);
        assert_eq!((s.state, s.valid_before), (CertState::Expired, Some(later)));

        let revoked = request(State::Revoked {
            issuance: issuance(8, later),
            revocation: Revocation {
                by: "bob".into(),
                at: now,
                reason: "done".into(),
            },
        });
        let s = status_of(8, Some(&revoked), now);
        assert_eq!((s.state, s.valid_before), (CertState::Revoked, Some(later)));
        // Revoked stays revoked after expiry.
        assert_eq!(
            status_of(8, Some(&revoked), later).state,
            CertState::Revoked
        );

        for (serial, r) in [(9, None), (7, Some(&revoked)), (8, Some(&live))] {
            let s = status_of(serial, r, now);
            assert_eq!((s.state, s.valid_before), (CertState::Unknown, None));
        }
        assert_eq!(
            status_of(1, Some(&request(State::Pending)), now).state,
            CertState::Unknown
        );
    }

    #[test]
    fn names_are_the_words_hosts_read() {
        let names: Vec<_> = [
            CertState::Live,
            CertState::Revoked,
            CertState::Expired,
            CertState::Unknown,
        ]
        .iter()
        .map(|s| s.as_str())
        .collect();
        assert_eq!(names, ["live", "revoked", "expired", "unknown"]);
    }
}
