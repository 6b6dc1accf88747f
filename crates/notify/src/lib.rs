//! Webhook alerts: jitca tells a chat channel or an incident tool when access is asked for,
//! decided, taken by break-glass, revoked, or due for review.
//!
//! Alerts are a side channel, never a gate: [`Notifier::send`] only puts the alert on a bounded
//! queue and returns, so a slow, failing or hanging endpoint can never hold up issuance. Each
//! webhook has its own worker thread and queue, so one bad endpoint never delays another. A
//! worker retries connection errors, timeouts, 5xx and 429 with doubling backoff; every failed
//! attempt is logged at `warn`, a given-up or refused alert at `error`. Webhook URLs are
//! secrets (Slack's path is the credential), so logs name an endpoint only by its index and
//! `scheme://host:port` ([`redact_url`]).
//!
//! Wiring, in short:
//! ```no_run
//! use jitca_notify::{Alert, AlertKind, Notifier, Retry, Webhook};
//! # fn alert() -> Alert { unimplemented!() }
//! let hooks = vec![Webhook { url: "https://hooks.example/T0/B0/secret".into(), events: vec![] }];
//! let notifier = Notifier::start(hooks, Retry::default());
//! notifier.send(alert());                                 // from any thread or async task
//! notifier.drain(std::time::Duration::from_secs(5));      // at shutdown
//! ```

mod deliver;
pub mod settings;
pub mod text;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jitca_metrics::{Dropped, WebhookCounters};
use serde::{Deserialize, Serialize};

/// What happened. Config files name these in a webhook's `events:` list, in the snake_case
/// form that [`FromStr`] reads and [`fmt::Display`] writes (`request_made`, `decided`,
/// `break_glass`, `revoked`, `review_due`, `checkpoint`); the JSON body carries the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Someone asked for access.
    RequestMade,
    /// A request was decided: approved and issued, denied, or ended otherwise (`outcome` says).
    Decided,
    /// A certificate was issued without approval, under a break-glass rule.
    BreakGlass,
    /// A certificate was revoked.
    Revoked,
    /// A post-access review is due (or, with `outcome: "done"`, was done).
    ReviewDue,
    /// The daemon signed a checkpoint of the audit chain (`checkpoint` holds it), so that a
    /// copy lives outside the CA host.
    Checkpoint,
}

impl AlertKind {
    /// Every kind, in a stable order: what an empty `events` list subscribes to.
    pub const ALL: [AlertKind; 6] = [
        AlertKind::RequestMade,
        AlertKind::Decided,
        AlertKind::BreakGlass,
        AlertKind::Revoked,
        AlertKind::ReviewDue,
        AlertKind::Checkpoint,
    ];

    /// The snake_case name used in config, JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::RequestMade => "request_made",
            AlertKind::Decided => "decided",
            AlertKind::BreakGlass => "break_glass",
            AlertKind::Revoked => "revoked",
            AlertKind::ReviewDue => "review_due",
            AlertKind::Checkpoint => "checkpoint",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertKind {
    type Err = String;

    /// Reads the snake_case name; the error is one line naming the accepted values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let shown: String = s.chars().take(40).collect();
                format!(
                    "unknown alert event {shown:?}; expected one of request_made, decided, \
                     break_glass, revoked, review_due, checkpoint"
                )
            })
    }
}

/// One endpoint that receives alerts.
///
/// `Debug` shows only `scheme://host:port` of the URL, since the rest is usually a credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where alerts are POSTed (the config check, [`settings::check_url`], has vetted it).
    pub url: String,
    /// The kinds this endpoint wants; empty means every kind.
    pub events: Vec<AlertKind>,
}

impl Webhook {
    /// Whether this endpoint subscribed to `kind`.
    pub fn wants(&self, kind: AlertKind) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &redact_url(&self.url))
            .field("events", &self.events)
            .finish()
    }
}

/// One alert. The JSON body is every field here (times in RFC 3339) plus a one-line,
/// Slack-compatible `text` (see [`text::render`]).
///
/// The fields are the raw values: consumers of the JSON must treat `reason` (typed by the
/// requester) as untrusted. Only `text` is made safe for chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// What happened.
    pub event: AlertKind,
    /// The request id.
    pub id: String,
    /// Who asked.
    pub requester: String,
    /// The policy rule the request fell under.
    pub rule: String,
    /// The hosts asked for.
    pub hosts: Vec<String>,
    /// The logins asked for.
    pub logins: Vec<String>,
    /// How long the access lasts, in seconds (the request's `duration_secs`); 0 leaves it out
    /// of `text`.
    pub duration_secs: u64,
    /// The requester's reason: untrusted text.
    pub reason: String,
    /// Who acted: the approver, denier, revoker or reviewer.
    pub by: Option<String>,
    /// How it ended, e.g. `issued`, `denied`, `expired`, `done`, `revoked`.
    pub outcome: Option<String>,
    /// The certificate's serial, once there is one.
    pub serial: Option<u64>,
    /// Whether the access was taken by break-glass.
    pub break_glass: bool,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// `checkpoint` alerts: the signed checkpoint, text and armored signature (the request
    /// fields are then empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// The delivery schedule for one alert to one webhook.
///
/// Attempt `n` (from 1) that fails with a retryable error waits `first_backoff * 2^(n-1)`,
/// capped at `max_backoff`, before attempt `n + 1`; a 429's `Retry-After` (seconds) replaces
/// that wait, still capped at `max_backoff`. The default (6 attempts, 1 s doubling to 60 s,
/// 10 s per attempt) rides out about a minute of endpoint trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included; 0 counts as 1.
    pub attempts: u32,
    /// The wait after the first failed attempt.
    pub first_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// The limit on one attempt: connecting, sending, and reading the answer.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How many alerts may wait for each webhook before new ones are dropped (and logged): a
/// bound on memory when an endpoint is down during a burst.
pub const QUEUE_CAPACITY: usize = 10_000;

/// The part of a webhook URL that is safe to log: `scheme://host:port`, without user info,
/// path or query (where the secrets are). An unparseable URL gives `<invalid URL>`.
pub fn redact_url(url: &str) -> String {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return "<invalid URL>".to_owned();
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return "<invalid URL>".to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    format!("{scheme}://{host}:{port}")
}

/// Whether `url` is plain `http://` to a host other than this machine.
fn plain_http_off_host(url: &str) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return false;
    };
    let http = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("http"));
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let local = host == "localhost" || host == "[::1]" || host.starts_with("127.");
    http && !local
}

/// Counts alerts queued or in delivery, so that [`Notifier::drain`] can wait for zero.
#[derive(Default)]
struct Pending {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Pending {
    fn add(&self) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn done(&self) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.changed.notify_all();
        }
    }
}

/// One webhook's end of its worker.
struct Hook {
    index: usize,
    endpoint: String,
    hook: Webhook,
    queue: SyncSender<Arc<Alert>>,
    dropped: AtomicU64,
}

struct Inner {
    hooks: Vec<Hook>,
    pending: Arc<Pending>,
    counters: WebhookCounters,
}

/// The handle through which the daemon sends alerts. Cheap to clone (one `Arc`), `Send` and
/// `Sync`; the workers stop once every clone is dropped and their queues are empty.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field(
                "hooks",
                &self.inner.hooks.iter().map(|h| &h.hook).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Notifier {
    /// Starts one worker thread per webhook, each with a queue of [`QUEUE_CAPACITY`] alerts.
    /// With no hooks nothing is started and [`send`](Self::send) does nothing.
    pub fn start(hooks: Vec<Webhook>, retry: Retry) -> Notifier {
        Notifier::start_with_capacity(hooks, retry, QUEUE_CAPACITY)
    }

    /// A notifier with no webhooks: [`send`](Self::send) does nothing. For a config without
    /// `notify:`, and for tests of the code that sends.
    pub fn disabled() -> Notifier {
        Notifier::start(Vec::new(), Retry::default())
    }

    /// [`start`](Self::start) with another queue bound per webhook (at least 1): for tests and
    /// for tuning memory against burst size.
    pub fn start_with_capacity(hooks: Vec<Webhook>, retry: Retry, capacity: usize) -> Notifier {
        Notifier::start_counted(hooks, retry, capacity, WebhookCounters::default())
    }

    /// [`start_with_capacity`](Self::start_with_capacity), counting deliveries and drops in
    /// `counters` (the daemon's metrics).
    pub fn start_counted(
        hooks: Vec<Webhook>,
        retry: Retry,
        capacity: usize,
        counters: WebhookCounters,
    ) -> Notifier {
        let pending = Arc::new(Pending::default());
        let mut started = Vec::with_capacity(hooks.len());
        for (index, hook) in hooks.into_iter().enumerate() {
            let endpoint = redact_url(&hook.url);
            if plain_http_off_host(&hook.url) {
                tracing::warn!(
                    hook = index,
                    endpoint = %endpoint,
                    "webhook uses plain http: its URL (often a secret) and every alert cross the \
                     network unencrypted; prefer https"
                );
            }
            let (queue, alerts) = mpsc::sync_channel::<Arc<Alert>>(capacity.max(1));
            let worker = deliver::Worker::new(
                index,
                endpoint.clone(),
                hook.url.clone(),
                retry,
                counters.clone(),
            );
            let pending_w = Arc::clone(&pending);
            let spawned = std::thread::Builder::new()
                .name(format!("jitca-notify-{index}"))
                .spawn(move || {
                    while let Ok(alert) = alerts.recv() {
                        worker.deliver(&alert);
                        pending_w.done();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(
                    hook = index,
                    endpoint = %endpoint,
                    "could not start the webhook worker thread, alerts to this webhook are off: {e}"
                );
                continue;
            }
            started.push(Hook {
                index,
                endpoint,
                hook,
                queue,
                dropped: AtomicU64::new(0),
            });
        }
        Notifier {
            inner: Arc::new(Inner {
                hooks: started,
                pending,
                counters,
            }),
        }
    }

    /// Queues `alert` for every webhook that wants its kind, and returns at once: it never
    /// blocks and never fails. When a webhook's queue is full (its endpoint is down during a
    /// burst) the alert is dropped for that webhook and the drop is logged at `error`.
    pub fn send(&self, alert: Alert) {
        let inner = &*self.inner;
        let mut shared: Option<Arc<Alert>> = None;
        for hook in inner.hooks.iter().filter(|h| h.hook.wants(alert.event)) {
            let alert = shared.get_or_insert_with(|| Arc::new(alert.clone()));
            inner.pending.add();
            match hook.queue.try_send(Arc::clone(alert)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    inner.pending.done();
                    let dropped = hook.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    inner.counters.dropped(Dropped::QueueFull);
                    tracing::error!(
                        hook = hook.index,
                        endpoint = %hook.endpoint,
                        event = %alert.event,
                        id = %alert.id,
                        dropped,
                        "webhook queue is full; alert dropped"
                    );
                }
                Err(TrySendError::Disconnected(_)) => {
                    inner.pending.done();
                    inner.counters.dropped(Dropped::WorkerStopped);
                    tracing::error!(
                        hook = hook.index,
                        endpoint = %hook.endpoint,
                        event = %alert.event,
                        id = %alert.id,
                        "webhook worker has stopped; alert dropped"
                    );
                }
            }
        }
    }

    /// Waits up to `deadline` for every queued alert to be delivered or given up, for use at
    /// shutdown. Returns whether the queues emptied in time; if not, the number left is logged
    /// at `error` (the workers keep going until the process exits).
    pub fn drain(&self, deadline: Duration) -> bool {
        let pending = &self.inner.pending;
        let until = Instant::now() + deadline;
        let mut count = pending.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count > 0 {
            let now = Instant::now();
            if now >= until {
                tracing::error!(
                    undelivered = *count,
                    "shutting down with webhook alerts still undelivered"
                );
                return false;
            }
            count = pending
                .changed
                .wait_timeout(count, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in AlertKind::ALL {
            assert_eq!(kind.to_string().parse::<AlertKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.to_string())
            );
        }
        assert_eq!("break_glass".parse(), Ok(AlertKind::BreakGlass));
        let err = "BreakGlass".parse::<AlertKind>().unwrap_err();
        assert!(err.contains("break_glass") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn redaction_keeps_only_scheme_host_port() {
        assert_eq!(
            redact_url("https://user:pw@hooks.slack.com/services/T0/B0/secret?x=1"),
            "https://hooks.slack.com:443"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8080/s"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(redact_url("nonsense url"), "<invalid URL>");
        let hook = Webhook {
            url: "https://h.example/secret".into(),
            events: vec![],
        };
        assert!(!format!("{hook:?}").contains("secret"));
    }

    #[test]
    fn plain_http_is_flagged_off_this_host() {
        assert!(plain_http_off_host("http://hooks.example/x"));
        assert!(plain_http_off_host("HTTP://10.0.0.1/x"));
        assert!(!plain_http_off_host("https://hooks.example/x"));
        assert!(!plain_http_off_host("http://127.0.0.1:9000/x"));
        assert!(!plain_http_off_host("http://localhost/x"));
        assert!(!plain_http_off_host("http://[::1]:80/x"));
    }

    #[test]
    fn empty_events_means_all() {
        let all = Webhook {
            url: "https://h.example/".into(),
            events: vec![],
        };
        let one = Webhook {
            url: "https://h.example/".into(),
            events: vec![AlertKind::BreakGlass],
        };
        for kind in AlertKind::ALL {
            assert!(all.wants(kind));
            assert_eq!(one.wants(kind), kind == AlertKind::BreakGlass);
        }
    }

    #[test]
    fn no_hooks_is_a_no_op() {
        let n = Notifier::disabled();
        n.send(Alert {
            event: AlertKind::RequestMade,
            id: "r".into(),
            requester: "alice".into(),
            rule: "prod".into(),
            hosts: vec![],
            logins: vec![],
            duration_secs: 0,
            reason: String::new(),
            by: None,
            outcome: None,
            serial: None,
            break_glass: false,
            at: Utc::now(),
            checkpoint: None,
        });
        assert!(n.drain(Duration::ZERO));
    }

    #[test]
    fn notifier_is_send_sync_clone() {
        fn ok<T: Send + Sync + Clone + 'static>() {}
        ok::<Notifier>();
    }
}
