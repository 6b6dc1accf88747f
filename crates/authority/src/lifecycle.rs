use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jitca_metrics::{Metrics, Outcome};
use jitca_policy::{Ask, Grant, Policy};
use jitca_signer::{CertAuthority, CertTemplate};
use jitca_store::{
    Approval, AuditQuery, AuditRecord, ChainBreak, EventKind, Head, Issuance, Request, State,
    Store, Swap, Versioned,
};
use rand::RngExt;
use ssh_key::{HashAlg, PublicKey};
use tokio::sync::broadcast;

use crate::AuthorityError;
use crate::audit::{self, AuditFile, AuthFailure, AuthFailureLimiter};
use crate::revocation::KrlCache;

/// How far a certificate's validity starts before its issuance, for hosts whose clocks lag.
const BACKDATE: TimeDelta = TimeDelta::seconds(60);
/// Request ids: short enough to type, drawn from letters that cannot be confused.
const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
const ID_LEN: usize = 10;

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

/// The request lifecycle. Cheap to share (`Arc`).
pub struct Authority {
    pub(crate) policy: RwLock<Arc<Policy>>,
    /// Held shared while a request is decided and its outcome committed, and exclusively
    /// while a reload puts a new policy in force: an issuance commits wholly under the policy
    /// it was decided by, and a reload's sweep of removed users, which starts after the swap,
    /// sees (and revokes) everything committed under the old one.
    pub(crate) commit: RwLock<()>,
    /// Counts policies put in force; connections watch it to check their caller again.
    generation: tokio::sync::watch::Sender<u64>,
    pending_ttl: Duration,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) signer: CertAuthority,
    audit_file: Option<AuditFile>,
    pub(crate) krl: Mutex<Option<KrlCache>>,
    pub(crate) krl_path: Option<PathBuf>,
    pub(crate) earlier_cas: Vec<PublicKey>,
    auth_failures: Mutex<AuthFailureLimiter>,
    changes: broadcast::Sender<String>,
    pub(crate) notify: Option<Arc<dyn Notify>>,
    /// The key that signs audit checkpoints (`crate::checkpoint`), once loaded or made.
    pub(crate) audit_key: RwLock<Option<Arc<ssh_key::PrivateKey>>>,
    /// Second factors: the sealing key (`crate::mfa`).
    pub(crate) mfa: crate::mfa::MfaState,
    /// The control channel's host key, refused as a subject key.
    host_key: Option<PublicKey>,
    /// What failed and is retried by [`Authority::upkeep`] (`crate::revocation`).
    pub(crate) retry: Mutex<crate::revocation::Retry>,
    pub(crate) metrics: Metrics,
}

impl Authority {
    /// Fails if the audit log file cannot be opened, or belongs to another store, or the store
    /// cannot be read.
    pub fn new(
        policy: Policy,
        settings: Settings,
        store: Arc<dyn Store>,
        signer: CertAuthority,
    ) -> Result<Self, AuthorityError> {
        let (changes, _) = broadcast::channel(1024);
        let store: Arc<dyn Store> = Arc::new(crate::metered::Metered::new(
            store,
            settings.metrics.clone(),
        )?);
        let audit_file = settings
            .audit_log
            .as_deref()
            .map(|path| AuditFile::open(path, store.as_ref()))
            .transpose()?;
        Ok(Self {
            policy: RwLock::new(Arc::new(policy)),
            commit: RwLock::new(()),
            generation: tokio::sync::watch::Sender::new(0),
            pending_ttl: settings.pending_ttl,
            store,
            signer,
            audit_file,
            krl: Mutex::new(None),
            krl_path: settings.krl_path,
            earlier_cas: settings.earlier_cas,
            auth_failures: Mutex::new(AuthFailureLimiter::new()),
            changes,
            notify: settings.notify,
            audit_key: RwLock::new(None),
            mfa: crate::mfa::MfaState::default(),
            host_key: settings.host_key,
            retry: Mutex::new(Default::default()),
            metrics: settings.metrics,
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().expect("policy lock").clone()
    }

    /// Changes each time a new policy is put in force (a reload). A connection authenticated
    /// before it checks its caller again ([`Authority::identify_again`]).
    pub fn policy_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Put `policy` in force: after every issuance decided under the old one has committed,
    /// before any decided under the new one starts.
    pub(crate) fn put_in_force(&self, policy: Policy) {
        let _commit = self.commit.write().expect("commit lock");
        *self.policy.write().expect("policy lock") = Arc::new(policy);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Refuses unless `key` still identifies `user` under the policy in force: a connection
    /// authenticated before a reload that removed the key or the person gets nothing more.
    pub fn identify_again(&self, key: &PublicKey, user: &str) -> Result<(), AuthorityError> {
        match self.policy().identify(&key.to_bytes().unwrap_or_default()) {
            Some(found) if found.name == user => Ok(()),
            _ => Err(AuthorityError::Refused(format!(
                "the key this connection authenticated with is no longer registered to {user} \
                 (the config changed); nothing was done"
            ))),
        }
    }

    /// The CA public key line.
    pub fn ca_public_key(&self) -> &str {
        self.signer.public_key_line()
    }

    /// Ids of requests that changed, as they change. Subscribe before reading a request's state
    /// so that no change between the read and the wait is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// Makes a request. With `approvals: 0` it is issued at once.
    pub fn submit(&self, caller: &Caller, new: NewRequest) -> Result<Request, AuthorityError> {
        let started = Instant::now();
        let made = self.make_request(caller, new);
        match &made {
            Ok(request) if request.issuance().is_some() => self.issued(started),
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

    fn make_request(&self, caller: &Caller, new: NewRequest) -> Result<Request, AuthorityError> {
        jitca_signer::check_subject_key(&new.public_key)?;
        // Held until the request (and, with no approval needed, its issuance) is committed.
        let _commit = self.commit.read().expect("commit lock");
        let policy = self.policy();
        self.check_own_key(&policy, caller, &new.public_key)?;
        let ask = Ask {
            hosts: new.hosts,
            logins: new.logins,
            duration: new.duration,
            break_glass: new.break_glass,
        };
        let grant = policy.decide_request(&caller.user, &ask)?;
        let rule = policy
            .rule(&grant.rule)
            .ok_or(jitca_policy::Denial::PolicyChanged)?;
        if let Some(pattern) = &rule.reason_pattern
            && !pattern.is_match(&new.reason)
        {
            return Err(jitca_policy::Denial::ReasonMismatch {
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
        let mut request = Request {
            id: String::new(),
            requester: caller.user.clone(),
            public_key: subject
                .to_openssh()
                .map_err(|e| AuthorityError::Invalid(format!("unusable public key: {e}")))?,
            fingerprint: new.public_key.fingerprint(HashAlg::Sha256).to_string(),
            hosts: grant.hosts.clone(),
            logins: grant.logins.clone(),
            principals: grant.principals.clone(),
            duration_secs: grant.duration.as_secs(),
            reason: new.reason,
            rule: grant.rule.clone(),
            approvals_needed: grant.approvals_needed,
            extensions: grant.extensions.clone(),
            critical_options: grant.critical_options.clone(),
            source: caller.source.clone(),
            created_at: now,
            lapses_at: now + to_delta(self.pending_ttl),
            approvals: Vec::new(),
            state: State::Pending,
            break_glass: rule.break_glass,
            review_required: rule.review_required || rule.break_glass,
            requester_mfa: caller.factor.verified(),
            review: None,
            review_due_announced: false,
            usage: None,
        };
        loop {
            request.id = new_id();
            if grant.approvals_needed == 0 {
                let serial = self.store.next_serial()?;
                request.state = State::Issued(self.sign(&request, serial, now)?);
            }
            let mut events = vec![audit::requested(&request)];
            events.extend(audit::issued(&request, &caller.user));
            match self.store.create_request(&request, &events) {
                Ok(()) => break,
                // Ids are random; on the rare clash draw again (and sign again: the key id names it).
                Err(jitca_store::StoreError::Exists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.durable().map_err(|e| match e {
            AuthorityError::AuditLog(why) if request.issuance().is_some() => {
                AuthorityError::AuditLog(format!(
                    "{why}; request {} is issued but its certificate is withheld until the \
                     audit log can be written (then: get {})",
                    request.id, request.id
                ))
            }
            other => other,
        })?;
        tracing::info!(id = %request.id, requester = %request.requester, rule = %request.rule,
            principals = ?request.principals, state = request.state_name(now),
            break_glass = request.break_glass, "request made");
        self.announce(&request.id);
        self.tell(Notice::RequestMade, &request, None);
        if request.issuance().is_some() {
            let notice = if request.break_glass {
                Notice::BreakGlass
            } else {
                Notice::Decided
            };
            self.tell(notice, &request, None);
        }
        Ok(request)
    }

    /// Records one approval; the last one needed issues the certificate. The request is judged
    /// again under the policy in force: its requester must still be given exactly this grant,
    /// it must meet the rule as it stands now (reason pattern, the requester's one-time code),
    /// and only approvals from people who are still eligible approvers of the rule (with a
    /// one-time code, when the rule now asks for one) count; the others are dropped.
    pub fn approve(&self, caller: &Caller, id: &str) -> Result<Request, AuthorityError> {
        let started = Instant::now();
        // Held until the approval (and the issuance it completes) is committed.
        let _commit = self.commit.read().expect("commit lock");
        let policy = self.policy();
        loop {
            let current = self.find(id)?;
            let request = &current.request;
            let grant = grant_of(request);
            policy.check_approver(&caller.user, &request.requester, &grant)?;
            let now = Utc::now();
            self.ensure_pending(&current, now)?;
            let rule = policy
                .rule(&request.rule)
                .ok_or(jitca_policy::Denial::PolicyChanged)?;
            if rule.approver_mfa {
                require_factor(caller, &rule.name, "approvals")?;
            }
            still_meets(rule, request)?;
            if request.approvers().any(|a| a == caller.user) {
                return Err(AuthorityError::Conflict(format!(
                    "you have already approved request {id}"
                )));
            }
            let mut next = request.clone();
            let (counted, dropped): (Vec<Approval>, Vec<Approval>) =
                next.approvals.drain(..).partition(|a| {
                    policy
                        .check_approver(&a.by, &request.requester, &grant)
                        .is_ok()
                        && (a.mfa || !rule.approver_mfa)
                });
            next.approvals = counted;
            next.approvals.push(Approval {
                by: caller.user.clone(),
                at: now,
                mfa: caller.factor.verified(),
            });
            if next.approvals.len() >= next.approvals_needed as usize {
                let serial = self.store.next_serial()?;
                next.state = State::Issued(self.sign(&next, serial, now)?);
            }
            let mut approved = audit::approved(&next, caller);
            if !dropped.is_empty() {
                // Approvals that no longer count: their approver left the rule's approver
                // groups (or the config), or the rule now asks approvers for a one-time code.
                approved = approved.with(
                    "dropped_approvals",
                    dropped.iter().map(|a| a.by.as_str()).collect::<Vec<_>>(),
                );
            }
            let mut events = vec![approved];
            events.extend(audit::issued(&next, &caller.user));
            match self.store.replace_request(&current, &next, &events)? {
                Swap::Done => {
                    self.durable()?;
                    tracing::info!(%id, approver = %caller.user, state = next.state_name(now),
                        serial = next.issuance().map(|i| i.serial),
                        dropped = ?dropped.iter().map(|a| &a.by).collect::<Vec<_>>(),
                        "request approved");
                    self.announce(id);
                    if next.issuance().is_some() {
                        self.issued(started);
                        self.tell(Notice::Decided, &next, Some(&caller.user));
                    }
                    return Ok(next);
                }
                // Someone else changed it first: look again (it may be decided now).
                Swap::Conflict => continue,
            }
        }
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
        let policy = self.policy();
        loop {
            let current = self.find(id)?;
            let request = &current.request;
            policy.check_approver(&caller.user, &request.requester, &grant_of(request))?;
            let now = Utc::now();
            self.ensure_pending(&current, now)?;
            let mut next = request.clone();
            next.state = State::Denied {
                by: caller.user.clone(),
                at: now,
                reason: reason.to_string(),
            };
            let events = [audit::denied(&next, caller, reason)];
            match self.store.replace_request(&current, &next, &events)? {
                Swap::Done => {
                    self.durable()?;
                    tracing::info!(%id, approver = %caller.user, "request denied");
                    self.metrics.request_ended(Outcome::Denied);
                    self.announce(id);
                    self.tell(Notice::Decided, &next, Some(&caller.user));
                    return Ok(next);
                }
                Swap::Conflict => continue,
            }
        }
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

    /// The requester's issued certificate, while it is valid, for `get` (recorded). Durable
    /// before it is returned.
    pub fn certificate(&self, caller: &Caller, id: &str) -> Result<String, AuthorityError> {
        let (request, certificate) = self.valid_certificate(caller, id)?;
        let serial = request.issuance().map_or(0, |i| i.serial);
        self.store
            .append_audit(&[audit::fetched(&request, caller, serial)])?;
        self.durable()?;
        Ok(certificate)
    }

    /// The certificate for the requester's own waiting session: its issuance event is the
    /// record of it leaving. Durable before it is returned.
    pub fn issued_certificate(&self, caller: &Caller, id: &str) -> Result<String, AuthorityError> {
        let (_, certificate) = self.valid_certificate(caller, id)?;
        // The issuance may have been written by a swap whose flush (or audit file write) is
        // still running or failed: nothing leaves before it is durable everywhere.
        self.durable()?;
        Ok(certificate)
    }

    fn valid_certificate(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Request, String), AuthorityError> {
        let request = self.find(id)?.request;
        if request.requester != caller.user {
            return Err(AuthorityError::NotFound(id.to_string()));
        }
        let now = Utc::now();
        match &request.state {
            State::Issued(issuance) if now < issuance.valid_before => {
                let certificate = issuance.certificate.clone();
                Ok((request, certificate))
            }
            _ => Err(AuthorityError::Conflict(format!(
                "request {id} has no valid certificate: it is {}",
                request.state_name(now)
            ))),
        }
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
            let current = self.find(&request.id)?;
            match &current.request.state {
                State::Pending if self.lapse(&current, now)? => lapsed += 1,
                State::Issued(_) => self.announce_review_due(&current, now)?,
                _ => {}
            }
        }
        Ok(lapsed)
    }

    /// Lapses one request if it is pending and due.
    pub fn lapse_if_due(&self, id: &str) -> Result<(), AuthorityError> {
        let current = self.find(id)?;
        self.lapse(&current, Utc::now())?;
        Ok(())
    }

    /// Records an event that goes with no request change (daemon start and stop, reloads).
    pub fn record(&self, event: AuditRecord) -> Result<(), AuthorityError> {
        self.store.append_audit(&[event])?;
        self.durable()
    }

    /// Records a refused command: who, the command line, and why.
    pub fn record_refusal(
        &self,
        caller: &Caller,
        line: &str,
        message: &str,
    ) -> Result<(), AuthorityError> {
        self.metrics.command_refused();
        self.record(audit::refused(caller, line, message))
    }

    /// Records a connection that ended without authenticating, within a rate limit. `None`
    /// only closes the rate-limit window, recording how many were not recorded one by one.
    pub fn record_auth_failure(&self, failure: Option<&AuthFailure>) -> Result<(), AuthorityError> {
        let events = self
            .auth_failures
            .lock()
            .expect("auth failure limiter")
            .admit(failure, Instant::now());
        if events.is_empty() {
            return Ok(());
        }
        self.store.append_audit(&events)?;
        self.durable()
    }

    /// The audit records matching `query`, for auditors only; the read itself is recorded
    /// first. `visit` returns false to stop.
    pub fn read_audit(
        &self,
        caller: &Caller,
        query: &AuditQuery,
        visit: &mut dyn FnMut(&AuditRecord, &[u8]) -> bool,
    ) -> Result<(), AuthorityError> {
        self.ensure_auditor(caller)?;
        self.record(audit::audit_read(caller, query))?;
        self.store.scan_audit(query, visit)?;
        Ok(())
    }

    /// Verifies the audit chain end to end, for auditors only; the outcome is recorded.
    pub fn verify_audit(
        &self,
        caller: &Caller,
    ) -> Result<Result<Head, ChainBreak>, AuthorityError> {
        self.ensure_auditor(caller)?;
        let outcome = jitca_store::verify_audit(self.store.as_ref())?;
        let mut event = AuditRecord::new(EventKind::AuditVerified, &caller.user);
        event.source = Some(caller.source.clone());
        let event = match &outcome {
            Ok(head) => event.with("result", "intact").with("records", head.seq),
            Err(b) => event.with("result", b.to_string()),
        };
        self.record(event)?;
        Ok(outcome)
    }

    pub(crate) fn ensure_auditor(&self, caller: &Caller) -> Result<(), AuthorityError> {
        if self.policy().is_auditor(&caller.user) {
            Ok(())
        } else {
            Err(AuthorityError::Denied(jitca_policy::Denial::NotAuditor))
        }
    }

    /// Makes every write so far durable: the store flushed, and the audit file (if any)
    /// caught up and synced. Every path that lets a certificate leave goes through here.
    pub(crate) fn durable(&self) -> Result<(), AuthorityError> {
        self.store.flush()?;
        if let Some(file) = &self.audit_file {
            file.catch_up(self.store.as_ref())?;
        }
        Ok(())
    }

    fn lapse(&self, current: &Versioned, now: DateTime<Utc>) -> Result<bool, AuthorityError> {
        if !matches!(current.request.state, State::Pending) || now < current.request.lapses_at {
            return Ok(false);
        }
        let mut next = current.request.clone();
        next.state = State::Lapsed { at: now };
        match self
            .store
            .replace_request(current, &next, &[audit::lapsed(&next)])?
        {
            Swap::Done => {
                self.durable()?;
                tracing::info!(id = %next.id, "request lapsed");
                self.metrics.request_ended(Outcome::Lapsed);
                self.announce(&next.id);
                Ok(true)
            }
            // Decided meanwhile: nothing to lapse.
            Swap::Conflict => Ok(false),
        }
    }

    /// Refuses unless the request is pending; a pending request past its deadline is lapsed
    /// here and refused.
    fn ensure_pending(
        &self,
        current: &Versioned,
        now: DateTime<Utc>,
    ) -> Result<(), AuthorityError> {
        let id = &current.request.id;
        match &current.request.state {
            State::Pending if now < current.request.lapses_at => Ok(()),
            State::Pending => {
                self.lapse(current, now)?;
                Err(AuthorityError::Conflict(format!("request {id} has lapsed")))
            }
            State::Issued(_) => Err(AuthorityError::Conflict(format!(
                "request {id} is already approved and issued"
            ))),
            State::Denied { by, .. } => Err(AuthorityError::Conflict(format!(
                "request {id} was denied by {by}"
            ))),
            State::Lapsed { .. } => {
                Err(AuthorityError::Conflict(format!("request {id} has lapsed")))
            }
            State::Revoked { .. } => Err(AuthorityError::Conflict(format!(
                "request {id} was issued and then revoked"
            ))),
        }
    }

    pub(crate) fn find(&self, id: &str) -> Result<Versioned, AuthorityError> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(AuthorityError::Invalid(format!(
                "{} is not a request id",
                id.escape_debug()
            )));
        }
        self.store
            .request(id)?
            .ok_or_else(|| AuthorityError::NotFound(id.to_string()))
    }

    fn sign(
        &self,
        request: &Request,
        serial: u64,
        now: DateTime<Utc>,
    ) -> Result<Issuance, AuthorityError> {
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
        let valid_after = now - BACKDATE;
        let valid_before = now + TimeDelta::seconds(request.duration_secs as i64);
        let signed = self.signer.sign(&CertTemplate {
            subject: &subject,
            serial,
            key_id: &key_id,
            principals: &request.principals,
            valid_after: unix(valid_after),
            valid_before: unix(valid_before),
            extensions: &request.extensions,
            critical_options: &request.critical_options,
        })?;
        Ok(Issuance {
            serial,
            key_id,
            issued_at: now,
            valid_after: from_unix(unix(valid_after)),
            valid_before: from_unix(unix(valid_before)),
            certificate: signed.openssh,
        })
    }

    pub(crate) fn announce(&self, id: &str) {
        // No receivers is fine: nobody is waiting.
        let _ = self.changes.send(id.to_string());
    }

    /// Passes a notice on (webhooks); returns at once.
    pub(crate) fn tell(&self, notice: Notice, request: &Request, by: Option<&str>) {
        if let Some(notify) = &self.notify {
            notify.notify(notice, request, by);
        }
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

/// The grant a stored request was made under, to check again against the policy in force.
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

fn unix(t: DateTime<Utc>) -> u64 {
    t.timestamp().max(0) as u64
}

fn from_unix(secs: u64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs as i64, 0).unwrap_or_default()
}
