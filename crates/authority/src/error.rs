use jitca_policy::Denial;
use jitca_signer::SignerError;
use jitca_store::StoreError;

/// Why an operation on a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The policy does not allow it.
    #[error("{0}")]
    Denied(#[from] Denial),
    /// Refused for a reason other than the policy's rules (a missing second factor, a review
    /// by the requester).
    #[error("{0}")]
    Refused(String),
    /// No request with this id that the caller may see.
    #[error("no request {0}")]
    NotFound(String),
    /// The request is not in a state that allows this (already issued, denied, lapsed...).
    #[error("{0}")]
    Conflict(String),
    /// The caller's input is wrong (the key, the reason...).
    #[error("{0}")]
    Invalid(String),
    /// The store failed; nothing was issued.
    #[error("the store failed, nothing was issued: {0}")]
    Store(#[from] StoreError),
    /// The audit log file could not be written; no certificate leaves until it can.
    #[error("the audit log file failed, so nothing leaves the daemon: {0}")]
    AuditLog(String),
    /// The KRL could not be built or written.
    #[error("the revocation list could not be published: {0}")]
    Krl(String),
    /// The signer refused or failed; nothing was issued.
    #[error("signing failed, nothing was issued: {0}")]
    Signer(#[from] SignerError),
}
