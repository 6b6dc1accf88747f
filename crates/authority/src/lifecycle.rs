//! The request lifecycle: making a request, approving and denying it, lapsing it, and who may
//! see it. Each step reads the stored request, turns it into the state type the step needs
//! (`crate::states`), and writes the outcome with a compare-and-swap (`crate::swap`); the
//! issuance itself is `crate::issuance`.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jitca_metrics::Outcome;
use jitca_policy::{Ask, Denial, Grant, Policy};
use jitca_store::{Approval, Request, State, Versioned};
use rand::RngExt;
use ssh_key::{HashAlg, PublicKey};

use crate::states::{self, Approving, Certificate, Making, Pending};
use crate::swap::{self, Attempt, Changed, Step};
use crate::{Authority, AuthorityError, Caller, Factor, ListFilter, NewRequest, Notice, audit};

/// Request ids: short enough to type, drawn from letters that cannot be confused.
const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
const ID_LEN: usize = 10;

/// A request just made: as stored, and its certificate when it was issued at once (no
/// approval needed), recorded and durable.
pub struct Made {
    /// The request as stored.
    pub request: Request,
    /// Its certificate, if it needed no approval: recorded and durable, free to leave.
    pub certificate: Option<Certificate>,
}

impl Authority {
    /// Makes a request. With `approvals: 0` it is issued at once.
    pub fn submit(&self, caller: &Caller, new: NewRequest) -> Result<Request, AuthorityError> {
        self.make(caller, new).map(|made| made.request)
    }

    /// [`Authority::submit`], with the certificate when it was issued at once.
    pub fn make(&self, caller: &Caller, new: NewRequest) -> Result<Made, AuthorityError> {
        let started = Instant::now();
        let made = self.make_request(caller, new);
        match &made {
            Ok(Made {
                certificate: Some(_),
                ..
            }) => self.issued(started),
            Ok(_) => {}
            Err(
                AuthorityError::Denied(_)
                | AuthorityError::Refused(_)
                | AuthorityError::Invalid(_)
                | AuthorityError::Signer(jitca_signer::SignerError::Subject(_)),
            ) => self.metrics.request_ended(Outcome::Refused),
            Err(_) => {}
        }
        made
    }

    /// Counts an issuance that took since `started`.
    fn issued(&self, started: Instant) {
        self.metrics.certificate_issued(started.elapsed());
        self.metrics.request_ended(Outcome::Issued);
    }

    fn make_request(&self, caller: &Caller, new: NewRequest) -> Result<Made, AuthorityError> {
        jitca_signer::check_subject_key(&new.public_key)?;
        // Held until the request (and, with no approval needed, its issuance) is committed.
        let _commit = self.committing();
        let policy = self.policy();
        self.check_own_key(&policy, caller, &new.public_key)?;
        let ask = Ask {
            hosts: new.hosts,
            logins: new.logins,
            duration: new.duration,
            break_glass: new.break_glass,
        };
        let decided = policy.decide(&caller.user, &ask)?;
        let rule = policy
            .rule(&decided.grant().rule)
            .ok_or(Denial::PolicyChanged)?;
        if let Some(pattern) = &rule.reason_pattern
            && !pattern.is_match(&new.reason)
        {
            return Err(Denial::ReasonMismatch {
                rule: rule.name.clone(),
                pattern: pattern.as_str().to_string(),
            }
            .into());
        }
        if rule.requester_mfa {
            require_factor(caller, &rule.name, "requests")?;
        }
        let now = Utc::now();
        let mut subject = new.public_key.clone();
        subject.set_comment("");
        let public_key = subject
            .to_openssh()
            .map_err(|e| AuthorityError::Invalid(format!("unusable public key: {e}")))?;
        let fingerprint = new.public_key.fingerprint(HashAlg::Sha256).to_string();
        // Each attempt draws a new id: the store refuses one that is taken.
        let made = swap::retry(
            || Ok(new_id()),
            |id| {
                let opened = states::open(
                    &decided,
                    Making {
                        id,
                        public_key: public_key.clone(),
                        fingerprint: fingerprint.clone(),
                        reason: new.reason.clone(),
                        source: caller.source.clone(),
                        created_at: now,
                        lapses_at: now + to_delta(self.pending_ttl),
                        review_required: rule.review_required || rule.break_glass,
                        requester_mfa: caller.factor.verified(),
                    },
                );
                let events = vec![audit::requested(opened.request())];
                Ok(match opened {
                    Approving::Waiting(waiting) => match waiting.write(&*self.store, &events)? {
                        Attempt::Done(request) => Attempt::Done(Made {
                            request,
                            certificate: None,
                        }),
                        Attempt::Conflict => Attempt::Conflict,
                    },
                    Approving::Approved(approved) => {
                        let id = approved.request().id.clone();
                        match self
                            .issue(approved, events, &caller.user, now)
                            .map_err(|e| withheld(e, &id))?
                        {
                            Attempt::Done(recorded) => Attempt::Done(Made {
                                certificate: Some(recorded.certificate()),
                                request: recorded.into_request(),
                            }),
                            Attempt::Conflict => Attempt::Conflict,
                        }
                    }
                })
            },
        )?;
        if made.certificate.is_none() {
            // Issued requests were made durable on their way to `Recorded`.
            self.durable()?;
        }
        let request = &made.request;
        tracing::info!(id = %request.id, requester = %request.requester, rule = %request.rule,
            principals = ?request.principals, state = request.state_name(now),
            break_glass = request.break_glass, "request made");
        self.announce(&request.id);
        self.tell(Notice::RequestMade, request, None);
        if made.certificate.is_some() {
            let notice = if request.break_glass {
                Notice::BreakGlass
            } else {
                Notice::Decided
            };
            self.tell(notice, request, None);
        }
        Ok(made)
    }

    /// Records one approval; the last one needed issues the certificate. The request is judged
    /// again under the policy in force: its requester must still be given exactly this grant,
    /// it must meet the rule as it stands now (reason pattern, the requester's one-time code),
    /// and only approvals from people who are still eligible approvers of the rule (with a
    /// one-time code, when the rule now asks for one) count; the others are dropped.
    pub fn approve(&self, caller: &Caller, id: &str) -> Result<Request, AuthorityError> {
        let started = Instant::now();
        // Held until the approval (and the issuance it completes) is committed.
        let _commit = self.committing();
        let policy = self.policy();
        let (next, dropped, issued) = swap::retry(
            || self.find(id),
            |current| {
                let grant = grant_of(&current.request);
                let eligible =
                    policy.check_approver(&caller.user, &current.request.requester, &grant)?;
                let now = Utc::now();
                let pending = self.pending(current, now)?;
                let rule = policy
                    .rule(&pending.request().rule)
                    .ok_or(Denial::PolicyChanged)?;
                if rule.approver_mfa {
                    require_factor(caller, &rule.name, "approvals")?;
                }
                still_meets(rule, pending.request())?;
                let requester = pending.request().requester.clone();
                let (approving, dropped) =
                    pending.approve(eligible, caller.factor.verified(), now, |a: &Approval| {
                        policy.check_approver(&a.by, &requester, &grant).is_ok()
                            && (a.mfa || !rule.approver_mfa)
                    })?;
                let mut approved = audit::approved(approving.request(), caller);
                if !dropped.is_empty() {
                    // Approvals that no longer count: their approver left the rule's approver
                    // groups (or the config), or the rule now asks approvers for a one-time
                    // code.
                    approved = approved.with(
                        "dropped_approvals",
                        dropped.iter().map(|a| a.by.as_str()).collect::<Vec<_>>(),
                    );
                }
                Ok(match approving {
                    Approving::Waiting(waiting) => {
                        match waiting.write(&*self.store, &[approved])? {
                            Attempt::Done(next) => {
                                self.durable()?;
                                Attempt::Done((next, dropped, false))
                            }
                            Attempt::Conflict => Attempt::Conflict,
                        }
                    }
                    Approving::Approved(ready) => {
                        match self.issue(ready, vec![approved], &caller.user, now)? {
                            Attempt::Done(recorded) => {
                                Attempt::Done((recorded.into_request(), dropped, true))
                            }
                            Attempt::Conflict => Attempt::Conflict,
                        }
                    }
                })
            },
        )?;
        tracing::info!(%id, approver = %caller.user, state = next.state_name(Utc::now()),
            serial = next.issuance().map(|i| i.serial),
            dropped = ?dropped.iter().map(|a| &a.by).collect::<Vec<_>>(),
            "request approved");
        self.announce(id);
        if issued {
            self.issued(started);
            self.tell(Notice::Decided, &next, Some(&caller.user));
        }
        Ok(next)
    }

    /// Refuses a subject key that is not the requester's own to have certified: the CA's
    /// keys (current or earlier), the control channel's host key, or a key registered to
    /// someone else.
    fn check_own_key(
        &self,
        policy: &Policy,
        caller: &Caller,
        key: &PublicKey,
    ) -> Result<(), AuthorityError> {
        let data = key.key_data();
        let refuse = |whose: &str| {
            Err(AuthorityError::Invalid(format!(
                "the key sent is {whose}, not a key of yours to certify; send your own public \
                 key (~/.ssh/id_ed25519.pub)"
            )))
        };
        if data == self.signer.public_key().key_data()
            || self.earlier_cas.iter().any(|k| k.key_data() == data)
        {
            return refuse("the CA's key");
        }
        if self.host_key.as_ref().is_some_and(|k| k.key_data() == data) {
            return refuse("this CA's host key");
        }
        match policy.identify(&key.to_bytes().unwrap_or_default()) {
            Some(owner) if owner.name != caller.user => refuse("registered to another person"),
            _ => Ok(()),
        }
    }

    /// Ends a pending request.
    pub fn deny(&self, caller: &Caller, id: &str, reason: &str) -> Result<Request, AuthorityError> {
        // Held until the denial is committed, like an approval: a reload orders against it.
        let _commit = self.committing();
        let policy = self.policy();
        let Changed::Written(next) = self.change_request::<Infallible>(id, |current| {
            let request = &current.request;
            policy.check_approver(&caller.user, &request.requester, &grant_of(request))?;
            let now = Utc::now();
            let pending = self.pending(current.clone(), now)?;
            let mut next = pending.request().clone();
            next.state = State::Denied {
                by: caller.user.clone(),
                at: now,
                reason: reason.to_string(),
            };
            let events = vec![audit::denied(&next, caller, reason)];
            Ok(Step::Write(next, events))
        })?;
        self.durable()?;
        tracing::info!(%id, approver = %caller.user, "request denied");
        self.metrics.request_ended(Outcome::Denied);
        self.announce(id);
        self.tell(Notice::Decided, &next, Some(&caller.user));
        Ok(next)
    }

    /// A request the caller may see.
    pub fn show(&self, caller: &Caller, id: &str) -> Result<Request, AuthorityError> {
        let request = self.find(id)?.request;
        if !self
            .policy()
            .may_view(&caller.user, &request.requester, &grant_of(&request))
        {
            return Err(AuthorityError::NotFound(id.to_string()));
        }
        Ok(request)
    }

    /// The requests the caller may see, newest first.
    pub fn list(
        &self,
        caller: &Caller,
        filter: ListFilter,
    ) -> Result<Vec<Request>, AuthorityError> {
        let policy = self.policy();
        let now = Utc::now();
        let mut found: Vec<Request> = self
            .store
            .requests()?
            .into_iter()
            .filter(|r| !filter.mine_only || r.requester == caller.user)
            .filter(|r| !filter.pending_only || r.state_name(now) == "pending")
            .filter(|r| !filter.unreviewed || (r.ended(now) && r.review.is_none()))
            .filter(|r| !filter.unused || (r.issuance().is_some() && r.usage.is_none()))
            .filter(|r| policy.may_view(&caller.user, &r.requester, &grant_of(r)))
            .collect();
        if filter.unreviewed {
            // Stable: newest first within each class.
            found.sort_by_key(|r| (!r.break_glass, !r.review_required));
        }
        Ok(found)
    }

    /// Reads a request for its own requester's waiting session (no view check needed).
    pub fn current(&self, id: &str) -> Result<Request, AuthorityError> {
        Ok(self.find(id)?.request)
    }

    /// Moves every pending request past its deadline to `lapsed`, and announces the review
    /// of every grant that needs one and has expired. Returns how many lapsed.
    pub fn lapse_due(&self) -> Result<usize, AuthorityError> {
        let now = Utc::now();
        let mut lapsed = 0;
        // Only those due: reading every request ever made (or every pending one) every few
        // seconds costs time and memory that grow with the store.
        for request in self.store.due(now)? {
            match &request.state {
                State::Pending if self.lapse(&request.id, now)? => lapsed += 1,
                State::Issued(_) => self.announce_review_due(&request.id, now)?,
                _ => {}
            }
        }
        Ok(lapsed)
    }

    /// Lapses one request if it is pending and due.
    pub fn lapse_if_due(&self, id: &str) -> Result<(), AuthorityError> {
        self.lapse(id, Utc::now())?;
        Ok(())
    }

    /// Lapses request `id` if it is still pending and past its deadline at `now`; whether it
    /// did.
    fn lapse(&self, id: &str, now: DateTime<Utc>) -> Result<bool, AuthorityError> {
        let changed = self.change_request(id, |current| {
            let request = &current.request;
            if !matches!(request.state, State::Pending) || now < request.lapses_at {
                // Decided meanwhile, or not due: nothing to lapse.
                return Ok(Step::Keep(()));
            }
            let mut next = request.clone();
            next.state = State::Lapsed { at: now };
            let events = vec![audit::lapsed(&next)];
            Ok(Step::Write(next, events))
        })?;
        let Changed::Written(next) = changed else {
            return Ok(false);
        };
        self.durable()?;
        tracing::info!(id = %next.id, "request lapsed");
        self.metrics.request_ended(Outcome::Lapsed);
        self.announce(&next.id);
        Ok(true)
    }

    /// The stored request as [`Pending`], or the refusal that says what it is instead; a
    /// pending request past its deadline is lapsed here and refused.
    fn pending(&self, current: Versioned, now: DateTime<Utc>) -> Result<Pending, AuthorityError> {
        let current = match Pending::check(current, now) {
            Ok(pending) => return Ok(pending),
            Err(current) => current,
        };
        let id = &current.request.id;
        Err(match &current.request.state {
            State::Pending => {
                self.lapse(id, now)?;
                AuthorityError::Conflict(format!("request {id} has lapsed"))
            }
            State::Issued(_) => {
                AuthorityError::Conflict(format!("request {id} is already approved and issued"))
            }
            State::Denied { by, .. } => {
                AuthorityError::Conflict(format!("request {id} was denied by {by}"))
            }
            State::Lapsed { .. } => AuthorityError::Conflict(format!("request {id} has lapsed")),
            State::Revoked { .. } => {
                AuthorityError::Conflict(format!("request {id} was issued and then revoked"))
            }
        })
    }
}

/// An issuance that failed on its way to durable: the request is stored and issued, but its
/// certificate does not leave until the audit log can be written; the message says how to
/// get it then.
fn withheld(error: AuthorityError, id: &str) -> AuthorityError {
    match error {
        AuthorityError::AuditLog(why) => AuthorityError::AuditLog(format!(
            "{why}; request {id} is issued but its certificate is withheld until the audit log \
             can be written (then: get {id})"
        )),
        other => other,
    }
}

/// Refuses approving a pending request that the rule in force would not have let be made: its
/// reason no longer matches the rule's `reason_pattern`, or the rule now asks requesters for a
/// one-time code and the request was made without one.
fn still_meets(rule: &jitca_policy::Rule, request: &Request) -> Result<(), AuthorityError> {
    let id = &request.id;
    if let Some(pattern) = &rule.reason_pattern
        && !pattern.is_match(&request.reason)
    {
        return Err(AuthorityError::Refused(format!(
            "request {id} no longer meets rule {}: its reason does not match {} (the rule \
             changed since it was made); deny it and have the requester ask again",
            rule.name,
            pattern.as_str().escape_debug()
        )));
    }
    if rule.requester_mfa && !request.requester_mfa {
        return Err(AuthorityError::Refused(format!(
            "request {id} no longer meets rule {}: the rule now asks requesters for a one-time \
             code, and this request was made without one; deny it and have the requester ask \
             again",
            rule.name
        )));
    }
    Ok(())
}

/// Refuses unless the caller's connection proved a second factor.
fn require_factor(caller: &Caller, rule: &str, what: &str) -> Result<(), AuthorityError> {
    let why = match &caller.factor {
        Factor::Verified => return Ok(()),
        Factor::NotEnrolled => {
            "you have no second factor enrolled; enrol with the command mfa enroll".to_string()
        }
        Factor::Skipped => "connect again and enter the code from your authenticator app \
                            when asked"
            .to_string(),
        Factor::Failed(why) => format!("{why}; connect again with a new code"),
    };
    Err(AuthorityError::Refused(format!(
        "rule {rule} needs a one-time code (TOTP) for {what}: {why}"
    )))
}

/// The grant a stored request was made under (its terms are exactly the decided grant,
/// written once by `states::open`), to judge it again under the policy in force.
pub fn grant_of(request: &Request) -> Grant {
    Grant {
        rule: request.rule.clone(),
        hosts: request.hosts.clone(),
        logins: request.logins.clone(),
        principals: request.principals.clone(),
        duration: Duration::from_secs(request.duration_secs),
        approvals_needed: request.approvals_needed,
        extensions: request.extensions.clone(),
        critical_options: request.critical_options.clone(),
        break_glass: request.break_glass,
    }
}

fn new_id() -> String {
    let mut rng = rand::rng();
    (0..ID_LEN)
        .map(|_| ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char)
        .collect()
}

fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}
