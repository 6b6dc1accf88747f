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
        self.policy()
            .identify(&key.to_bytes().unwrap_or_default())
            .map(|user| user.name.clone())
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use jitca_policy::{Denial, Policy};
    use jitca_signer::CertAuthority;
    use jitca_store::SledStore;
    use ssh_key::PrivateKey;

    use super::*;
    use crate::{Factor, NewRequest, Settings};

    /// alice (dev) requests, bob and carol (sre) approve `web`, ivy audits, olga operates.
    const PEOPLE: [(&str, &str); 5] = [
        ("alice", "dev"),
        ("bob", "sre"),
        ("carol", "sre"),
        ("ivy", "audit"),
        ("olga", "ops"),
    ];

    struct World {
        _dir: tempfile::TempDir,
        authority: Authority,
        keys: Vec<PrivateKey>,
    }

    /// The config with everyone but `removed`.
    fn policy(keys: &[PrivateKey], removed: &[&str]) -> Policy {
        let mut users = String::new();
        for ((name, group), key) in PEOPLE.iter().zip(keys) {
            if !removed.contains(name) {
                users.push_str(&format!(
                    "  {name}:\n    keys: [\"{}\"]\n    groups: [{group}]\n",
                    key.public_key().to_openssh().unwrap()
                ));
            }
        }
        let text = format!(
            "users:\n{users}hosts:\n  web: [web1, web2]\nrules:\n\
             \x20 - name: dev-web\n    requesters: [dev]\n    hosts: [web]\n    logins: [root, deploy]\n    max_duration: 2h\n    approvals: 1\n    approvers: [sre]\n    reason_pattern: 'INC-[0-9]+'\n    review: required\n\
             auditors: [audit]\noperators: [ops]\n"
        );
        jitca_policy::parse(&text, Path::new("/etc/jitca/jitca.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .policy
    }

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<_> = PEOPLE
            .iter()
            .map(|(name, _)| jitca_signer::generate_ed25519(name).unwrap())
            .collect();
        let store = Arc::new(SledStore::open(&dir.path().join("data")).unwrap());
        let ca = jitca_signer::generate_ed25519("ca").unwrap();
        let authority = Authority::new(
            policy(&keys, &[]),
            Settings {
                pending_ttl: Duration::from_secs(3600),
                audit_log: None,
                krl_path: None,
                earlier_cas: Vec::new(),
                notify: None,
                host_key: None,
                metrics: Default::default(),
            },
            store,
            CertAuthority::from_key(ca).unwrap(),
        )
        .unwrap();
        World {
            _dir: dir,
            authority,
            keys,
        }
    }

    fn caller(user: &str) -> Caller {
        Caller {
            user: user.into(),
            source: "127.0.0.1:1".into(),
            factor: Factor::NotEnrolled,
        }
    }

    #[test]
    fn who_a_key_is_and_what_whoami_shows_come_from_the_policy_in_force() {
        let w = world();
        let a = &w.authority;
        assert_eq!(a.identify(w.keys[0].public_key()).as_deref(), Some("alice"));
        let stranger = jitca_signer::generate_ed25519("stranger").unwrap();
        assert_eq!(a.identify(stranger.public_key()), None);

        let alice = a.whoami(&caller("alice"));
        assert_eq!(alice.groups, ["dev"]);
        assert!(alice.may_approve.is_empty() && !alice.auditor && !alice.operator);
        let [rule] = alice.may_request.as_slice() else {
            panic!("{alice:?}");
        };
        assert_eq!(
            rule,
            &RuleSummary {
                name: "dev-web".into(),
                requesters: vec!["dev".into()],
                hosts: vec!["web1".into(), "web2".into()],
                logins: vec!["root".into(), "deploy".into()],
                max_duration: Duration::from_secs(7200),
                approvals: 1,
                approvers: vec!["sre".into()],
                reason_pattern: Some("INC-[0-9]+".into()),
                break_glass: false,
                review_required: true,
                requester_mfa: false,
                approver_mfa: false,
            }
        );
        let bob = a.whoami(&caller("bob"));
        assert!(bob.may_request.is_empty());
        assert_eq!(bob.may_approve, alice.may_request);
        assert!(a.whoami(&caller("ivy")).auditor);
        assert!(a.whoami(&caller("olga")).operator);

        // Only auditors pass, and the refusal is the policy's own.
        a.check_auditor(&caller("ivy")).unwrap();
        let refused = a.check_auditor(&caller("alice")).unwrap_err();
        assert!(matches!(
            refused,
            AuthorityError::Denied(Denial::NotAuditor)
        ));
        assert_eq!(refused.to_string(), Denial::NotAuditor.to_string());

        // After a reload without bob, his key is nobody's and he has nothing.
        a.reload(policy(&w.keys, &["bob"]), Path::new("test.yaml"))
            .unwrap();
        assert_eq!(a.identify(w.keys[1].public_key()), None);
        let gone = a.whoami(&caller("bob"));
        assert!(gone.groups.is_empty() && gone.may_approve.is_empty());
    }

    #[test]
    fn who_may_approve_a_request_follows_the_policy_in_force() {
        let w = world();
        let a = &w.authority;
        let request = a
            .submit(
                &caller("alice"),
                NewRequest {
                    hosts: vec!["web1".into()],
                    logins: vec!["root".into()],
                    duration: Duration::from_secs(1800),
                    reason: "INC-7 disk full".into(),
                    public_key: w.keys[0].public_key().clone(),
                    break_glass: false,
                },
            )
            .unwrap();
        assert_eq!(a.eligible_approvers(&request), ["bob", "carol"]);
        assert!(a.may_approve(&caller("bob"), &request));
        // Never one's own request; never outside the approver groups, auditors included.
        assert!(!a.may_approve(&caller("alice"), &request));
        assert!(!a.may_approve(&caller("ivy"), &request));

        a.reload(policy(&w.keys, &["bob"]), Path::new("test.yaml"))
            .unwrap();
        assert_eq!(a.eligible_approvers(&request), ["carol"]);
        assert!(!a.may_approve(&caller("bob"), &request));
        assert!(a.may_approve(&caller("carol"), &request));
    }
}
