//! The daemon's metrics: one registry and its families, and the `metrics_listen` HTTP listener
//! that serves them at `GET /metrics` in the Prometheus text format.
//!
//! [`Metrics`] is made once at start and handed, cloned, to the parts that count (the
//! authority, the control channel, the webhook workers); a clone shares every value. Counting
//! is one atomic operation: label values are resolved once here, never on a hot path. Nothing
//! is labelled with a user, a host, a key or an address: the values say how much, never who.
//! See docs/operator.md for what each metric means and the alerts that go with them.

mod http;

use std::sync::Arc;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub use http::serve;

type Counter = IntCounter;
type Gauge = IntGauge;

/// How a request ended (`jitca_requests_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A certificate was issued for it (at once, or at its last approval).
    Issued,
    /// An approver denied it.
    Denied,
    /// Nobody decided before `pending_ttl`.
    Lapsed,
    /// It was pending when its requester left the config, and was ended.
    Withdrawn,
    /// The daemon refused to make it: the policy, the key or the reason did not allow it.
    Refused,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Issued,
        Outcome::Denied,
        Outcome::Lapsed,
        Outcome::Withdrawn,
        Outcome::Refused,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Issued => "issued",
            Outcome::Denied => "denied",
            Outcome::Lapsed => "lapsed",
            Outcome::Withdrawn => "withdrawn",
            Outcome::Refused => "refused",
        }
    }
}

/// Why a webhook alert was not delivered (`jitca_webhook_alerts_dropped_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The webhook's queue was full (its endpoint down during a burst).
    QueueFull,
    /// The webhook's worker thread had stopped.
    WorkerStopped,
    /// Every attempt failed (the endpoint down for longer than the retries last).
    GaveUp,
    /// The endpoint answered with an error that retrying cannot fix (a 4xx).
    Refused,
}

impl Dropped {
    const ALL: [Dropped; 4] = [
        Dropped::QueueFull,
        Dropped::WorkerStopped,
        Dropped::GaveUp,
        Dropped::Refused,
    ];

    fn label(self) -> &'static str {
        match self {
            Dropped::QueueFull => "queue_full",
            Dropped::WorkerStopped => "worker_stopped",
            Dropped::GaveUp => "gave_up",
            Dropped::Refused => "refused",
        }
    }
}

/// How a config reload ended (`jitca_config_reloads_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// The new config is in force.
    Done,
    /// The file failed the checks of `jitca check`: the config in force stays.
    Refused,
    /// The new config was checked but putting it in force failed.
    Failed,
}

impl Reload {
    const ALL: [Reload; 3] = [Reload::Done, Reload::Refused, Reload::Failed];

    fn label(self) -> &'static str {
        match self {
            Reload::Done => "done",
            Reload::Refused => "refused",
            Reload::Failed => "failed",
        }
    }
}

/// The counters of webhook deliveries: all a webhook worker needs. Detached (counted nowhere)
/// by default, for tools and tests that send alerts without a daemon.
#[derive(Clone)]
pub struct WebhookCounters {
    delivered: Counter,
    dropped: [Counter; 4],
}

impl Default for WebhookCounters {
    fn default() -> Self {
        let detached = || Counter::new("detached", "counted nowhere").expect("a valid metric");
        Self {
            delivered: detached(),
            dropped: [(); 4].map(|_| detached()),
        }
    }
}

impl WebhookCounters {
    pub fn delivered(&self) {
        self.delivered.inc();
    }

    pub fn dropped(&self, why: Dropped) {
        self.dropped[why as usize].inc();
    }
}

/// Every metric of the daemon. Cheap to clone; clones share the values.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    certificates_issued: Counter,
    requests: [Counter; 5],
    pending_requests: Gauge,
    auth_failures: Counter,
    commands_refused: Counter,
    control_connections: Gauge,
    krl_version: Gauge,
    krl_path_write_failures: Counter,
    krl_path_failing: Gauge,
    audit_records: Gauge,
    issue_duration: Histogram,
    store_write_duration: Histogram,
    store_errors: Counter,
    upkeep_failing: Gauge,
    webhooks: WebhookCounters,
    reloads: [Counter; 3],
    reload_successful: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding every family, all at zero.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("jitca".into()), None).expect("a valid prefix");
        let r = &registry;

        let build_info = Gauge::with_opts(
            Opts::new(
                "build_info",
                "The running jitca's version, as a label; always 1",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("a valid metric");
        build_info.set(1);
        add(r, build_info);

        let certificates_issued = counter(
            r,
            "certificates_issued_total",
            "Certificates signed and stored (break-glass included)",
        );
        let requests = labelled(
            r,
            "requests_total",
            "Access requests by how they ended: issued, denied, lapsed, withdrawn (the \
             requester left the config while it was pending) or refused (never made: the \
             policy, the key or the reason did not allow it)",
            "outcome",
            Outcome::ALL.map(Outcome::label),
        );
        let pending_requests = gauge(r, "pending_requests", "Requests waiting for approval");
        let auth_failures = counter(
            r,
            "auth_failures_total",
            "Control-channel connections that tried to authenticate and never did (unknown \
             keys, scanners)",
        );
        let commands_refused = counter(
            r,
            "commands_refused_total",
            "Commands of authenticated people that were refused (and audited as refused)",
        );
        let control_connections = gauge(
            r,
            "control_connections",
            "Open control-channel (SSH) connections",
        );
        let krl_version = gauge(
            r,
            "krl_version",
            "Version of the revocation list (KRL) being served",
        );
        let krl_path_write_failures = counter(
            r,
            "krl_path_write_failures_total",
            "Failed writes of krl_path (each retry counts)",
        );
        let krl_path_failing = gauge(
            r,
            "krl_path_failing",
            "1 while krl_path cannot be written: hosts reading it miss the latest revocations",
        );
        let audit_records = gauge(
            r,
            "audit_records",
            "Records in the audit log (the sequence number of its last record)",
        );
        let issue_duration = histogram(
            r,
            "issue_duration_seconds",
            "Time to issue a certificate, from the call that completes a request (its last \
             approval, or the request itself) to the issuance being durable",
            prometheus::exponential_buckets(0.001, 2.0, 14),
        );
        let store_write_duration = histogram(
            r,
            "store_write_duration_seconds",
            "Time of each write to the store (request changes, audit appends, flushes)",
            prometheus::exponential_buckets(0.0001, 2.0, 16),
        );
        let store_errors = counter(
            r,
            "store_errors_total",
            "Store operations (reads, writes, flushes) that failed",
        );
        let upkeep_failing = gauge(
            r,
            "upkeep_failing",
            "1 while something on the way to ending access (an audit record, a revocation, a \
             new KRL version, durability) still fails and is being retried",
        );
        let delivered = counter(
            r,
            "webhook_alerts_delivered_total",
            "Webhook alerts delivered",
        );
        let dropped = labelled(
            r,
            "webhook_alerts_dropped_total",
            "Webhook alerts not delivered, by reason: queue_full, worker_stopped, gave_up \
             (every retry failed), refused (the endpoint answered 4xx)",
            "reason",
            Dropped::ALL.map(Dropped::label),
        );
        let reloads = labelled(
            r,
            "config_reloads_total",
            "Config reloads (SIGHUP) by result: done, refused (the file failed the checks; \
             the config in force stays), failed",
            "result",
            Reload::ALL.map(Reload::label),
        );
        let reload_successful = gauge(
            r,
            "config_last_reload_successful",
            "0 when the last reload was refused or failed (the file on disk is not the config \
             in force), 1 otherwise",
        );
        reload_successful.set(1);

        Self {
            registry: Arc::new(registry),
            certificates_issued,
            requests,
            pending_requests,
            auth_failures,
            commands_refused,
            control_connections,
            krl_version,
            krl_path_write_failures,
            krl_path_failing,
            audit_records,
            issue_duration,
            store_write_duration,
            store_errors,
            upkeep_failing,
            webhooks: WebhookCounters { delivered, dropped },
            reloads,
            reload_successful,
        }
    }

    /// The exposition: every family in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("the registry's own families encode")
    }

    pub fn certificate_issued(&self, took: Duration) {
        self.certificates_issued.inc();
        self.issue_duration.observe(took.as_secs_f64());
    }

    pub fn request_ended(&self, outcome: Outcome) {
        self.requests[outcome as usize].inc();
    }

    /// Adds `delta` to the pending requests (negative when some leave pending).
    pub fn pending_changed(&self, delta: i64) {
        if delta != 0 {
            self.pending_requests.add(delta);
        }
    }

    pub fn set_pending(&self, count: u64) {
        self.pending_requests.set(clamp(count));
    }

    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    pub fn command_refused(&self) {
        self.commands_refused.inc();
    }

    /// Counts an open connection until the guard is dropped.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.control_connections.inc();
        ConnectionGuard(self.control_connections.clone())
    }

    pub fn set_krl_version(&self, version: u64) {
        self.krl_version.set(clamp(version));
    }

    pub fn krl_path_written(&self, ok: bool) {
        if !ok {
            self.krl_path_write_failures.inc();
        }
        self.krl_path_failing.set(i64::from(!ok));
    }

    pub fn set_audit_records(&self, seq: u64) {
        self.audit_records.set(clamp(seq));
    }

    /// Adds `count` records appended with a change (the store says the exact head elsewhere).
    pub fn audit_appended(&self, count: usize) {
        if count > 0 {
            self.audit_records.add(clamp(count as u64));
        }
    }

    pub fn store_write(&self, took: Duration) {
        self.store_write_duration.observe(took.as_secs_f64());
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    pub fn upkeep(&self, failing: bool) {
        self.upkeep_failing.set(i64::from(failing));
    }

    pub fn webhooks(&self) -> WebhookCounters {
        self.webhooks.clone()
    }

    pub fn reloaded(&self, result: Reload) {
        self.reloads[result as usize].inc();
        self.reload_successful
            .set(i64::from(result == Reload::Done));
    }
}

/// Holds one count of `jitca_control_connections`.
pub struct ConnectionGuard(Gauge);

impl std::ops::Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn add<C: Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    registry
        .register(Box::new(metric.clone()))
        .expect("each name registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> Counter {
    add(registry, Counter::new(name, help).expect("a valid metric"))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    add(registry, Gauge::new(name, help).expect("a valid metric"))
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: prometheus::Result<Vec<f64>>,
) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.expect("valid buckets"));
    add(
        registry,
        Histogram::with_opts(opts).expect("a valid metric"),
    )
}

/// A counter family with one label whose values are all known: each child made (so each
/// series is there from the start, at 0) and kept, so counting takes no lock.
fn labelled<const N: usize>(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = add(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("a valid metric"),
    );
    values.map(|value| family.with_label_values(&[value]))
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_there_from_the_start_with_help_and_type() {
        let text = Metrics::new().encode();
        for name in [
            "jitca_certificates_issued_total",
            "jitca_requests_total",
            "jitca_pending_requests",
            "jitca_auth_failures_total",
            "jitca_control_connections",
            "jitca_krl_version",
            "jitca_audit_records",
            "jitca_issue_duration_seconds",
            "jitca_store_write_duration_seconds",
            "jitca_store_errors_total",
            "jitca_krl_path_write_failures_total",
            "jitca_webhook_alerts_dropped_total",
            "jitca_config_reloads_total",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
        }
        for outcome in Outcome::ALL {
            let line = format!(
                "jitca_requests_total{{outcome=\"{}\"}} 0\n",
                outcome.label()
            );
            assert!(text.contains(&line), "{line}:\n{text}");
        }
    }

    #[test]
    fn clones_share_the_values() {
        let metrics = Metrics::new();
        let other = metrics.clone();
        other.request_ended(Outcome::Denied);
        other.certificate_issued(Duration::from_millis(3));
        other.pending_changed(2);
        other.pending_changed(-1);
        let guard = metrics.connection_opened();
        let text = metrics.encode();
        assert!(
            text.contains("jitca_requests_total{outcome=\"denied\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jitca_certificates_issued_total 1\n"),
            "{text}"
        );
        assert!(text.contains("jitca_pending_requests 1\n"), "{text}");
        assert!(text.contains("jitca_control_connections 1\n"), "{text}");
        assert!(
            text.contains("jitca_issue_duration_seconds_count 1\n"),
            "{text}"
        );
        drop(guard);
        assert!(metrics.encode().contains("jitca_control_connections 0\n"));
    }

    #[test]
    fn webhook_counters_count_into_the_registry() {
        let metrics = Metrics::new();
        let hooks = metrics.webhooks();
        hooks.dropped(Dropped::GaveUp);
        hooks.delivered();
        let text = metrics.encode();
        assert!(
            text.contains("jitca_webhook_alerts_dropped_total{reason=\"gave_up\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jitca_webhook_alerts_delivered_total 1\n"),
            "{text}"
        );
    }
}
