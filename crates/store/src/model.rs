//! The stored form of a request. Serialised as JSON: readable by an operator in a pinch and
//! tolerant of added fields.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A request for access, as made, plus the decisions taken on it. Everything but `approvals`
/// and `state` is fixed when the request is made: an approval is bound to exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub requester: String,
    /// The subject public key, OpenSSH one-line form without comment.
    pub public_key: String,
    /// SHA256 fingerprint of `public_key`.
    pub fingerprint: String,
    pub hosts: Vec<String>,
    pub logins: Vec<String>,
    /// One per (login, host); never empty.
    pub principals: Vec<String>,
    pub duration_secs: u64,
    pub reason: String,
    /// The rule that covered the request when it was made.
    pub rule: String,
    pub approvals_needed: u32,
    pub extensions: Vec<String>,
    pub critical_options: BTreeMap<String, String>,
    /// Where the request came from (the control channel's peer address).
    pub source: String,
    pub created_at: DateTime<Utc>,
    /// A pending request lapses at this time.
    pub lapses_at: DateTime<Utc>,
    pub approvals: Vec<Approval>,
    pub state: State,
}

/// One approval: who, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Where a request stands. Each change from `Pending` happens once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Waiting for approvals.
    Pending,
    /// Approved and signed; the certificate is stored here before it leaves the daemon.
    Issued(Issuance),
    /// An approver ended the request.
    Denied {
        by: String,
        at: DateTime<Utc>,
        reason: String,
    },
    /// Nobody decided before `lapses_at`.
    Lapsed { at: DateTime<Utc> },
    /// Issued, then revoked before it expired (`done`, `revoke`, or the requester removed).
    Revoked {
        issuance: Issuance,
        revocation: Revocation,
    },
}

/// Who ended an issued certificate early, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// The issuance record of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuance {
    pub serial: u64,
    pub key_id: String,
    pub issued_at: DateTime<Utc>,
    pub valid_after: DateTime<Utc>,
    pub valid_before: DateTime<Utc>,
    /// The certificate, OpenSSH one-line form.
    pub certificate: String,
}

impl Request {
    /// The state's name as users see it; an issued certificate past its validity is `expired`.
    pub fn state_name(&self, now: DateTime<Utc>) -> &'static str {
        match &self.state {
            State::Pending if now >= self.lapses_at => "lapsed",
            State::Pending => "pending",
            State::Issued(i) if now >= i.valid_before => "expired",
            State::Issued(_) => "issued",
            State::Denied { .. } => "denied",
            State::Lapsed { .. } => "lapsed",
            State::Revoked { .. } => "revoked",
        }
    }

    /// The certificate's issuance record, whether it is still live or was revoked.
    pub fn issuance(&self) -> Option<&Issuance> {
        match &self.state {
            State::Issued(i) | State::Revoked { issuance: i, .. } => Some(i),
            _ => None,
        }
    }

    pub fn approvers(&self) -> impl Iterator<Item = &str> {
        self.approvals.iter().map(|a| a.by.as_str())
    }
}
