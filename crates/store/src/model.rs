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
    /// Made under a break-glass rule: issued at once without approval, reviewed afterwards.
    #[serde(default, skip_serializing_if = "is_false")]
    pub break_glass: bool,
    /// The grant needs a post-access review once it ends (break-glass, or `review: required`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub review_required: bool,
    /// The requester's connection had a verified second factor when the request was made.
    #[serde(default, skip_serializing_if = "is_false")]
    pub requester_mfa: bool,
    /// The post-access review, once recorded; recorded once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// Set once the sweeper has announced that the ended grant's review is due.
    #[serde(default, skip_serializing_if = "is_false")]
    pub review_due_announced: bool,
    /// Logins with the certificate seen in `sshd` logs (`usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// A post-access review: who looked at a grant after it ended, and what they found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub by: String,
    pub at: DateTime<Utc>,
    pub outcome: ReviewOutcome,
    pub note: String,
}

/// What a reviewer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewOutcome {
    /// The access was used as asked.
    Ok,
    /// Something needs following up (the note says what).
    Concern,
}

impl ReviewOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Concern => "concern",
        }
    }
}

/// Logins with a grant's certificate, as read from `sshd` logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Accepted logins seen.
    pub logins: u64,
    /// The earliest and latest of them, when the log lines carried a time.
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// The hosts (log line host names) they were seen on, when the lines named one.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Digests of the log lines counted, so a log read twice counts nothing twice.
    #[serde(default)]
    pub seen: Vec<String>,
}

/// One approval: who, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    pub at: DateTime<Utc>,
    /// The approver's connection had a verified second factor.
    #[serde(default, skip_serializing_if = "is_false")]
    pub mfa: bool,
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

    /// When the sweeper must look at this request next: a pending request lapses at
    /// `lapses_at`; an issued grant that needs a review has it announced when it expires.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::Pending => Some(self.lapses_at),
            State::Issued(i)
                if self.review_required && self.review.is_none() && !self.review_due_announced =>
            {
                Some(i.valid_before)
            }
            _ => None,
        }
    }

    /// Whether the grant was issued and has ended (expired or revoked).
    pub fn ended(&self, now: DateTime<Utc>) -> bool {
        match &self.state {
            State::Issued(i) => now >= i.valid_before,
            State::Revoked { .. } => true,
            _ => false,
        }
    }

    pub fn approvers(&self) -> impl Iterator<Item = &str> {
        self.approvals.iter().map(|a| a.by.as_str())
    }
}
