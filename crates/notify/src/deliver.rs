//! One webhook's worker: POSTs each alert, retrying what may pass on a later try.

use std::io::Read;
use std::time::Duration;

use serde::Serialize;
use ureq::Agent;
use ureq::http::StatusCode;

use jitca_metrics::{Dropped, WebhookCounters};

use crate::{Alert, Retry, text};

/// The JSON body: every field of the alert, plus the chat line.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    alert: &'a Alert,
    text: String,
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth trying again, after the given wait if the endpoint asked for one.
    Retry(String, Option<Duration>),
    /// Trying again would get the same answer.
    Final(String),
}

/// How much of an error answer's body is read into the log, to show why it was refused.
const ANSWER_SNIPPET: u64 = 200;

pub(crate) struct Worker {
    index: usize,
    endpoint: String,
    url: String,
    retry: Retry,
    agent: Agent,
    counters: WebhookCounters,
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        endpoint: String,
        url: String,
        retry: Retry,
        counters: WebhookCounters,
    ) -> Worker {
        let agent: Agent = Agent::config_builder()
            .timeout_global(Some(retry.timeout))
            // A redirect would send the alert (and maybe the URL's secret) somewhere the
            // operator did not configure: it is answered as a failure instead.
            .max_redirects(0)
            // Statuses are read here, not turned into errors, to tell 429 and 5xx from 4xx.
            .http_status_as_error(false)
            .user_agent(concat!("jitca/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Worker {
            index,
            endpoint,
            url,
            retry,
            agent,
            counters,
        }
    }

    /// Delivers `alert`, retrying as [`Retry`] says; every failure is logged, none returned.
    pub(crate) fn deliver(&self, alert: &Alert) {
        let body = Body {
            alert,
            text: text::render(alert),
        };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(
                    hook = self.index,
                    endpoint = %self.endpoint,
                    event = %alert.event,
                    id = %alert.id,
                    "could not encode webhook alert: {e}"
                );
                self.counters.dropped(Dropped::GaveUp);
                return;
            }
        };
        let attempts = self.retry.attempts.max(1);
        let mut backoff = self.retry.first_backoff.min(self.retry.max_backoff);
        for attempt in 1..=attempts {
            let (cause, asked) = match self.post(&body) {
                Attempt::Delivered => {
                    tracing::debug!(
                        hook = self.index,
                        endpoint = %self.endpoint,
                        event = %alert.event,
                        id = %alert.id,
                        attempt,
                        "webhook alert delivered"
                    );
                    self.counters.delivered();
                    return;
                }
                Attempt::Final(cause) => {
                    tracing::error!(
                        hook = self.index,
                        endpoint = %self.endpoint,
                        event = %alert.event,
                        id = %alert.id,
                        attempt,
                        "webhook refused the alert, not retrying: {cause}"
                    );
                    self.counters.dropped(Dropped::Refused);
                    return;
                }
                Attempt::Retry(cause, asked) => (cause, asked),
            };
            tracing::warn!(
                hook = self.index,
                endpoint = %self.endpoint,
                event = %alert.event,
                id = %alert.id,
                attempt,
                attempts,
                "webhook delivery failed: {cause}"
            );
            if attempt == attempts {
                tracing::error!(
                    hook = self.index,
                    endpoint = %self.endpoint,
                    event = %alert.event,
                    id = %alert.id,
                    attempts,
                    "giving up on webhook alert after {attempts} attempts; last error: {cause}"
                );
                self.counters.dropped(Dropped::GaveUp);
                return;
            }
            let wait = asked.unwrap_or(backoff).min(self.retry.max_backoff);
            std::thread::sleep(wait);
            backoff = backoff.saturating_mul(2).min(self.retry.max_backoff);
        }
    }

    /// One POST, classified.
    fn post(&self, body: &[u8]) -> Attempt {
        let answer = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .send(body);
        let mut answer = match answer {
            Ok(answer) => answer,
            Err(e) => return Attempt::Retry(self.describe(&e), None),
        };
        let status = answer.status();
        if status.is_success() {
            // Read what little there is so the connection can be reused; it says nothing.
            let _ = answer
                .body_mut()
                .as_reader()
                .take(64 * 1024)
                .read_to_end(&mut Vec::new());
            return Attempt::Delivered;
        }
        let snippet = self.snippet(&mut answer);
        let cause = format!("HTTP {}{snippet}", status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            let asked = answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Attempt::Retry(cause, asked)
        } else if status.is_server_error() {
            Attempt::Retry(cause, None)
        } else if status.is_redirection() {
            Attempt::Final(format!("{cause} (redirects are not followed)"))
        } else {
            Attempt::Final(cause)
        }
    }

    /// A short, cleaned piece of an error answer's body (`: invalid_payload`), or nothing.
    fn snippet(&self, answer: &mut ureq::http::Response<ureq::Body>) -> String {
        let mut raw = Vec::new();
        let _ = answer
            .body_mut()
            .as_reader()
            .take(ANSWER_SNIPPET)
            .read_to_end(&mut raw);
        let raw = String::from_utf8_lossy(&raw);
        let cleaned: String = raw
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let cleaned = self.scrub(&cleaned);
        if cleaned.is_empty() {
            String::new()
        } else {
            format!(": {cleaned}")
        }
    }

    /// An error's message, with the URL (which may be in it) cut down to its endpoint.
    fn describe(&self, e: &ureq::Error) -> String {
        match e {
            ureq::Error::BadUri(_) => "invalid webhook URL".to_owned(),
            ureq::Error::Timeout(what) => format!("timed out ({what})"),
            e => self.scrub(&e.to_string()),
        }
    }

    /// `s` with any copy of the secret part of the URL removed.
    fn scrub(&self, s: &str) -> String {
        let mut out = s.replace(&self.url, &self.endpoint);
        if let Some(rest) = self.url.find("://").and_then(|at| {
            self.url[at + 3..]
                .find('/')
                .map(|p| &self.url[at + 3 + p..])
        }) && rest.len() > 1
        {
            out = out.replace(rest, "/…");
        }
        out
    }
}
