//! What a command runs with ([`Ctx`]), how it fails ([`Failure`]), and the grammar helpers the
//! command files share. Below the command files and the dispatcher alike, so that neither
//! reaches back into the other.

use std::sync::Arc;

use jitca_authority::{Authority, AuthorityError, Caller};

use crate::args::{Parsed, Spec};
use crate::io::{Output, Stdin};

/// What a command runs with.
pub(crate) struct Ctx {
    pub authority: Arc<Authority>,
    pub caller: Caller,
    /// The key the connection authenticated with ([`Ctx::identify_again`]).
    pub key: russh::keys::PublicKey,
    pub out: Output,
    /// Taken by the command that reads it; the others leave it.
    pub stdin: Option<Stdin>,
    /// `ssh -p PORT jitca@HOST`, for messages that tell what to run next.
    pub hint: Arc<str>,
}

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Refused or bad input: exit 1.
    Refused(String),
    /// The command line does not fit the grammar: exit 2.
    Usage(String),
    /// The store did not answer (a shared database gone): refused, exit 1, and the refusal
    /// is not waited for in the audit log, which lives in the same store.
    Unavailable(String),
}

impl From<AuthorityError> for Failure {
    fn from(e: AuthorityError) -> Self {
        if matches!(
            e,
            AuthorityError::Store(_) | AuthorityError::Signer(_) | AuthorityError::AuditLog(_)
        ) {
            tracing::error!(error = %e, "operation failed");
        }
        if matches!(
            e,
            AuthorityError::Store(jitca_authority::StoreError::Unavailable(_))
        ) {
            return Failure::Unavailable(e.to_string());
        }
        Failure::Refused(e.to_string())
    }
}

pub(crate) type Outcome = Result<(), Failure>;

impl Ctx {
    /// Refuses unless the connection's key still identifies its caller under the policy in
    /// force: checked before every command, and by `watch` at every reload.
    pub(crate) fn identify_again(&self) -> Result<(), Failure> {
        self.authority
            .identify_again(&self.key, &self.caller.user)
            .map_err(Failure::from)
    }

    /// Runs an authority operation on a blocking thread: it finishes even if the client leaves.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Authority, &Caller) -> Result<T, AuthorityError> + Send + 'static,
    ) -> Result<T, Failure> {
        let authority = self.authority.clone();
        let caller = self.caller.clone();
        tokio::task::spawn_blocking(move || op(&authority, &caller))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "operation panicked");
                Failure::Refused("internal error; nothing was changed or issued".into())
            })?
            .map_err(Failure::from)
    }
}

/// Parses `args` with `spec`, turning a grammar error into a usage failure.
pub(crate) fn grammar(spec: &Spec, args: &[String]) -> Result<Parsed, Failure> {
    spec.parse(args).map_err(Failure::Usage)
}

/// `COMMAND ID`, `mfa confirm CODE`...: the one positional argument of a spec that has no
/// options.
pub(crate) fn sole_positional(spec: &Spec, args: &[String]) -> Result<String, Failure> {
    Ok(grammar(spec, args)?.positionals.remove(0))
}

/// `deny` and `revoke`'s arguments, checked.
#[derive(Debug)]
pub(crate) struct IdAndReason {
    pub id: String,
    /// Checked like a request's reason, and trimmed.
    pub reason: String,
}

/// `COMMAND ID --reason TEXT`: the id, and the reason checked like a request's.
pub(crate) fn id_and_reason(spec: &Spec, args: &[String]) -> Result<IdAndReason, Failure> {
    let mut parsed = grammar(spec, args)?;
    let reason = jitca_policy::check_reason(parsed.value("--reason").unwrap_or_default())
        .map_err(|e| Failure::Refused(e.to_string()))?;
    Ok(IdAndReason {
        id: parsed.positionals.remove(0),
        reason,
    })
}
