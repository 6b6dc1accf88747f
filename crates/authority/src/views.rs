//! What the control channel may learn of the policy in force, asked of the authority.
//!
//! Control never holds a [`Policy`](jitca_policy::Policy) of its own: each question here reads
//! the policy in force at the moment it is asked, so an answer never comes from a config that
//! a reload has replaced, and the rules of who may see or approve what live in one place (the
//! policy), reached through one door (the authority). The answers are plain owned values:
//! nothing borrowed from a policy that may be swapped out while a command runs.

use std::time::Duration;

use jitca_store::Request;
use ssh_key::PublicKey;

use crate::{Authority, AuthorityError, Caller, grant_of};

/// What `whoami` shows a person: their groups, what they may request and approve, and their
/// standing roles, under the policy in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whoami {
    /// Their groups, as written in the config.
    pub groups: Vec<String>,
    /// The rules they may request under, in the config's order.
    pub may_request: Vec<RuleSummary>,
    /// The rules whose requests they may approve, in the config's order.
    pub may_approve: Vec<RuleSummary>,
    /// Whether they may read the audit log and its reports.
    pub auditor: bool,
    /// Whether they are an operator (resets second factors, sees the KRL's state).
    pub operator: bool,
}

/// One rule, as the people it concerns may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary {
    pub name: String,
    /// Groups whose members may request under it.
    pub requesters: Vec<String>,
    /// The hosts it covers, its host groups resolved.
    pub hosts: Vec<String>,
    pub logins: Vec<String>,
    /// The longest certificate it grants.
    pub max_duration: Duration,
    /// Distinct approvals needed; 0 means approved on request.
    pub approvals: u32,
    /// Groups whose members may approve.
    pub approvers: Vec<String>,
    /// The pattern a reason must match, as written.
    pub reason_pattern: Option<String>,
    pub break_glass: bool,
    pub review_required: bool,
    pub requester_mfa: bool,
    pub approver_mfa: bool,
}

impl Authority {
    /// The user `key` identifies under the policy in force, if any: how a connection learns
    /// who is calling.
    pub fn identify(&self, key: &PublicKey) -> Option<String> {
        self.policy().identify(key).map(|user| user.name.clone())
    }

    /// Refuses unless `caller` is an auditor now, with the refusal an auditor-only operation
    /// gives. For commands that must refuse before they read their input (a log, a checkpoint
    /// on stdin); the operations themselves check again.
    pub fn check_auditor(&self, caller: &Caller) -> Result<(), AuthorityError> {
        self.ensure_auditor(caller)
    }

    /// Whether `caller` may approve `request` under the policy in force (what `watch` shows).
    pub fn may_approve(&self, caller: &Caller, request: &Request) -> bool {
        self.policy()
            .check_approver(&caller.user, &request.requester, &grant_of(request))
            .is_ok()
    }

    /// Who may approve `request` under the policy in force (what `show` lists); empty when
    /// the policy no longer grants it.
    pub fn eligible_approvers(&self, request: &Request) -> Vec<String> {
        self.policy()
            .eligible_approvers(&request.requester, &grant_of(request))
    }

    /// What `whoami` shows `caller`.
    pub fn whoami(&self, caller: &Caller) -> Whoami {
        let policy = self.policy();
        let name = caller.user.as_str();
        let summary = |rule: &jitca_policy::Rule| RuleSummary {
            name: rule.name.clone(),
            requesters: rule.requesters.clone(),
            hosts: policy.hosts_of_rule(rule),
            logins: rule.logins.clone(),
            max_duration: rule.max_duration,
            approvals: rule.approvals,
            approvers: rule.approvers.clone(),
            reason_pattern: rule.reason_pattern.as_ref().map(|p| p.as_str().to_string()),
            break_glass: rule.break_glass,
            review_required: rule.review_required,
            requester_mfa: rule.requester_mfa,
            approver_mfa: rule.approver_mfa,
        };
        Whoami {
            groups: policy
                .user(name)
                .map(|u| u.groups.clone())
                .unwrap_or_default(),
            may_request: policy
                .rules_requestable_by(name)
                .into_iter()
                .map(summary)
                .collect(),
            may_approve: policy
                .rules_approvable_by(name)
                .into_iter()
                .map(summary)
                .collect(),
            auditor: policy.is_auditor(name),
            operator: policy.is_operator(name),
        }
    }
}
