//! The authority: the request lifecycle, and the only place where policy, store and signer meet.
//!
//! One order, always: the caller is identified, `policy` decides, `store` keeps the request; an
//! approval is checked against the current policy and recorded with a compare-and-swap; the
//! last approval has the `signer` sign, and the issuance record is stored with the same swap and
//! flushed before any certificate is handed out. Every step appends its audit record in the same
//! atomic write as the change it records. Operations that change state are synchronous
//! (run them on a blocking thread): once started they finish, even if the caller goes away.
//!
//! The lifecycle's states are types ([`states`]): only a recorded issuance gives a
//! [`Certificate`], only an approved request is signed, and only the policy's proof of
//! eligibility approves. [`Authority`] is a thin facade over parts with one idea each.

pub mod audit;
mod caller;
pub mod checkpoint;
mod error;
mod facade;
pub mod governance;
mod issuance;
mod journal;
mod lifecycle;
mod metered;
pub mod mfa;
mod report;
mod revocation;
pub mod states;
mod status;
mod swap;
mod views;

pub use audit::{AuthFailure, parse_time};
pub use caller::{Caller, Factor, ListFilter, NewRequest, Notice, Notify, Settings};
pub use checkpoint::Checkpoint;
pub use error::AuthorityError;
pub use facade::Authority;
pub use governance::{Sighting, UsageReport, read_sshd_log, record_usage};
pub use jitca_store::{
    Approval, AuditQuery, AuditRecord, ChainBreak, EventKind, Head, Issuance, Request, Review,
    ReviewOutcome, Revocation, State, StoreError, Usage,
};
pub use lifecycle::{Made, grant_of};
pub use revocation::{KRL_GRACE, KrlStatus, PathFailure};
pub use states::Certificate;
pub use status::{CertState, SerialStatus};
pub use views::{RuleSummary, Whoami};
