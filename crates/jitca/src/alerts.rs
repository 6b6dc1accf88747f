//! The daemon's notices to the config's `notify:` webhooks.

use std::sync::Arc;

use chrono::Utc;
use jitca_authority::{Notice, Notify, Request};
use jitca_notify::{Alert, AlertKind, Notifier, Retry, Webhook};

/// Hands the lifecycle's notices to the webhook workers; never blocks.
pub struct Webhooks(Notifier);

impl Webhooks {
    /// Starts one delivery worker per webhook; `None` when the config lists none.
    pub fn start(hooks: &[Webhook], metrics: &jitca_metrics::Metrics) -> Option<Arc<Self>> {
        if hooks.is_empty() {
            return None;
        }
        Some(Arc::new(Self(Notifier::start_counted(
            hooks.to_vec(),
            Retry::default(),
            jitca_notify::QUEUE_CAPACITY,
            metrics.webhooks(),
        ))))
    }

    /// On shutdown: gives queued alerts a few seconds to go out.
    pub fn drain(&self) {
        if !self.0.drain(std::time::Duration::from_secs(5)) {
            tracing::warn!("stopped with webhook alerts still undelivered");
        }
    }
}

impl Notify for Webhooks {
    fn notify(&self, notice: Notice, request: &Request, by: Option<&str>) {
        let (event, outcome) = match notice {
            Notice::RequestMade => (AlertKind::RequestMade, None),
            Notice::Decided => (AlertKind::Decided, Some(request.state_name(Utc::now()))),
            Notice::BreakGlass => (AlertKind::BreakGlass, Some("issued")),
            Notice::Revoked => (AlertKind::Revoked, Some("revoked")),
            Notice::ReviewDue => (AlertKind::ReviewDue, None),
        };
        self.0.send(Alert {
            event,
            id: request.id.clone(),
            requester: request.requester.clone(),
            rule: request.rule.clone(),
            hosts: request.hosts.clone(),
            logins: request.logins.clone(),
            duration_secs: request.duration_secs,
            reason: request.reason.clone(),
            by: by.map(str::to_string),
            outcome: outcome.map(str::to_string),
            serial: request.issuance().map(|i| i.serial),
            break_glass: request.break_glass,
            at: Utc::now(),
            checkpoint: None,
        });
    }

    fn checkpoint(&self, signed: &str) {
        self.0.send(Alert {
            event: AlertKind::Checkpoint,
            id: String::new(),
            requester: String::new(),
            rule: String::new(),
            hosts: Vec::new(),
            logins: Vec::new(),
            duration_secs: 0,
            reason: String::new(),
            by: None,
            outcome: None,
            serial: None,
            break_glass: false,
            at: Utc::now(),
            checkpoint: Some(signed.to_string()),
        });
    }
}
