// The lifecycle cases, included by tests/lifecycle.rs (against MemoryStore) and by
// tests/lifecycle_postgres.rs (against PostgreSQL): each defines `fresh_store()`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use Kind::*;
use chrono::Utc;
use jitca_authority::{
    AuditQuery, AuditRecord, Authority, AuthorityError, Caller, EventKind, Factor, Head,
    ListFilter, NewRequest, Request, Settings, State,
};
use jitca_policy::Denial;
use jitca_signer::CertAuthority;
use jitca_store::Store;
use ssh_key::{Certificate, HashAlg, PrivateKey, PublicKey};

/// Everyone in the config, with their group: requesters (dev), approvers (sre), an auditor.
const PEOPLE: [(&str, &str); 6] = [
    ("alice", "dev"),
    ("dave", "dev"),
    ("bob", "sre"),
    ("carol", "sre"),
    ("frank", "sre"),
    ("ivy", "audit"),
];

/// One host group and one rule per thing a rule can ask for, all requested by dev and (but
/// `dev-lab`) approved by sre: two approvals (pair1), one (web1), none (lab1), a ticket
/// reference in the reason (tix1), the requester's one-time code (sec1), the approvers' one
/// (grd1), and break-glass access to web1.
const RULES: &str = "\
hosts:
  pairs: [pair1]
  web: [web1]
  lab: [lab1]
  tickets: [tix1]
  secure: [sec1]
  guarded: [grd1]
rules:
  - name: dev-pair
    requesters: [dev]
    hosts: [pairs]
    logins: [root]
    max_duration: 1h
    approvals: 2
    approvers: [sre]
  - name: dev-web
    requesters: [dev]
    hosts: [web]
    logins: [root]
    max_duration: 1h
    approvals: 1
    approvers: [sre]
  - name: dev-lab
    requesters: [dev]
    hosts: [lab]
    logins: [root]
    max_duration: 1h
    approvals: 0
  - name: dev-ticket
    requesters: [dev]
    hosts: [tickets]
    logins: [root]
    max_duration: 1h
    approvals: 1
    approvers: [sre]
    reason_pattern: \"^INC-[0-9]+\"
  - name: dev-secure
    requesters: [dev]
    hosts: [secure]
    logins: [root]
    max_duration: 1h
    approvals: 1
    approvers: [sre]
    requester_mfa: totp
  - name: dev-guarded
    requesters: [dev]
    hosts: [guarded]
    logins: [root]
    max_duration: 1h
    approvals: 1
    approvers: [sre]
    approver_mfa: totp
  - name: dev-glass
    requesters: [dev]
    hosts: [web]
    logins: [root]
    max_duration: 1h
    break_glass: true
    approvers: [sre]
auditors: [audit]
";

/// The one place a policy is made from YAML (so a change of `jitca_policy::parse` is adapted
/// here alone).
fn policy(text: &str) -> jitca_policy::Policy {
    jitca_policy::parse(text, Path::new("/etc/jitca/jitca.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .policy
}

struct World {
    authority: Authority,
    /// The store under the authority, read directly to see what a call left behind.
    store: Arc<dyn Store>,
    keys: Vec<(&'static str, PrivateKey)>,
    ca: PrivateKey,
    host: PrivateKey,
}

fn key(comment: &str) -> PrivateKey {
    jitca_signer::generate_ed25519(comment).unwrap()
}

fn caller(user: &str, factor: Factor) -> Caller {
    Caller {
        user: user.into(),
        source: "192.0.2.7:40000".into(),
        factor,
    }
}

fn plain(user: &str) -> Caller {
    caller(user, Factor::NotEnrolled)
}

impl World {
    fn new() -> World {
        World::with_ttl(Duration::from_secs(3600))
    }

    /// A world whose pending requests lapse after `pending_ttl`.
    fn with_ttl(pending_ttl: Duration) -> World {
        let keys: Vec<_> = PEOPLE.iter().map(|(n, _)| (*n, key(n))).collect();
        let ca = key("ca");
        let host = key("host");
        let store = fresh_store();
        let authority = Authority::new(
            policy(&config(&keys, &[])),
            Settings {
                pending_ttl,
                audit_log: None,
                krl_path: None,
                earlier_cas: Vec::new(),
                notify: None,
                host_key: Some(host.public_key().clone()),
                metrics: Default::default(),
            },
            store.clone(),
            CertAuthority::from_key(ca.clone()).unwrap(),
        )
        .unwrap();
        World {
            authority,
            store,
            keys,
            ca,
            host,
        }
    }

    fn key_of(&self, who: &str) -> &PrivateKey {
        &self.keys.iter().find(|(n, _)| *n == who).unwrap().1
    }

    /// Puts in force the config without `removed`.
    fn reload_without(&self, removed: &[&str]) {
        self.authority
            .reload(
                policy(&config(&self.keys, removed)),
                Path::new("jitca.yaml"),
            )
            .unwrap();
    }

    /// `who` asks for root on `host` for 30 minutes, with their registered key.
    fn ask(&self, who: &str, host: &str, reason: &str) -> NewRequest {
        NewRequest {
            hosts: vec![host.into()],
            logins: vec!["root".into()],
            duration: Duration::from_secs(1800),
            reason: reason.into(),
            public_key: self.key_of(who).public_key().clone(),
            break_glass: false,
        }
    }

    fn submit(&self, who: &str, host: &str, reason: &str) -> Result<Request, AuthorityError> {
        self.authority
            .submit(&plain(who), self.ask(who, host, reason))
    }

    fn approve(&self, who: &str, id: &str) -> Result<Request, AuthorityError> {
        self.authority.approve(&plain(who), id)
    }

    fn get(&self, id: &str) -> Request {
        self.authority.current(id).unwrap()
    }

    fn head(&self) -> Head {
        self.store.audit_head().unwrap()
    }

    /// The audit records matching `query`, in order.
    fn records(&self, query: &AuditQuery) -> Vec<AuditRecord> {
        let mut found = Vec::new();
        self.store
            .scan_audit(query, &mut |r, _| {
                found.push(r.clone());
                true
            })
            .unwrap();
        found
    }

    /// The kinds of the audit records about request `id`, in order.
    fn story(&self, id: &str) -> Vec<EventKind> {
        let query = AuditQuery {
            request: Some(id.into()),
            ..AuditQuery::default()
        };
        self.records(&query).iter().map(|r| r.event).collect()
    }

    /// Whether the current KRL revokes `serial`.
    fn krl_revokes(&self, serial: u64) -> bool {
        let krl = jitca_krl::decode(&self.authority.krl().unwrap()).unwrap();
        krl.certificates
            .iter()
            .any(|s| s.serial_ranges.iter().any(|r| r.contains(&serial)))
    }

    /// Runs `attempt`, which must be refused, and checks that it changed no request and
    /// appended no audit record. Returns the refusal.
    fn refused<T: std::fmt::Debug>(
        &self,
        attempt: impl FnOnce() -> Result<T, AuthorityError>,
    ) -> AuthorityError {
        let before = (self.store.requests().unwrap(), self.head());
        let refusal = attempt().expect_err("this must be refused");
        let after = (self.store.requests().unwrap(), self.head());
        assert_eq!(after, before, "the refusal {refusal:?} changed something");
        refusal
    }
}

/// The config text with the people not in `removed`.
fn config(keys: &[(&str, PrivateKey)], removed: &[&str]) -> String {
    let mut users = String::from("users:\n");
    for ((name, group), (_, key)) in PEOPLE.iter().zip(keys) {
        if !removed.contains(name) {
            users.push_str(&format!(
                "  {name}:\n    keys: [\"{}\"]\n    groups: [{group}]\n",
                key.public_key().to_openssh().unwrap()
            ));
        }
    }
    users + RULES
}

/// The kinds of [`AuthorityError`] a refusal can be.
#[derive(Debug)]
enum Kind {
    Denied,
    Refused,
    NotFound,
    Conflict,
    Invalid,
}

/// Asserts that `refusal` is of `kind` and that its message holds each of `words`.
fn says(refusal: &AuthorityError, kind: Kind, words: &[&str]) {
    let right = match kind {
        Kind::Denied => matches!(refusal, AuthorityError::Denied(_)),
        Kind::Refused => matches!(refusal, AuthorityError::Refused(_)),
        Kind::NotFound => matches!(refusal, AuthorityError::NotFound(_)),
        Kind::Conflict => matches!(refusal, AuthorityError::Conflict(_)),
        Kind::Invalid => matches!(refusal, AuthorityError::Invalid(_)),
    };
    assert!(right, "{refusal:?} is not a refusal of kind {kind:?}");
    let text = refusal.to_string();
    for word in words {
        assert!(text.contains(word), "{text:?} does not say {word:?}");
    }
}

fn issued_serial(request: &Request) -> u64 {
    request
        .issuance()
        .unwrap_or_else(|| panic!("{} is not issued: {:?}", request.id, request.state))
        .serial
}

// Submitting.

#[test]
fn a_request_that_needs_approval_waits_pending() {
    let w = World::new();
    let mut changes = w.authority.subscribe();
    let request = w.submit("alice", "web1", "INC-1 disk full").unwrap();
    assert_eq!(request.state_name(Utc::now()), "pending");
    assert!(matches!(request.state, State::Pending));
    assert_eq!(request.requester, "alice");
    assert_eq!(request.rule, "dev-web");
    assert_eq!(request.approvals_needed, 1);
    assert_eq!(request.principals, ["root@web1"]);
    assert_eq!(request.approvers().count(), 0);
    assert!(request.issuance().is_none());
    assert_eq!(
        request.lapses_at - request.created_at,
        chrono::TimeDelta::hours(1)
    );
    assert_eq!(
        request.fingerprint,
        w.key_of("alice")
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    );
    assert_eq!(w.get(&request.id), request);
    assert_eq!(changes.try_recv().unwrap(), request.id);
    let story = w.records(&AuditQuery::default());
    assert_eq!(story.len(), 1);
    assert_eq!(story[0].event, EventKind::Requested);
    assert_eq!(story[0].actor, "alice");
    assert_eq!(story[0].reason.as_deref(), Some("INC-1 disk full"));
    assert_eq!(story[0].source.as_deref(), Some("192.0.2.7:40000"));
}

#[test]
fn a_rule_with_no_approvals_issues_at_once() {
    let w = World::new();
    let request = w.submit("alice", "lab1", "experiment").unwrap();
    assert_eq!(request.state_name(Utc::now()), "issued");
    let issuance = request.issuance().unwrap();
    assert_ne!(issuance.serial, 0);
    assert_eq!(
        issuance.key_id,
        format!("jitca:{}:alice:approvers=none", request.id)
    );
    assert_eq!(w.get(&request.id), request);
    assert_eq!(
        w.story(&request.id),
        [EventKind::Requested, EventKind::Issued]
    );
}

#[test]
fn a_request_the_policy_does_not_allow_is_refused_and_stores_nothing() {
    let w = World::new();
    let refusal = w.refused(|| w.submit("alice", "db9", "x"));
    assert!(matches!(
        &refusal,
        AuthorityError::Denied(Denial::UnknownHost(h)) if h == "db9"
    ));
    says(&refusal, Denied, &["host db9 is not in any host group"]);

    let mut long = w.ask("alice", "web1", "x");
    long.duration = Duration::from_secs(2 * 3600);
    let refusal = w.refused(|| w.authority.submit(&plain("alice"), long));
    assert!(matches!(
        &refusal,
        AuthorityError::Denied(Denial::DurationTooLong { rule, .. }) if rule == "dev-web"
    ));
    says(&refusal, Denied, &["longer than rule dev-web allows"]);

    // Approvers are not requesters here.
    let refusal = w.refused(|| w.submit("bob", "web1", "x"));
    assert!(matches!(
        refusal,
        AuthorityError::Denied(Denial::NoRule { .. })
    ));
    assert!(w.store.requests().unwrap().is_empty());
}

#[test]
fn a_reason_that_misses_the_rules_pattern_is_refused() {
    let w = World::new();
    let refusal = w.refused(|| w.submit("alice", "tix1", "disk full"));
    assert!(matches!(
        &refusal,
        AuthorityError::Denied(Denial::ReasonMismatch { rule, .. }) if rule == "dev-ticket"
    ));
    says(
        &refusal,
        Denied,
        &["rule dev-ticket needs a reason matching", "INC"],
    );
    // The pattern is anchored at the start.
    w.refused(|| w.submit("alice", "tix1", "disk full INC-7"));
    let ticketed = w.submit("alice", "tix1", "INC-7 disk full").unwrap();
    assert!(matches!(ticketed.state, State::Pending));
}

#[test]
fn a_rule_that_asks_requesters_for_a_code_refuses_requests_without_one() {
    let w = World::new();
    let ask = |factor: Factor| {
        w.authority
            .submit(&caller("alice", factor), w.ask("alice", "sec1", "INC-1"))
    };
    let refusal = w.refused(|| ask(Factor::NotEnrolled));
    says(
        &refusal,
        Refused,
        &[
            "rule dev-secure needs a one-time code (TOTP) for requests",
            "no second factor enrolled",
            "mfa enroll",
        ],
    );
    let refusal = w.refused(|| ask(Factor::Skipped));
    says(
        &refusal,
        Refused,
        &["for requests", "enter the code from your authenticator app"],
    );
    let refusal = w.refused(|| ask(Factor::Failed("the code was used already".into())));
    says(
        &refusal,
        Refused,
        &["the code was used already", "connect again with a new code"],
    );
    let made = ask(Factor::Verified).unwrap();
    assert!(made.requester_mfa);
    assert!(matches!(made.state, State::Pending));
}

#[test]
fn only_the_requesters_own_key_is_certified() {
    let w = World::new();
    let ask_with = |key: &PublicKey| {
        let mut new = w.ask("alice", "lab1", "mine");
        new.public_key = key.clone();
        w.authority.submit(&plain("alice"), new)
    };
    for (key, whose) in [
        (w.ca.public_key(), "the CA's key"),
        (w.host.public_key(), "this CA's host key"),
        (w.key_of("bob").public_key(), "registered to another person"),
    ] {
        let refusal = w.refused(|| ask_with(key));
        says(&refusal, Invalid, &[whose, "not a key of yours to certify"]);
    }
    // A key of alice's that the config does not list is hers to have certified.
    let laptop = key("alice-laptop");
    let issued = ask_with(laptop.public_key()).unwrap();
    let certificate = Certificate::from_openssh(&issued.issuance().unwrap().certificate).unwrap();
    assert_eq!(certificate.public_key(), laptop.public_key().key_data());
}

#[test]
fn break_glass_issues_at_once_and_is_marked_for_review() {
    let w = World::new();
    let mut urgent = w.ask("alice", "web1", "site down");
    urgent.break_glass = true;
    let request = w.authority.submit(&plain("alice"), urgent).unwrap();
    assert_eq!(request.rule, "dev-glass");
    assert!(request.break_glass && request.review_required);
    assert_eq!(request.approvers().count(), 0);
    let issuance = request.issuance().expect("break-glass issues at once");
    assert_eq!(
        issuance.key_id,
        format!("jitca:{}:alice:break-glass:approvers=none", request.id)
    );
    let issued = w.records(&AuditQuery {
        serial: Some(issuance.serial),
        ..AuditQuery::default()
    });
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].event, EventKind::Issued);
    assert_eq!(issued[0].details["break_glass"], true);
    // Break-glass rules answer only break-glass asks, and none covers pair1.
    let mut elsewhere = w.ask("alice", "pair1", "site down");
    elsewhere.break_glass = true;
    let refusal = w.refused(|| w.authority.submit(&plain("alice"), elsewhere));
    assert!(matches!(
        refusal,
        AuthorityError::Denied(Denial::NoRule {
            break_glass: true,
            ..
        })
    ));
    says(
        &refusal,
        Denied,
        &["no break-glass rule lets alice request"],
    );
}

#[test]
fn an_ended_break_glass_grant_has_its_review_announced_once() {
    use EventKind::*;
    let w = World::new();
    let glass = |duration: u64| {
        let mut urgent = w.ask("alice", "web1", "site down");
        urgent.break_glass = true;
        urgent.duration = Duration::from_secs(duration);
        w.authority.submit(&plain("alice"), urgent).unwrap()
    };
    // Ended early: the review is due with the revocation, in the same write.
    let ended = glass(1800);
    let done = w.authority.done(&plain("alice"), &ended.id).unwrap();
    assert!(done.review_due_announced);
    assert_eq!(w.story(&ended.id), [Requested, Issued, Done, ReviewDue]);
    // Expired: the sweeper announces it, once.
    let expiring = glass(1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(w.authority.lapse_due().unwrap(), 0, "nothing was pending");
    assert!(w.get(&expiring.id).review_due_announced);
    assert_eq!(w.story(&expiring.id), [Requested, Issued, ReviewDue]);
    let head = w.head();
    w.authority.lapse_due().unwrap();
    assert_eq!(w.head(), head);
    assert_eq!(w.story(&ended.id), [Requested, Issued, Done, ReviewDue]);
}

// Approving and denying.

#[test]
fn one_approval_issues_when_the_rule_needs_one() {
    let w = World::new();
    let id = w.submit("alice", "web1", "INC-1").unwrap().id;
    let approved = w.approve("bob", &id).unwrap();
    let issuance = approved.issuance().expect("the one approval needed issues");
    assert_eq!(approved.approvers().collect::<Vec<_>>(), ["bob"]);
    assert_eq!(issuance.key_id, format!("jitca:{id}:alice:approvers=bob"));
    assert_eq!(w.get(&id), approved);
    assert_eq!(
        w.story(&id),
        [EventKind::Requested, EventKind::Approved, EventKind::Issued]
    );
}

#[test]
fn the_first_of_two_approvals_keeps_it_pending_and_the_second_issues() {
    let w = World::new();
    let id = w.submit("alice", "pair1", "INC-2").unwrap().id;
    let first = w.approve("bob", &id).unwrap();
    assert!(matches!(first.state, State::Pending));
    assert_eq!(first.approvers().collect::<Vec<_>>(), ["bob"]);
    assert_eq!(w.story(&id), [EventKind::Requested, EventKind::Approved]);
    let second = w.approve("carol", &id).unwrap();
    let issuance = second.issuance().expect("the second approval issues");
    assert_eq!(
        issuance.key_id,
        format!("jitca:{id}:alice:approvers=bob,carol")
    );
    assert_eq!(
        w.story(&id),
        [
            EventKind::Requested,
            EventKind::Approved,
            EventKind::Approved,
            EventKind::Issued
        ]
    );
    let approvals = w.records(&AuditQuery {
        request: Some(id.clone()),
        ..AuditQuery::default()
    });
    assert_eq!(approvals[1].details["approvals"], 1);
    assert_eq!(approvals[2].details["approvals"], 2);
    assert_eq!(approvals[3].serial, Some(issuance.serial));
}

#[test]
fn approving_your_own_request_is_refused() {
    let w = World::new();
    let id = w.submit("alice", "pair1", "INC-3").unwrap().id;
    let refusal = w.refused(|| w.approve("alice", &id));
    assert!(matches!(
        refusal,
        AuthorityError::Denied(Denial::SelfApproval)
    ));
    says(&refusal, Denied, &["you cannot approve your own request"]);
    let refusal = w.refused(|| w.authority.deny(&plain("alice"), &id, "no"));
    assert!(matches!(
        refusal,
        AuthorityError::Denied(Denial::SelfApproval)
    ));
}

#[test]
fn someone_who_is_not_an_approver_of_the_rule_is_refused() {
    let w = World::new();
    let id = w.submit("alice", "web1", "INC-4").unwrap().id;
    // A fellow requester, and an auditor.
    for who in ["dave", "ivy"] {
        let refusal = w.refused(|| w.approve(who, &id));
        assert_eq!(
            refusal.to_string(),
            format!("{who} may not approve requests under rule dev-web")
        );
        assert!(matches!(
            refusal,
            AuthorityError::Denied(Denial::NotEligible { .. })
        ));
        let refusal = w.refused(|| w.authority.deny(&plain(who), &id, "no"));
        assert!(matches!(
            refusal,
            AuthorityError::Denied(Denial::NotEligible { .. })
        ));
    }
    let refusal = w.refused(|| w.approve("zed", &id));
    assert!(matches!(
        &refusal,
        AuthorityError::Denied(Denial::UnknownUser(who)) if who == "zed"
    ));
    says(&refusal, Denied, &["zed is not a registered user"]);
    // Nobody approves a request that does not exist, or an id that cannot be one.
    let refusal = w.refused(|| w.approve("bob", "nosuchid"));
    assert!(matches!(&refusal, AuthorityError::NotFound(id) if id == "nosuchid"));
    let refusal = w.refused(|| w.approve("bob", "../etc"));
    says(&refusal, Invalid, &["is not a request id"]);
}

#[test]
fn approving_twice_is_refused() {
    let w = World::new();
    let id = w.submit("alice", "pair1", "INC-5").unwrap().id;
    w.approve("bob", &id).unwrap();
    let refusal = w.refused(|| w.approve("bob", &id));
    says(
        &refusal,
        Conflict,
        &["you have already approved request", &id],
    );
    assert_eq!(w.get(&id).approvers().collect::<Vec<_>>(), ["bob"]);
}

#[test]
fn an_issued_request_is_neither_approved_nor_denied_again() {
    let w = World::new();
    let id = w.submit("alice", "web1", "INC-6").unwrap().id;
    w.approve("bob", &id).unwrap();
    let refusal = w.refused(|| w.approve("carol", &id));
    says(&refusal, Conflict, &[&id, "is already approved and issued"]);
    let refusal = w.refused(|| w.authority.deny(&plain("carol"), &id, "too late"));
    says(&refusal, Conflict, &["is already approved and issued"]);
}

#[test]
fn a_denial_ends_a_pending_request_for_good() {
    let w = World::new();
    let id = w.submit("alice", "pair1", "INC-7").unwrap().id;
    w.approve("bob", &id).unwrap();
    let denied = w
        .authority
        .deny(&plain("carol"), &id, "use the staging copy")
        .unwrap();
    let State::Denied { by, reason, .. } = &denied.state else {
        panic!("not denied: {:?}", denied.state);
    };
    assert_eq!(
        (by.as_str(), reason.as_str()),
        ("carol", "use the staging copy")
    );
    assert_eq!(denied.state_name(Utc::now()), "denied");
    assert_eq!(w.get(&id), denied);
    let records = w.records(&AuditQuery {
        request: Some(id.clone()),
        ..AuditQuery::default()
    });
    let last = records.last().unwrap();
    assert_eq!(
        (last.event, last.actor.as_str()),
        (EventKind::Denied, "carol")
    );
    assert_eq!(last.reason.as_deref(), Some("use the staging copy"));

    let refusal = w.refused(|| w.approve("frank", &id));
    says(&refusal, Conflict, &[&id, "was denied by carol"]);
    let refusal = w.refused(|| w.authority.deny(&plain("frank"), &id, "again"));
    says(&refusal, Conflict, &["was denied by carol"]);
    let refusal = w.refused(|| w.authority.certificate(&plain("alice"), &id));
    says(
        &refusal,
        Conflict,
        &["has no valid certificate: it is denied"],
    );
}

#[test]
fn a_rule_that_asks_approvers_for_a_code_refuses_approvals_without_one() {
    let w = World::new();
    let id = w.submit("alice", "grd1", "INC-8").unwrap().id;
    let refusal = w.refused(|| {
        w.authority
            .approve(&caller("bob", Factor::NotEnrolled), &id)
    });
    says(
        &refusal,
        Refused,
        &[
            "rule dev-guarded needs a one-time code (TOTP) for approvals",
            "mfa enroll",
        ],
    );
    let refusal = w.refused(|| w.authority.approve(&caller("bob", Factor::Skipped), &id));
    says(&refusal, Refused, &["for approvals", "enter the code"]);
    let approved = w
        .authority
        .approve(&caller("bob", Factor::Verified), &id)
        .unwrap();
    assert!(approved.issuance().is_some());
    assert!(approved.approvals[0].mfa);
    let records = w.records(&AuditQuery {
        request: Some(id),
        ..AuditQuery::default()
    });
    assert_eq!(records[1].event, EventKind::Approved);
    assert_eq!(records[1].details["mfa"], true);
}

// Lapsing.

#[test]
fn the_sweeper_lapses_pending_requests_past_their_time_and_nothing_else() {
    let w = World::with_ttl(Duration::from_secs(1));
    let waiting = w.submit("alice", "web1", "INC-9").unwrap().id;
    let half = w.submit("alice", "pair1", "INC-10").unwrap().id;
    w.approve("bob", &half).unwrap();
    let issued = w.submit("alice", "lab1", "x").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(w.get(&waiting).state_name(Utc::now()), "lapsed");
    assert_eq!(w.authority.lapse_due().unwrap(), 2);
    for id in [&waiting, &half] {
        assert!(matches!(w.get(id).state, State::Lapsed { .. }));
        let records = w.records(&AuditQuery {
            request: Some(id.clone()),
            ..AuditQuery::default()
        });
        let last = records.last().unwrap();
        assert_eq!(
            (last.event, last.actor.as_str()),
            (EventKind::Lapsed, "jitca")
        );
    }
    assert_eq!(w.get(&issued.id), issued);
    // Lapsed once: a second sweep finds nothing and records nothing.
    let head = w.head();
    assert_eq!(w.authority.lapse_due().unwrap(), 0);
    assert_eq!(w.head(), head);
    let refusal = w.refused(|| w.approve("carol", &half));
    says(&refusal, Conflict, &[&half, "has lapsed"]);
}

#[test]
fn an_approval_after_the_deadline_is_refused_as_lapsed() {
    let w = World::with_ttl(Duration::from_secs(1));
    let id = w.submit("alice", "web1", "INC-11").unwrap().id;
    let denied_late = w.submit("alice", "web1", "INC-12").unwrap().id;
    std::thread::sleep(Duration::from_millis(1100));
    // No sweeper ran: the approval itself finds it lapsed, records that, and refuses.
    let refusal = w.approve("bob", &id).unwrap_err();
    says(&refusal, Conflict, &[&id, "has lapsed"]);
    assert!(matches!(w.get(&id).state, State::Lapsed { .. }));
    assert_eq!(w.story(&id), [EventKind::Requested, EventKind::Lapsed]);
    // And from then on it is a plain refusal that changes nothing.
    w.refused(|| w.approve("carol", &id));
    let refusal = w
        .authority
        .deny(&plain("bob"), &denied_late, "late")
        .unwrap_err();
    says(&refusal, Conflict, &["has lapsed"]);
    assert_eq!(
        w.story(&denied_late),
        [EventKind::Requested, EventKind::Lapsed]
    );
}

#[test]
fn nothing_lapses_before_its_deadline() {
    let w = World::new();
    let id = w.submit("alice", "web1", "INC-13").unwrap().id;
    let before = (w.get(&id), w.head());
    assert_eq!(w.authority.lapse_due().unwrap(), 0);
    w.authority.lapse_if_due(&id).unwrap();
    assert_eq!((w.get(&id), w.head()), before);
    assert!(matches!(w.get(&id).state, State::Pending));
}

// Races.

#[test]
fn racing_approvers_issue_exactly_one_certificate() {
    let w = World::new();
    let approvers = ["bob", "carol", "frank"];
    // The window between reading a request and swapping it is microseconds wide: this many
    // rounds caught a store whose swap ignored its token within the first ten.
    for round in 0..40 {
        let id = w
            .submit("alice", "web1", &format!("INC-{round}"))
            .unwrap()
            .id;
        let barrier = Barrier::new(approvers.len());
        let outcomes: Vec<Result<Request, AuthorityError>> = std::thread::scope(|s| {
            let racers: Vec<_> = approvers
                .iter()
                .map(|who| {
                    let (w, id, barrier) = (&w, &id, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        w.approve(who, id)
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let won: Vec<&Request> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {outcomes:?}");
        for lost in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            says(lost, Conflict, &["is already approved and issued"]);
        }
        let stored = w.get(&id);
        assert_eq!(&stored, won[0]);
        assert_eq!(stored.approvals.len(), 1);
        assert_eq!(
            w.story(&id),
            [EventKind::Requested, EventKind::Approved, EventKind::Issued]
        );
    }
}

#[test]
fn racing_approvers_of_a_two_approval_rule_issue_once_with_two_approvals() {
    let w = World::new();
    let approvers = ["bob", "carol", "frank"];
    // The window between reading a request and swapping it is microseconds wide: this many
    // rounds caught a store whose swap ignored its token within the first ten.
    for round in 0..40 {
        let id = w
            .submit("alice", "pair1", &format!("INC-{round}"))
            .unwrap()
            .id;
        let barrier = Barrier::new(approvers.len());
        let outcomes: Vec<(&str, Result<Request, AuthorityError>)> = std::thread::scope(|s| {
            let racers: Vec<_> = approvers
                .iter()
                .map(|who| {
                    let (w, id, barrier) = (&w, &id, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        (*who, w.approve(who, id))
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let counted: BTreeSet<&str> = outcomes
            .iter()
            .filter(|(_, o)| o.is_ok())
            .map(|(who, _)| *who)
            .collect();
        assert_eq!(counted.len(), 2, "round {round}: {outcomes:?}");
        let issuing: Vec<_> = outcomes
            .iter()
            .filter_map(|(_, o)| o.as_ref().ok())
            .filter(|r| r.issuance().is_some())
            .collect();
        assert_eq!(issuing.len(), 1, "round {round}: {outcomes:?}");
        let stored = w.get(&id);
        assert_eq!(&stored, issuing[0]);
        assert_eq!(stored.approvers().collect::<BTreeSet<_>>(), counted);
        let kinds = w.story(&id);
        assert_eq!(
            kinds.iter().filter(|k| **k == EventKind::Approved).count(),
            2
        );
        assert_eq!(kinds.iter().filter(|k| **k == EventKind::Issued).count(), 1);
    }
}

#[test]
fn a_lapse_racing_an_approval_ends_in_exactly_one_of_them() {
    let w = World::with_ttl(Duration::from_secs(1));
    let ids: Vec<String> = (0..6)
        .map(|i| w.submit("alice", "web1", &format!("INC-{i}")).unwrap().id)
        .collect();
    // Start the race just before the first deadline, so that either side may win.
    let deadline = ids.iter().map(|id| w.get(id).lapses_at).min().unwrap();
    if let Ok(wait) = (deadline - Utc::now() - chrono::TimeDelta::milliseconds(3)).to_std() {
        std::thread::sleep(wait);
    }
    let barrier = Barrier::new(2 * ids.len());
    let approvals: Vec<Result<Request, AuthorityError>> = std::thread::scope(|s| {
        for id in &ids {
            let (w, barrier) = (&w, &barrier);
            s.spawn(move || {
                barrier.wait();
                // The sweeper keeps trying until the request is decided or well past due.
                loop {
                    w.authority.lapse_if_due(id).unwrap();
                    let now = w.get(id);
                    if !matches!(now.state, State::Pending)
                        || Utc::now() > now.lapses_at + chrono::TimeDelta::milliseconds(50)
                    {
                        break;
                    }
                }
            });
        }
        let approvers: Vec<_> = ids
            .iter()
            .map(|id| {
                let (w, barrier) = (&w, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    w.approve("bob", id)
                })
            })
            .collect();
        approvers.into_iter().map(|a| a.join().unwrap()).collect()
    });
    for (id, approval) in ids.iter().zip(&approvals) {
        let kinds = w.story(id);
        let issued = kinds.iter().filter(|k| **k == EventKind::Issued).count();
        let lapsed = kinds.iter().filter(|k| **k == EventKind::Lapsed).count();
        match &w.get(id).state {
            State::Issued(_) => {
                assert_eq!((issued, lapsed), (1, 0), "{id}: {kinds:?}");
                assert!(approval.is_ok(), "{id}: {approval:?}");
            }
            State::Lapsed { .. } => {
                assert_eq!((issued, lapsed), (0, 1), "{id}: {kinds:?}");
                let refusal = approval
                    .as_ref()
                    .expect_err("a lapsed request was approved");
                says(refusal, Conflict, &["has lapsed"]);
            }
            other => panic!("{id} ended neither issued nor lapsed: {other:?}"),
        }
    }
    assert!(jitca_store::verify_audit(w.store.as_ref()).unwrap().is_ok());
}

#[test]
fn an_approval_racing_a_reload_that_removes_its_approver_never_issues_on_it() {
    for _round in 0..5 {
        let w = World::new();
        // One approval by bob is in; carol's would be the second.
        let pair = w.submit("alice", "pair1", "INC-1").unwrap().id;
        w.approve("bob", &pair).unwrap();
        // bob's own approval would be the only one needed.
        let web = w.submit("alice", "web1", "INC-2").unwrap().id;
        let barrier = Barrier::new(3);
        let (second, own) = std::thread::scope(|s| {
            let second = s.spawn(|| {
                barrier.wait();
                w.approve("carol", &pair)
            });
            let own = s.spawn(|| {
                barrier.wait();
                w.approve("bob", &web)
            });
            barrier.wait();
            w.reload_without(&["bob"]);
            (second.join().unwrap(), own.join().unwrap())
        });
        let reloaded = w.records(&AuditQuery::default());
        let reload_seq = reloaded
            .iter()
            .find(|r| r.event == EventKind::ConfigReloaded)
            .unwrap()
            .seq;
        // Every certificate issued after the reload was issued without bob.
        for record in reloaded.iter().filter(|r| r.event == EventKind::Issued) {
            let approvers = record.details["approvers"].as_array().unwrap();
            if record.seq > reload_seq {
                assert!(
                    !approvers.iter().any(|a| *a == "bob"),
                    "issued on a removed approver's approval: {record:?}"
                );
            }
        }
        // Carol's approval either completed bob's before the reload, or counts alone.
        let pair_now = w.get(&pair);
        match second.unwrap().issuance() {
            Some(i) => assert!(i.key_id.ends_with("approvers=bob,carol"), "{}", i.key_id),
            None => {
                assert!(matches!(pair_now.state, State::Pending));
                assert_eq!(pair_now.approvers().collect::<Vec<_>>(), ["carol"]);
                let approved = w.records(&AuditQuery {
                    request: Some(pair.clone()),
                    ..AuditQuery::default()
                });
                let carols = approved.last().unwrap();
                assert_eq!(carols.actor, "carol");
                assert!(carols.seq > reload_seq);
                assert_eq!(
                    carols.details["dropped_approvals"],
                    serde_json::json!(["bob"])
                );
            }
        }
        // Bob's own approval issued before the reload, or was refused as his who is gone.
        match own {
            Ok(issued) => {
                let serial = issued_serial(&issued);
                let record = reloaded.iter().find(|r| r.serial == Some(serial)).unwrap();
                assert!(record.seq < reload_seq);
            }
            Err(refusal) => {
                assert!(matches!(
                    &refusal,
                    AuthorityError::Denied(Denial::UnknownUser(who)) if who == "bob"
                ));
                assert!(matches!(w.get(&web).state, State::Pending));
                assert_eq!(w.get(&web).approvers().count(), 0);
            }
        }
        // From now on bob approves nothing.
        let fresh = w.submit("alice", "web1", "INC-3").unwrap().id;
        let refusal = w.refused(|| w.approve("bob", &fresh));
        says(&refusal, Denied, &["bob is not a registered user"]);
    }
}

#[test]
fn a_certificate_issued_racing_a_reload_that_removes_its_requester_ends_revoked() {
    for _round in 0..3 {
        let w = World::new();
        let pending: Vec<String> = (0..20)
            .map(|i| w.submit("dave", "web1", &format!("INC-{i}")).unwrap().id)
            .collect();
        let alices = w.submit("alice", "lab1", "unrelated").unwrap();
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                for id in &pending {
                    // Refused once dave is gone: either way is right.
                    let _ = w.approve("carol", id);
                    let _ = w.submit("dave", "lab1", "race");
                }
            });
            barrier.wait();
            std::thread::sleep(Duration::from_millis(2));
            w.reload_without(&["dave"]);
        });
        let all = w
            .authority
            .list(&plain("ivy"), ListFilter::default())
            .unwrap();
        for request in all.iter().filter(|r| r.requester == "dave") {
            match &request.state {
                State::Revoked {
                    issuance,
                    revocation,
                } => {
                    assert_eq!(revocation.by, "jitca");
                    assert_eq!(revocation.reason, "dave was removed from the config");
                    assert!(w.krl_revokes(issuance.serial), "serial {}", issuance.serial);
                }
                State::Denied { by, reason, .. } => {
                    assert_eq!(by, "jitca");
                    assert_eq!(reason, "dave was removed from the config");
                }
                other => panic!("{} of removed dave ended {other:?}", request.id),
            }
        }
        // Someone still in the config keeps their access.
        assert_eq!(w.get(&alices.id), alices);
        assert!(jitca_store::verify_audit(w.store.as_ref()).unwrap().is_ok());
    }
}

// Ending access.

#[test]
fn done_revokes_the_requesters_certificate_and_the_krl_lists_it() {
    let w = World::new();
    let issued = w.submit("alice", "lab1", "x").unwrap();
    let serial = issued_serial(&issued);
    assert!(!w.krl_revokes(serial));
    let refusal = w.refused(|| w.authority.done(&plain("bob"), &issued.id));
    // bob may not even see a dev-lab request (that rule has no approvers).
    assert!(matches!(refusal, AuthorityError::NotFound(_)));
    let done = w.authority.done(&plain("alice"), &issued.id).unwrap();
    assert_eq!(done.state_name(Utc::now()), "revoked");
    let State::Revoked {
        issuance,
        revocation,
    } = &done.state
    else {
        panic!("not revoked: {:?}", done.state);
    };
    assert_eq!(issuance, issued.issuance().unwrap());
    assert_eq!(revocation.by, "alice");
    assert_eq!(revocation.reason, "done by the requester");
    assert!(w.krl_revokes(serial));
    assert_eq!(
        w.story(&issued.id),
        [EventKind::Requested, EventKind::Issued, EventKind::Done]
    );
    let refusal = w.refused(|| w.authority.done(&plain("alice"), &issued.id));
    says(&refusal, Conflict, &["was revoked already by alice"]);
    let refusal = w.refused(|| w.authority.certificate(&plain("alice"), &issued.id));
    says(
        &refusal,
        Conflict,
        &["has no valid certificate: it is revoked"],
    );
}

#[test]
fn approvers_and_auditors_revoke_and_nobody_else() {
    let w = World::new();
    let first = w.submit("alice", "web1", "INC-1").unwrap().id;
    let second = w.submit("alice", "web1", "INC-2").unwrap().id;
    let pending = w.submit("alice", "web1", "INC-3").unwrap().id;
    let serials = [&first, &second].map(|id| issued_serial(&w.approve("bob", id).unwrap()));

    let refusal = w.refused(|| w.authority.revoke(&plain("dave"), &first, "mine now"));
    assert!(matches!(&refusal, AuthorityError::NotFound(id) if *id == first));
    let refusal = w.refused(|| w.authority.revoke(&plain("alice"), &first, "oops"));
    says(
        &refusal,
        Conflict,
        &["only approvers of rule dev-web and auditors may revoke"],
    );
    let refusal = w.refused(|| w.authority.done(&plain("carol"), &first));
    says(
        &refusal,
        Conflict,
        &[
            "only alice, who made request",
            "approvers and auditors use revoke",
        ],
    );
    let refusal = w.refused(|| w.authority.revoke(&plain("carol"), &pending, "early"));
    says(
        &refusal,
        Conflict,
        &["has no certificate to revoke: it is pending"],
    );

    let by_carol = w
        .authority
        .revoke(&plain("carol"), &first, "INC-1 closed")
        .unwrap();
    let by_ivy = w.authority.revoke(&plain("ivy"), &second, "audit").unwrap();
    for (request, who, why) in [
        (&by_carol, "carol", "INC-1 closed"),
        (&by_ivy, "ivy", "audit"),
    ] {
        let State::Revoked { revocation, .. } = &request.state else {
            panic!("not revoked: {:?}", request.state);
        };
        assert_eq!(
            (revocation.by.as_str(), revocation.reason.as_str()),
            (who, why)
        );
        let last = *w.story(&request.id).last().unwrap();
        assert_eq!(last, EventKind::Revoked);
    }
    assert!(serials.iter().all(|s| w.krl_revokes(*s)));
    let refusal = w.refused(|| w.authority.revoke(&plain("frank"), &first, "again"));
    says(&refusal, Conflict, &["was revoked already by carol"]);
}

// Seeing requests and fetching certificates.

#[test]
fn requesters_see_their_own_requests_and_approvers_and_auditors_see_theirs() {
    let w = World::new();
    let alices = w.submit("alice", "web1", "INC-1").unwrap().id;
    let daves = w.submit("dave", "lab1", "x").unwrap().id;
    let ids = |who: &str, filter: ListFilter| -> BTreeSet<String> {
        w.authority
            .list(&plain(who), filter)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    let set = |items: &[&String]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let all = ListFilter::default();
    assert_eq!(ids("alice", all), set(&[&alices]));
    assert_eq!(ids("dave", all), set(&[&daves]));
    assert_eq!(ids("ivy", all), set(&[&alices, &daves]));
    // bob approves dev-web, not dev-lab.
    assert_eq!(ids("bob", all), set(&[&alices]));
    assert_eq!(ids("zed", all), set(&[]));
    let pending_only = ListFilter {
        pending_only: true,
        ..ListFilter::default()
    };
    assert_eq!(ids("ivy", pending_only), set(&[&alices]));
    let mine_only = ListFilter {
        mine_only: true,
        ..ListFilter::default()
    };
    assert_eq!(ids("ivy", mine_only), set(&[]));
    assert_eq!(ids("alice", mine_only), set(&[&alices]));

    assert_eq!(
        w.authority.show(&plain("alice"), &alices).unwrap().id,
        alices
    );
    assert_eq!(w.authority.show(&plain("ivy"), &daves).unwrap().id, daves);
    assert_eq!(w.authority.show(&plain("bob"), &alices).unwrap().id, alices);
    for (who, id) in [
        ("dave", &alices),
        ("alice", &daves),
        ("bob", &daves),
        ("zed", &alices),
    ] {
        let refusal = w.refused(|| w.authority.show(&plain(who), id));
        assert!(
            matches!(&refusal, AuthorityError::NotFound(found) if found == id),
            "{who} saw {id}"
        );
        says(&refusal, NotFound, &["no request", id]);
    }
}

#[test]
fn the_certificate_goes_to_its_requester_only_and_is_the_one_the_request_describes() {
    let w = World::new();
    let id = w.submit("alice", "web1", "INC-1").unwrap().id;
    let refusal = w.refused(|| w.authority.certificate(&plain("alice"), &id));
    says(
        &refusal,
        Conflict,
        &["has no valid certificate: it is pending"],
    );
    let request = w.approve("bob", &id).unwrap();
    let issuance = request.issuance().unwrap();

    for who in ["bob", "ivy", "dave"] {
        let refusal = w.refused(|| w.authority.certificate(&plain(who), &id));
        assert!(matches!(&refusal, AuthorityError::NotFound(found) if *found == id));
        let refusal = w.refused(|| w.authority.issued_certificate(&plain(who), &id));
        assert!(matches!(refusal, AuthorityError::NotFound(_)));
    }

    let head = w.head();
    let text = w
        .authority
        .certificate(&plain("alice"), &id)
        .unwrap()
        .to_string();
    assert_eq!(text, issuance.certificate);
    let certificate = Certificate::from_openssh(&text).unwrap();
    assert_eq!(certificate.serial(), issuance.serial);
    assert_eq!(certificate.key_id(), issuance.key_id);
    assert_eq!(
        certificate.valid_principals(),
        request.principals.as_slice()
    );
    assert_eq!(certificate.valid_principals(), ["root@web1"]);
    assert_eq!(
        certificate.valid_after(),
        issuance.valid_after.timestamp() as u64
    );
    assert_eq!(
        certificate.valid_before(),
        issuance.valid_before.timestamp() as u64
    );
    assert_eq!(
        certificate.valid_before() - certificate.valid_after(),
        request.duration_secs + 60,
        "valid for the duration asked, from a minute before issuance"
    );
    assert_eq!(
        certificate.public_key(),
        w.key_of("alice").public_key().key_data()
    );
    let ca = w.ca.public_key().fingerprint(HashAlg::Sha256);
    certificate
        .validate_at(Utc::now().timestamp() as u64, [&ca])
        .expect("signed by the CA and valid now");

    // The fetch is recorded, with the serial.
    let fetched = w.records(&AuditQuery {
        after_seq: Some(head.seq),
        ..AuditQuery::default()
    });
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].event, EventKind::CertificateFetched);
    assert_eq!(fetched[0].actor, "alice");
    assert_eq!(fetched[0].serial, Some(issuance.serial));
    // The waiting session's copy is the same certificate; its issuance record covers it.
    let head = w.head();
    let waiting = w
        .authority
        .issued_certificate(&plain("alice"), &id)
        .unwrap()
        .to_string();
    assert_eq!(waiting, text);
    assert_eq!(w.head(), head);
}

#[test]
fn an_expired_certificate_is_no_longer_handed_out() {
    let w = World::new();
    let mut brief = w.ask("alice", "lab1", "one second");
    brief.duration = Duration::from_secs(1);
    let request = w.authority.submit(&plain("alice"), brief).unwrap();
    w.authority
        .certificate(&plain("alice"), &request.id)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(w.get(&request.id).state_name(Utc::now()), "expired");
    let refusal = w.refused(|| w.authority.certificate(&plain("alice"), &request.id));
    says(
        &refusal,
        Conflict,
        &["has no valid certificate: it is expired"],
    );
    let refusal = w.refused(|| w.authority.done(&plain("alice"), &request.id));
    says(&refusal, Conflict, &["has expired already"]);
}

// The record of it all.

#[test]
fn the_audit_chain_tells_the_whole_story_in_order_and_verifies() {
    use EventKind::*;
    // Long enough for everything before the sleep to happen while the requests are pending.
    let w = World::with_ttl(Duration::from_secs(2));
    let issued = w.submit("alice", "pair1", "INC-1").unwrap().id;
    w.approve("bob", &issued).unwrap();
    w.approve("carol", &issued).unwrap();
    w.authority.certificate(&plain("alice"), &issued).unwrap();
    w.authority.done(&plain("alice"), &issued).unwrap();
    let denied = w.submit("dave", "web1", "INC-2").unwrap().id;
    w.authority.deny(&plain("frank"), &denied, "no").unwrap();
    let lapsing = w.submit("alice", "web1", "INC-3").unwrap().id;
    // Refusals leave no trace at this level (the control channel records them).
    w.refused(|| w.approve("alice", &lapsing));
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(w.authority.lapse_due().unwrap(), 1);

    let head = jitca_store::verify_audit(w.store.as_ref())
        .unwrap()
        .expect("the chain is intact");
    assert_eq!(head, w.head());
    let records = w.records(&AuditQuery::default());
    assert_eq!(records.len() as u64, head.seq);
    let told: Vec<(EventKind, &str, Option<&str>)> = records
        .iter()
        .map(|r| (r.event, r.actor.as_str(), r.request.as_deref()))
        .collect();
    let (i, d, l) = (
        Some(issued.as_str()),
        Some(denied.as_str()),
        Some(lapsing.as_str()),
    );
    assert_eq!(
        told,
        [
            (Requested, "alice", i),
            (Approved, "bob", i),
            (Approved, "carol", i),
            (Issued, "carol", i),
            (CertificateFetched, "alice", i),
            (Done, "alice", i),
            (Requested, "dave", d),
            (Denied, "frank", d),
            (Requested, "alice", l),
            (Lapsed, "jitca", l),
        ]
    );
    // Seqs from 1 without gaps, each record chained to the one before.
    for (n, pair) in records.windows(2).enumerate() {
        assert_eq!(pair[0].seq, n as u64 + 1);
        assert_eq!(Some(&pair[1].prev), pair[0].hash.as_ref());
    }
}

#[test]
fn serials_are_unique_and_never_zero_across_many_issuances() {
    let w = World::new();
    let approved: Vec<String> = (0..10)
        .map(|i| w.submit("dave", "web1", &format!("INC-{i}")).unwrap().id)
        .collect();
    let serials: Vec<u64> = std::thread::scope(|s| {
        let mut workers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    (0..15)
                        .map(|_| issued_serial(&w.submit("alice", "lab1", "batch").unwrap()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.push(s.spawn(|| {
            approved
                .iter()
                .map(|id| issued_serial(&w.approve("carol", id).unwrap()))
                .collect()
        }));
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    assert_eq!(serials.len(), 55);
    let unique: BTreeSet<u64> = serials.iter().copied().collect();
    assert_eq!(unique.len(), serials.len(), "a serial was issued twice");
    assert!(!unique.contains(&0));
    // Each serial has exactly one issuance record, naming it.
    for serial in unique {
        let records = w.records(&AuditQuery {
            serial: Some(serial),
            ..AuditQuery::default()
        });
        assert_eq!(records.len(), 1, "serial {serial}: {records:?}");
        assert_eq!(records[0].event, EventKind::Issued);
    }
}

/// Two authorities on one store, as two daemons on one database: a certificate revoked
/// through one is in the other's KRL at once, byte for byte the same list, and the other
/// writes its own `krl_path` when it follows the store (with a store only one process
/// writes, following has nothing to do and nothing changes).
#[test]
fn a_revocation_through_another_authority_on_the_same_store_reaches_this_ones_krl() {
    let w = World::new();
    let dir = tempfile::tempdir().unwrap();
    let krl_path = dir.path().join("krl");
    let other = Authority::new(
        policy(&config(&w.keys, &[])),
        Settings {
            pending_ttl: Duration::from_secs(3600),
            audit_log: None,
            krl_path: Some(krl_path.clone()),
            earlier_cas: Vec::new(),
            notify: None,
            host_key: Some(w.host.public_key().clone()),
            metrics: Default::default(),
        },
        w.store.clone(),
        CertAuthority::from_key(w.ca.clone()).unwrap(),
    )
    .unwrap();
    let issued = w.submit("alice", "lab1", "x").unwrap();
    let serial = issued_serial(&issued);
    other.krl_changed().unwrap();
    assert!(!w.krl_revokes(serial));
    let written = std::fs::read(&krl_path).unwrap();

    other
        .revoke(&plain("ivy"), &issued.id, "key lost")
        .unwrap();
    assert!(w.krl_revokes(serial));
    assert_eq!(w.authority.krl().unwrap(), other.krl().unwrap());
    assert_ne!(std::fs::read(&krl_path).unwrap(), written, "the revoker wrote its krl_path");

    // Another version made through `w`: `other` writes it to its krl_path as it follows the
    // store, when the store is shared.
    w.authority.krl_changed().unwrap();
    let before = std::fs::read(&krl_path).unwrap();
    other.follow_others(true).unwrap();
    let after = std::fs::read(&krl_path).unwrap();
    if w.store.shared() {
        assert_eq!(after, w.authority.krl().unwrap());
        assert_ne!(after, before);
    } else {
        assert_eq!(after, before);
    }
}

/// A daemon makes its second-factor and audit keys when they are missing, unless other
/// daemons share its store: there a key of its own would split the CA (secrets sealed, and
/// checkpoints signed, under keys the others do not have), so it refuses and says to copy them.
#[test]
fn keys_are_made_when_missing_unless_the_store_is_shared() {
    let w = World::new();
    let dir = tempfile::tempdir().unwrap();
    let mfa_key = dir.path().join("mfa.key");
    let audit_key = dir.path().join("audit_ed25519");
    w.authority.use_mfa_key(&mfa_key).unwrap();
    let enrolled = w.authority.mfa_enroll(&plain("alice")).map(drop);
    let audit = w.authority.use_audit_key(&audit_key);
    if w.store.shared() {
        let refusal = enrolled.expect_err("no key is made for a shared store");
        says(&refusal, Refused, &["every daemon needs the same mfa_key"]);
        let refusal = audit.expect_err("no audit key is made for a shared store");
        says(&refusal, Refused, &["every daemon needs the same audit key"]);
        assert!(!mfa_key.exists() && !audit_key.exists());
    } else {
        enrolled.unwrap();
        assert!(audit.unwrap(), "the audit key was made");
        assert!(mfa_key.exists() && audit_key.exists());
    }
}
