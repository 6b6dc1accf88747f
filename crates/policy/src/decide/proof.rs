//! Proofs the policy hands out: values only this crate can make, that the lifecycle needs to
//! take a step.
//!
//! The lifecycle cannot create a request without a [`Decided`] (only [`Policy::decide`]
//! returns one) and cannot record an approval without an [`Eligible`] (only
//! [`Policy::check_approver`] returns one). Their fields are private and they have no public
//! constructor, no `Default`, no `Clone` and no `Deserialize`, so code outside the policy
//! cannot forge or copy the policy's word: it has to ask.
//!
//! [`Policy::decide`]: crate::Policy::decide
//! [`Policy::check_approver`]: crate::Policy::check_approver

use super::Grant;

/// The policy's decision on a request as it is made: `requester` may have exactly `grant`.
#[derive(Debug, PartialEq, Eq)]
pub struct Decided {
    requester: String,
    grant: Grant,
}

impl Decided {
    pub(crate) fn new(requester: &str, grant: Grant) -> Self {
        Self {
            requester: requester.to_string(),
            grant,
        }
    }

    /// Who asked.
    pub fn requester(&self) -> &str {
        &self.requester
    }

    /// What the rule gives them.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }
}

/// Proof that `approver` may approve `requester`'s request under `rule`, as the policy stood
/// when it was checked (the grant was judged again and still given, the approver is another
/// person in one of the rule's approvers groups).
#[derive(Debug, PartialEq, Eq)]
pub struct Eligible {
    approver: String,
    requester: String,
    rule: String,
}

impl Eligible {
    pub(crate) fn new(approver: &str, requester: &str, rule: &str) -> Self {
        Self {
            approver: approver.to_string(),
            requester: requester.to_string(),
            rule: rule.to_string(),
        }
    }

    /// Who may approve.
    pub fn approver(&self) -> &str {
        &self.approver
    }

    /// Whose request.
    pub fn requester(&self) -> &str {
        &self.requester
    }

    /// Under which rule.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}
