//! The request lifecycle as types, in the manner of rustls's handshake states: each state is a
//! type holding what is valid then, each transition consumes the state it leaves, and each
//! security step hands the next one a value it cannot go without.
//!
//! ```text
//!                 Policy::decide            Policy::check_approver
//!                       │                            │
//!                    Decided                      Eligible
//!                       │                            │
//!   open ──▶ Approving::Waiting (stored) ──▶ Pending::approve ──▶ Approving::Waiting (stored)
//!     │                                              │
//!     └── approvals: 0, break-glass ──▶ Approved ◀───┘ the last approval needed
//!                                          │
//!                                sign(CA key, serial)
//!                                          │
//!                                        Signed
//!                                          │
//!                      record (store write with its audit records, then durable)
//!                                          │
//!                                       Recorded ──▶ Certificate (may leave the daemon)
//! ```
//!
//! Every type here has private fields and no public constructor: outside this module a
//! [`Pending`] comes only from a stored request that is waiting, an [`Approved`] only from
//! [`Pending::approve`] (which needs the policy's [`Eligible`] proof) or from a decision that
//! needs no approval, a [`Signed`] only from [`Approved::sign`], a [`Recorded`] only once the
//! issuance is written and durable, and a [`Certificate`] only from a [`Recorded`].
//!
//! # What does not compile
//!
//! Signing takes an approved request:
//!
//! ```
//! use jitca_authority::AuthorityError;
//! use jitca_authority::states::{Approved, Signed};
//! use jitca_signer::CertAuthority;
//!
//! fn sign(approved: Approved, ca: &CertAuthority, serial: u64) -> Result<Signed, AuthorityError> {
//!     approved.sign(ca, serial, chrono::Utc::now())
//! }
//! ```
//!
//! A pending request has no way to be signed:
//!
//! ```compile_fail,E0599
//! use jitca_authority::AuthorityError;
//! use jitca_authority::states::{Pending, Signed};
//! use jitca_signer::CertAuthority;
//!
//! fn sign(pending: Pending, ca: &CertAuthority, serial: u64) -> Result<Signed, AuthorityError> {
//!     pending.sign(ca, serial, chrono::Utc::now())
//! }
//! ```
//!
//! A certificate that may leave the daemon comes from a recorded issuance:
//!
//! ```
//! use jitca_authority::states::{Certificate, Recorded};
//!
//! fn hand_out(recorded: &Recorded) -> Certificate {
//!     recorded.certificate()
//! }
//! ```
//!
//! A signed certificate that is not recorded yet does not give one:
//!
//! ```compile_fail,E0599
//! use jitca_authority::states::{Certificate, Signed};
//!
//! fn hand_out(signed: &Signed) -> Certificate {
//!     signed.certificate()
//! }
//! ```
//!
//! and neither can one be made from its text:
//!
//! ```compile_fail,E0451
//! use jitca_authority::states::{Certificate, Signed};
//!
//! fn hand_out(signed: &Signed) -> Certificate {
//!     Certificate { openssh: signed.issuance().certificate.clone() }
//! }
//! ```
//!
//! Approving takes the policy's proof that the approver is eligible:
//!
//! ```
//! use jitca_authority::states::{Approving, Pending};
//! use jitca_authority::{AuthorityError, grant_of};
//! use jitca_policy::Policy;
//!
//! fn approve(pending: Pending, policy: &Policy, by: &str) -> Result<Approving, AuthorityError> {
//!     let request = pending.request();
//!     let eligible = policy.check_approver(by, &request.requester, &grant_of(request))?;
//!     let (approving, _dropped) = pending.approve(eligible, false, chrono::Utc::now(), |_| true)?;
//!     Ok(approving)
//! }
//! ```
//!
//! and that proof cannot be made anywhere but in the policy:
//!
//! ```compile_fail,E0451
//! use jitca_authority::states::{Approving, Pending};
//! use jitca_authority::AuthorityError;
//! use jitca_policy::{Eligible, Policy};
//!
//! fn approve(pending: Pending, _policy: &Policy, by: &str) -> Result<Approving, AuthorityError> {
//!     let request = pending.request();
//!     let eligible = Eligible {
//!         approver: by.to_string(),
//!         requester: request.requester.clone(),
//!         rule: request.rule.clone(),
//!     };
//!     let (approving, _dropped) = pending.approve(eligible, false, chrono::Utc::now(), |_| true)?;
//!     Ok(approving)
//! }
//! ```

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use jitca_policy::{Decided, Eligible};
use jitca_signer::{CertAuthority, CertTemplate};
use jitca_store::{
    Approval, AuditRecord, Issuance, Request, State, Store, StoreError, Swap, Versioned,
};
use ssh_key::PublicKey;

use crate::swap::Attempt;
use crate::{Authority, AuthorityError};

/// How far a certificate's validity starts before its issuance, for hosts whose clocks lag.
const BACKDATE: TimeDelta = TimeDelta::seconds(60);

/// What a step writes over: nothing (a request being made) or the stored record as read,
/// whose compare-and-swap token the write presents.
#[allow(
    clippy::large_enum_variant,
    reason = "moved a few times on its way to one write; boxing would only add an allocation"
)]
enum Base {
    New,
    Stored(Versioned),
}

impl Base {
    /// Writes `next` with `events` in one atomic step; a conflict means the attempt is taken
    /// again from a new read (or, for a new request, a new id).
    fn write(
        &self,
        store: &dyn Store,
        next: &Request,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError> {
        match self {
            Base::New => match store.create_request(next, events) {
                Ok(()) => Ok(Swap::Done),
                // Ids are random; on the rare clash a new one is drawn (and, for an issuance,
                // signed again: the key id names the request).
                Err(StoreError::Exists(_)) => Ok(Swap::Conflict),
                Err(e) => Err(e),
            },
            Base::Stored(current) => store.replace_request(current, next, events),
        }
    }
}

/// What the lifecycle adds to the policy's [`Decided`] to make a request: who sent which
/// key from where, why, and the times.
pub(crate) struct Making {
    pub id: String,
    /// OpenSSH one-line form, without comment.
    pub public_key: String,
    pub fingerprint: String,
    pub reason: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub lapses_at: DateTime<Utc>,
    /// The rule asks for a post-access review (or is a break-glass rule).
    pub review_required: bool,
    /// The requester's connection proved a second factor.
    pub requester_mfa: bool,
}

/// Makes the request the policy decided: waiting for approvals, or approved at once when its
/// rule needs none (`approvals: 0`, break-glass). The only place a request's terms are
/// written: exactly the decided grant.
pub(crate) fn open(decided: &Decided, making: Making) -> Approving {
    let grant = decided.grant();
    let request = Request {
        id: making.id,
        requester: decided.requester().to_string(),
        public_key: making.public_key,
        fingerprint: making.fingerprint,
        hosts: grant.hosts.clone(),
        logins: grant.logins.clone(),
        principals: grant.principals.clone(),
        duration_secs: grant.duration.as_secs(),
        reason: making.reason,
        rule: grant.rule.clone(),
        approvals_needed: grant.approvals_needed,
        extensions: grant.extensions.clone(),
        critical_options: grant.critical_options.clone(),
        source: making.source,
        created_at: making.created_at,
        lapses_at: making.lapses_at,
        approvals: Vec::new(),
        state: State::Pending,
        break_glass: grant.break_glass,
        review_required: making.review_required,
        requester_mfa: making.requester_mfa,
        review: None,
        review_due_announced: false,
        usage: None,
    };
    if grant.approvals_needed == 0 {
        Approving::Approved(Approved {
            base: Base::New,
            request,
        })
    } else {
        Approving::Waiting(Waiting {
            base: Base::New,
            next: request,
        })
    }
}

/// A stored request waiting for approvals, not past its deadline when it was read.
pub struct Pending {
    current: Versioned,
}

impl Pending {
    /// The stored request as pending, if it is waiting and not past its deadline at `now`;
    /// otherwise the record as read, for the caller to say why not.
    pub(crate) fn check(current: Versioned, now: DateTime<Utc>) -> Result<Self, Box<Versioned>> {
        match current.request.state {
            State::Pending if now < current.request.lapses_at => Ok(Self { current }),
            _ => Err(Box::new(current)),
        }
    }

    /// The request as stored.
    pub fn request(&self) -> &Request {
        &self.current.request
    }

    /// Adds the approval that `eligible` proves may be given (`mfa`: the approver's
    /// connection proved a second factor). Earlier approvals count only if `still_counts`
    /// says so (their approver is still eligible under the policy in force); the others are
    /// dropped and returned. The last approval needed makes the request [`Approved`].
    pub fn approve(
        self,
        eligible: Eligible,
        mfa: bool,
        at: DateTime<Utc>,
        still_counts: impl FnMut(&Approval) -> bool,
    ) -> Result<(Approving, Vec<Approval>), AuthorityError> {
        let request = &self.current.request;
        let id = &request.id;
        // The proof is bound to a requester and a rule: one for another request proves
        // nothing about this one.
        if eligible.requester() != request.requester || eligible.rule() != request.rule {
            return Err(AuthorityError::Refused(format!(
                "the approval given is for a request by {} under rule {}, not request {id}",
                eligible.requester(),
                eligible.rule()
            )));
        }
        if request.approvers().any(|a| a == eligible.approver()) {
            return Err(AuthorityError::Conflict(format!(
                "you have already approved request {id}"
            )));
        }
        let mut next = request.clone();
        let (mut counted, dropped): (Vec<Approval>, Vec<Approval>) =
            next.approvals.drain(..).partition(still_counts);
        counted.push(Approval {
            by: eligible.approver().to_string(),
            at,
            mfa,
        });
        next.approvals = counted;
        let base = Base::Stored(self.current);
        let approving = if next.approvals.len() >= next.approvals_needed as usize {
            Approving::Approved(Approved {
                base,
                request: next,
            })
        } else {
            Approving::Waiting(Waiting { base, next })
        };
        Ok((approving, dropped))
    }
}

/// Where a request stands after it is made or approved.
pub enum Approving {
    /// It waits for more approvals.
    Waiting(Waiting),
    /// It needs no more: it may be signed.
    Approved(Approved),
}

impl Approving {
    /// The request as it will be written.
    pub fn request(&self) -> &Request {
        match self {
            Approving::Waiting(w) => &w.next,
            Approving::Approved(a) => &a.request,
        }
    }
}

/// A request waiting for approvals, not yet written (just made, or with one more approval).
pub struct Waiting {
    base: Base,
    next: Request,
}

impl Waiting {
    /// Writes the request with `events`; done with the request as written.
    pub(crate) fn write(
        self,
        store: &dyn Store,
        events: &[AuditRecord],
    ) -> Result<Attempt<Request>, AuthorityError> {
        let swap = self.base.write(store, &self.next, events)?;
        Ok((swap, self.next).into())
    }
}

/// A request with every approval it needs (or none needed): the only state that is signed.
pub struct Approved {
    base: Base,
    request: Request,
}

impl Approved {
    /// The request as approved.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Signs the certificate with certificate serial `serial`, valid from shortly before `now`
    /// for the duration granted. The key id names the request, its requester and approvers.
    pub fn sign(
        self,
        ca: &CertAuthority,
        serial: u64,
        now: DateTime<Utc>,
    ) -> Result<Signed, AuthorityError> {
        let mut request = self.request;
        let subject = PublicKey::from_openssh(&request.public_key)
            .map_err(|e| AuthorityError::Invalid(format!("stored public key unusable: {e}")))?;
        let approvers: Vec<&str> = request.approvers().collect();
        let key_id = format!(
            "jitca:{}:{}:{}approvers={}",
            request.id,
            request.requester,
            if request.break_glass {
                "break-glass:"
            } else {
                ""
            },
            if approvers.is_empty() {
                "none".to_string()
            } else {
                approvers.join(",")
            }
        );
        let valid_after = unix(now - BACKDATE);
        let valid_before = unix(now + TimeDelta::seconds(request.duration_secs as i64));
        let signed = ca.sign(&CertTemplate {
            subject: &subject,
            serial,
            key_id: &key_id,
            principals: &request.principals,
            valid_after,
            valid_before,
            extensions: &request.extensions,
            critical_options: &request.critical_options,
        })?;
        let issuance = Issuance {
            serial,
            key_id,
            issued_at: now,
            valid_after: from_unix(valid_after),
            valid_before: from_unix(valid_before),
            certificate: signed.openssh,
        };
        request.state = State::Issued(issuance.clone());
        Ok(Signed {
            base: self.base,
            request,
            issuance,
        })
    }
}

/// A signed certificate in its issued request, not yet written: it must not leave the daemon.
pub struct Signed {
    base: Base,
    /// In state [`State::Issued`] with `issuance`.
    request: Request,
    issuance: Issuance,
}

impl Signed {
    /// The request, issued.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The issuance record: what was signed.
    pub fn issuance(&self) -> &Issuance {
        &self.issuance
    }

    /// Writes the issuance with `events` (its audit records, in the same atomic step), then
    /// makes it durable (the store flushed, the audit log file caught up). Done with the
    /// recorded issuance only once both happened.
    pub(crate) fn record(
        self,
        authority: &Authority,
        events: &[AuditRecord],
    ) -> Result<Attempt<Recorded>, AuthorityError> {
        match self
            .base
            .write(authority.store.as_ref(), &self.request, events)?
        {
            Swap::Conflict => Ok(Attempt::Conflict),
            Swap::Done => {
                authority.durable()?;
                Ok(Attempt::Done(Recorded {
                    certificate: Certificate {
                        openssh: self.issuance.certificate,
                    },
                    request: self.request,
                }))
            }
        }
    }
}

/// An issued request whose issuance is stored and durable: its certificate may leave.
pub struct Recorded {
    /// In state [`State::Issued`], with `certificate`.
    request: Request,
    certificate: Certificate,
}

impl Recorded {
    /// A stored issued request read back, once every write so far is durable (the issuance
    /// may have been written by a swap whose flush is still running or failed).
    pub(crate) fn read_back(
        authority: &Authority,
        request: Request,
    ) -> Result<Self, AuthorityError> {
        let State::Issued(issuance) = &request.state else {
            return Err(AuthorityError::Conflict(format!(
                "request {} has no certificate: it is {}",
                request.id,
                request.state_name(Utc::now())
            )));
        };
        let certificate = Certificate {
            openssh: issuance.certificate.clone(),
        };
        authority.durable()?;
        Ok(Self {
            request,
            certificate,
        })
    }

    /// The request, issued.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The certificate, to hand out.
    pub fn certificate(&self) -> Certificate {
        self.certificate.clone()
    }

    /// The request, issued.
    pub(crate) fn into_request(self) -> Request {
        self.request
    }
}

/// A certificate that may leave the daemon: its issuance is stored and durable. Displays as
/// the OpenSSH one-line form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    openssh: String,
}

impl Certificate {
    /// The OpenSSH one-line form.
    pub fn as_str(&self) -> &str {
        &self.openssh
    }
}

impl fmt::Display for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.openssh)
    }
}

fn unix(t: DateTime<Utc>) -> u64 {
    t.timestamp().max(0) as u64
}

fn from_unix(secs: u64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs as i64, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use jitca_policy::{Ask, Policy};
    use ssh_key::{Certificate as SshCertificate, PrivateKey};

    use super::*;
    use crate::grant_of;

    struct Keys {
        ca: PrivateKey,
        alice: PrivateKey,
    }

    fn keys() -> Keys {
        Keys {
            ca: jitca_signer::generate_ed25519("ca").unwrap(),
            alice: jitca_signer::generate_ed25519("alice").unwrap(),
        }
    }

    /// alice (dev) requests; bob and carol (sre) approve. `pair` needs two approvals, `web`
    /// one, `lab` none; `glass` is break-glass.
    fn policy() -> Policy {
        let text = "users:\n\
            \x20 alice: {keys: [], groups: [dev]}\n\
            \x20 bob: {keys: [], groups: [sre]}\n\
            \x20 carol: {keys: [], groups: [sre]}\n\
            hosts:\n  pairs: [pair1]\n  web: [web1]\n  lab: [lab1]\n\
            rules:\n\
            \x20 - {name: dev-pair, requesters: [dev], hosts: [pairs], logins: [root], max_duration: 1h, approvals: 2, approvers: [sre]}\n\
            \x20 - {name: dev-web, requesters: [dev], hosts: [web], logins: [root], max_duration: 1h, approvals: 1, approvers: [sre]}\n\
            \x20 - {name: dev-lab, requesters: [dev], hosts: [lab], logins: [root], max_duration: 1h, approvals: 0}\n\
            \x20 - {name: dev-glass, requesters: [dev], hosts: [web], logins: [root], max_duration: 30m, break_glass: true, approvers: [sre]}\n";
        jitca_policy::parse(text, Path::new("/etc/jitca/jitca.yaml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .policy
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap()
    }

    /// Makes alice's request for root on `host` (break-glass if asked), as `open` does.
    fn opened(policy: &Policy, keys: &Keys, host: &str, break_glass: bool) -> Approving {
        let ask = Ask {
            hosts: vec![host.into()],
            logins: vec!["root".into()],
            duration: Duration::from_secs(1800),
            break_glass,
        };
        let decided = policy.decide("alice", &ask).unwrap();
        open(
            &decided,
            Making {
                id: "req1".into(),
                public_key: keys.alice.public_key().to_openssh().unwrap(),
                fingerprint: "SHA256:test".into(),
                reason: "INC-1".into(),
                source: "127.0.0.1:1".into(),
                created_at: now(),
                lapses_at: now() + TimeDelta::hours(1),
                review_required: break_glass,
                requester_mfa: false,
            },
        )
    }

    /// The request `approving` would write, as stored and read back.
    fn stored(approving: Approving) -> Versioned {
        let Approving::Waiting(waiting) = approving else {
            panic!("expected a request waiting for approvals");
        };
        Versioned::new(waiting.next, b"token".to_vec())
    }

    fn pending(policy: &Policy, keys: &Keys, host: &str) -> Pending {
        Pending::check(stored(opened(policy, keys, host, false)), now())
            .unwrap_or_else(|_| panic!("a new request is pending"))
    }

    fn eligible(policy: &Policy, by: &str, request: &Request) -> Eligible {
        policy
            .check_approver(by, &request.requester, &grant_of(request))
            .unwrap()
    }

    fn approve(policy: &Policy, pending: Pending, by: &str) -> (Approving, Vec<Approval>) {
        let proof = eligible(policy, by, pending.request());
        pending.approve(proof, false, now(), |_| true).unwrap()
    }

    #[test]
    fn a_request_that_needs_approval_is_made_waiting_with_exactly_the_decided_grant() {
        let (policy, keys) = (policy(), keys());
        let approving = opened(&policy, &keys, "web1", false);
        assert!(matches!(approving, Approving::Waiting(_)));
        let request = approving.request();
        assert_eq!(request.state, State::Pending);
        assert_eq!(
            (request.rule.as_str(), request.approvals_needed),
            ("dev-web", 1)
        );
        assert_eq!(request.principals, ["root@web1"]);
        assert_eq!(request.duration_secs, 1800);
        assert_eq!(request.requester, "alice");
        assert!(request.approvals.is_empty());
        // The stored terms are the decision: judging them again gives the same grant.
        assert_eq!(
            policy
                .decide_request("alice", &grant_of(request).ask())
                .unwrap(),
            grant_of(request)
        );
    }

    #[test]
    fn a_request_that_needs_no_approval_is_approved_at_once() {
        let (policy, keys) = (policy(), keys());
        let approving = opened(&policy, &keys, "lab1", false);
        let Approving::Approved(approved) = approving else {
            panic!("approvals: 0 is approved at once");
        };
        assert_eq!(approved.request().rule, "dev-lab");
        assert_eq!(approved.request().state, State::Pending);
    }

    #[test]
    fn a_break_glass_request_is_approved_at_once_and_its_key_id_says_so() {
        let (policy, keys) = (policy(), keys());
        let Approving::Approved(approved) = opened(&policy, &keys, "web1", true) else {
            panic!("break-glass is approved at once");
        };
        assert!(approved.request().break_glass);
        let ca = CertAuthority::from_key(keys.ca.clone()).unwrap();
        let signed = approved.sign(&ca, 7, now()).unwrap();
        assert_eq!(
            signed.issuance().key_id,
            "jitca:req1:alice:break-glass:approvers=none"
        );
    }

    #[test]
    fn only_a_waiting_request_before_its_deadline_is_pending() {
        let (policy, keys) = (policy(), keys());
        let request = stored(opened(&policy, &keys, "web1", false));
        let lapses_at = request.request.lapses_at;
        assert!(Pending::check(request.clone(), lapses_at - TimeDelta::seconds(1)).is_ok());
        assert!(Pending::check(request.clone(), lapses_at).is_err());
        for state in [
            State::Lapsed { at: now() },
            State::Denied {
                by: "bob".into(),
                at: now(),
                reason: "no".into(),
            },
        ] {
            let mut decided = request.request.clone();
            decided.state = state;
            let refused = Pending::check(Versioned::new(decided.clone(), vec![]), now())
                .err()
                .expect("a decided request is not pending");
            assert_eq!(refused.request, decided);
        }
    }

    #[test]
    fn the_last_approval_needed_approves_and_earlier_ones_wait() {
        let (policy, keys) = (policy(), keys());
        let (first, dropped) = approve(&policy, pending(&policy, &keys, "pair1"), "bob");
        assert!(dropped.is_empty());
        let request = first.request().clone();
        assert_eq!(request.approvers().collect::<Vec<_>>(), ["bob"]);
        let again = Pending::check(stored(first), now()).unwrap_or_else(|_| panic!("pending"));
        let (second, _) = approve(&policy, again, "carol");
        let Approving::Approved(approved) = second else {
            panic!("the second of two approvals approves");
        };
        assert_eq!(
            approved.request().approvers().collect::<Vec<_>>(),
            ["bob", "carol"]
        );
    }

    #[test]
    fn an_approver_counts_once() {
        let (policy, keys) = (policy(), keys());
        let (first, _) = approve(&policy, pending(&policy, &keys, "pair1"), "bob");
        let again = Pending::check(stored(first), now()).unwrap_or_else(|_| panic!("pending"));
        let proof = eligible(&policy, "bob", again.request());
        let refused = again.approve(proof, false, now(), |_| true).err().unwrap();
        assert_eq!(
            refused.to_string(),
            "you have already approved request req1"
        );
    }

    #[test]
    fn a_proof_for_another_request_approves_nothing() {
        let (policy, keys) = (policy(), keys());
        let web = pending(&policy, &keys, "web1");
        let proof = eligible(&policy, "bob", web.request());
        let pair = pending(&policy, &keys, "pair1");
        let refused = pair.approve(proof, false, now(), |_| true).err().unwrap();
        assert!(matches!(refused, AuthorityError::Refused(_)), "{refused}");
    }

    #[test]
    fn approvals_that_no_longer_count_are_dropped_and_the_request_waits_again() {
        let (policy, keys) = (policy(), keys());
        let (first, _) = approve(&policy, pending(&policy, &keys, "pair1"), "bob");
        let again = Pending::check(stored(first), now()).unwrap_or_else(|_| panic!("pending"));
        let proof = eligible(&policy, "carol", again.request());
        let (approving, dropped) = again
            .approve(proof, true, now(), |a| a.by != "bob")
            .unwrap();
        assert_eq!(
            dropped.iter().map(|a| a.by.as_str()).collect::<Vec<_>>(),
            ["bob"]
        );
        assert!(matches!(approving, Approving::Waiting(_)));
        let approvals = &approving.request().approvals;
        assert_eq!(approvals.len(), 1);
        assert_eq!(
            (approvals[0].by.as_str(), approvals[0].mfa),
            ("carol", true)
        );
    }

    #[test]
    fn signing_certifies_exactly_the_approved_grant() {
        let (policy, keys) = (policy(), keys());
        let (approving, _) = approve(&policy, pending(&policy, &keys, "web1"), "carol");
        let Approving::Approved(approved) = approving else {
            panic!("one approval is all dev-web needs");
        };
        let ca = CertAuthority::from_key(keys.ca.clone()).unwrap();
        let signed = approved.sign(&ca, 42, now()).unwrap();
        let issuance = signed.issuance().clone();
        assert_eq!(signed.request().state, State::Issued(issuance.clone()));
        assert_eq!(issuance.key_id, "jitca:req1:alice:approvers=carol");
        assert_eq!(issuance.valid_after, now() - BACKDATE);
        assert_eq!(issuance.valid_before, now() + TimeDelta::seconds(1800));
        let certificate = SshCertificate::from_openssh(&issuance.certificate).unwrap();
        assert_eq!(certificate.serial(), 42);
        assert_eq!(certificate.valid_principals(), ["root@web1"]);
        assert_eq!(certificate.key_id(), issuance.key_id);
        assert_eq!(certificate.public_key(), keys.alice.public_key().key_data());
        assert_eq!(certificate.signature_key(), keys.ca.public_key().key_data());
    }

    #[test]
    fn a_certificate_shows_as_its_openssh_line() {
        let certificate = Certificate {
            openssh: "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
        };
        assert_eq!(certificate.to_string(), certificate.as_str());
        assert_eq!(
            format!("{certificate}\n"),
            "ssh-ed25519-cert-v01@openssh.com AAAA\n"
        );
    }
}
