//! What the facade is given: who is calling, what they ask, the lifecycle's settings, and
//! where its notices go.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jitca_metrics::Metrics;
use jitca_store::Request;
use ssh_key::PublicKey;

/// Who is calling: an identified user (from their SSH key), where they connect from, and
/// what second factor their connection proved.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub source: String,
    pub factor: Factor,
}

/// The second factor of a connection: asked once, during authentication, after the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Factor {
    /// The person has no second factor enrolled, so none was asked.
    #[default]
    NotEnrolled,
    /// Enrolled, and answered the code prompt with nothing.
    Skipped,
    /// A valid one-time code, not used before, was given.
    Verified,
    /// The code given was refused; the text says why (wrong, already used, too many tries).
    Failed(String),
}

impl Factor {
    /// Whether the connection proved a second factor.
    pub fn verified(&self) -> bool {
        matches!(self, Factor::Verified)
    }
}

/// What the lifecycle tells the outside world about (webhooks): see [`Notify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A request was made.
    RequestMade,
    /// A request was decided: issued (its last approval, or no approval needed) or denied.
    Decided,
    /// A break-glass certificate was issued.
    BreakGlass,
    /// A certificate was revoked (`done`, `revoke`, or the requester removed).
    Revoked,
    /// A grant that needs a post-access review ended.
    ReviewDue,
}

/// Receives notices; must return at once (deliveries happen elsewhere, never blocking
/// issuance). `by` is who caused it, when a person did.
pub trait Notify: Send + Sync {
    fn notify(&self, notice: Notice, request: &Request, by: Option<&str>);
    /// The daemon signed a checkpoint of the audit chain (text and armored signature).
    fn checkpoint(&self, _signed: &str) {}
}

/// A request as the requester makes it, already syntax-checked.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub hosts: Vec<String>,
    pub logins: Vec<String>,
    pub duration: Duration,
    pub reason: String,
    pub public_key: PublicKey,
    /// Break-glass access: only break-glass rules apply, issued at once without approval.
    pub break_glass: bool,
}

/// Which requests `list` returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter {
    pub pending_only: bool,
    pub mine_only: bool,
    /// Grants that ended without a review: break-glass first, then those whose rule requires
    /// one, then the rest, newest first within each.
    pub unreviewed: bool,
    /// Grants whose certificate was never seen used in the sshd logs read so far.
    pub unused: bool,
}

/// The lifecycle's settings from the config.
#[derive(Clone)]
pub struct Settings {
    pub pending_ttl: Duration,
    /// A JSON-lines copy of the audit log, kept as durable as the store.
    pub audit_log: Option<PathBuf>,
    /// Where to keep the current KRL, replaced atomically on every change.
    pub krl_path: Option<PathBuf>,
    /// Earlier CA keys hosts still trust (a CA key rotation): the KRL revokes the same
    /// serials under them.
    pub earlier_cas: Vec<PublicKey>,
    /// Where notices go (webhooks); `None` sends none.
    pub notify: Option<Arc<dyn Notify>>,
    /// The control channel's own host key: never certified, whoever sends it.
    pub host_key: Option<PublicKey>,
    /// Where the lifecycle counts what it does (and the store's writes are timed).
    pub metrics: Metrics,
}
