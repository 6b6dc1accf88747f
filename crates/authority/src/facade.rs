//! The facade: one [`Authority`] that the daemon shares, made of parts with one idea each.
//!
//! The parts are the policy in force (here), the request lifecycle (`lifecycle`, with its
//! states in `states` and the issuance order in `issuance`), ending access (`revocation`),
//! after-access governance (`governance`), second factors (`mfa`), the audit journal and
//! its durability (`journal`), and signed checkpoints (`checkpoint`). Each part is an
//! `impl Authority` block in its own file, with the fields only it uses kept in its own type.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use jitca_metrics::Metrics;
use jitca_policy::Policy;
use jitca_signer::CertAuthority;
use jitca_store::{Request, Store, Versioned};
use ssh_key::PublicKey;
use tokio::sync::broadcast;

use crate::journal::Journal;
use crate::revocation::Revocations;
use crate::{AuthorityError, Notice, Notify, Settings};

/// The request lifecycle. Cheap to share (`Arc`).
pub struct Authority {
    policy: RwLock<Arc<Policy>>,
    /// Held shared while a request is decided and its outcome committed, and exclusively
    /// while a reload puts a new policy in force: an issuance commits wholly under the policy
    /// it was decided by, and a reload's sweep of removed users, which starts after the swap,
    /// sees (and revokes) everything committed under the old one.
    commit: RwLock<()>,
    /// Counts policies put in force; connections watch it to check their caller again.
    generation: tokio::sync::watch::Sender<u64>,
    pub(crate) pending_ttl: Duration,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) signer: CertAuthority,
    /// Earlier CA keys hosts still trust: never certified, and named in the KRL too.
    pub(crate) earlier_cas: Vec<PublicKey>,
    /// The control channel's host key, refused as a subject key.
    pub(crate) host_key: Option<PublicKey>,
    /// The audit log file and the rate limit on recorded authentication failures.
    pub(crate) journal: Journal,
    /// The KRL and what is retried to end access (`crate::revocation`).
    pub(crate) revocations: Revocations,
    changes: broadcast::Sender<String>,
    notify: Option<Arc<dyn Notify>>,
    /// The key that signs audit checkpoints (`crate::checkpoint`), once loaded or made.
    pub(crate) audit_key: crate::checkpoint::AuditKey,
    /// Second factors: the sealing key (`crate::mfa`).
    pub(crate) mfa: crate::mfa::MfaState,
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
        // Changes made by other daemons sharing the store wake waiters and watchers here too.
        let announced = changes.clone();
        store.follow(Box::new(move |id| {
            let _ = announced.send(id.to_string());
        }));
        let journal = Journal::open(settings.audit_log.as_deref(), store.as_ref())?;
        Ok(Self {
            policy: RwLock::new(Arc::new(policy)),
            commit: RwLock::new(()),
            generation: tokio::sync::watch::Sender::new(0),
            pending_ttl: settings.pending_ttl,
            store,
            signer,
            earlier_cas: settings.earlier_cas,
            host_key: settings.host_key,
            journal,
            revocations: Revocations::new(settings.krl_path),
            changes,
            notify: settings.notify,
            audit_key: Default::default(),
            mfa: crate::mfa::MfaState::default(),
            metrics: settings.metrics,
        })
    }

    /// The policy in force.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        self.policy.read().expect("policy lock").clone()
    }

    /// Held while a decision is taken and committed under the policy in force: a reload
    /// waits for it, and it waits for a reload.
    pub(crate) fn committing(&self) -> RwLockReadGuard<'_, ()> {
        self.commit.read().expect("commit lock")
    }

    /// Changes each time a new policy is put in force (a reload). A connection authenticated
    /// before it checks its caller again ([`Authority::identify_again`]).
    pub fn policy_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Put `policy` in force: after every issuance decided under the old one has committed,
    /// before any decided under the new one starts.
    /// `record` runs in the same exclusive step, so the reload's audit record sits in the
    /// chain exactly between the decisions taken under the old policy and the new one.
    pub(crate) fn put_in_force<T>(&self, policy: Policy, record: impl FnOnce() -> T) -> T {
        let _commit = self.commit.write().expect("commit lock");
        *self.policy.write().expect("policy lock") = Arc::new(policy);
        let recorded = record();
        self.generation.send_modify(|g| *g += 1);
        recorded
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

    /// The stored request `id`, with its compare-and-swap token.
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

    /// Wakes whoever waits on request `id` ([`Authority::subscribe`]).
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

    /// Passes a checkpoint the daemon signed on (webhooks); returns at once.
    pub(crate) fn tell_checkpoint(&self, signed: &str) {
        if let Some(notify) = &self.notify {
            notify.checkpoint(signed);
        }
    }
}
