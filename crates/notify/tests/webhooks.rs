//! Delivery against a recording HTTP server on 127.0.0.1, built on `std::net::TcpListener`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use jitca_notify::{Alert, AlertKind, Notifier, Retry, Webhook};
use serde_json::Value;

/// A bound for waits that only fail when something is broken; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Captured logs: the workers log from their own threads, so the subscriber is global.

fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    static INIT: OnceLock<()> = OnceLock::new();
    let store = LOGS.get_or_init(|| Mutex::new(Vec::new()));
    INIT.get_or_init(|| {
        struct Capture;
        impl Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .init();
    });
    store
}

/// The captured log lines that mention `needle` (a test's own endpoint).
fn log_lines(needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&logs().lock().unwrap())
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// The recording server.

#[derive(Clone, Copy)]
enum Reply {
    Status(u16),
    /// 429 with `Retry-After: n`.
    SlowDown(u64),
    /// 302 to another path on the same server.
    Redirect,
    /// Read the request, then never answer.
    Hang,
}

#[derive(Debug, Clone)]
struct Recorded {
    at: Instant,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
    answered: Arc<AtomicUsize>,
}

impl Server {
    /// Answers request `n` with `script[n]`, and every later one with `then`.
    fn start(script: Vec<Reply>, then: Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(AtomicUsize::new(0));
        let (reqs, ans) = (Arc::clone(&requests), Arc::clone(&answered));
        std::thread::spawn(move || {
            let mut hung = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(req) = read_request(&mut stream) else {
                    continue;
                };
                let n = {
                    let mut reqs = reqs.lock().unwrap();
                    reqs.push(req);
                    reqs.len() - 1
                };
                let reply = script.get(n).copied().unwrap_or(then);
                let head = match reply {
                    Reply::Hang => {
                        hung.push(stream); // held open, never answered
                        continue;
                    }
                    Reply::Status(code) => format!("HTTP/1.1 {code} Whatever\r\n"),
                    Reply::SlowDown(secs) => {
                        format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: {secs}\r\n")
                    }
                    Reply::Redirect => {
                        format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/other\r\n")
                    }
                };
                let body = "no";
                let answer = format!(
                    "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
                ans.fetch_add(1, Ordering::SeqCst);
            }
        });
        Server {
            port,
            requests,
            answered,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What the logs call this endpoint.
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn wait_for(&self, n: usize) {
        let start = Instant::now();
        while self.requests.lock().unwrap().len() < n {
            assert!(start.elapsed() < PATIENCE, "server never saw {n} requests");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Recorded {
        at: Instant::now(),
        method,
        path,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------

fn alert(event: AlertKind) -> Alert {
    Alert {
        event,
        id: "abc123".into(),
        requester: "alice".into(),
        rule: "prod".into(),
        hosts: vec!["web1".into()],
        logins: vec!["deploy".into()],
        duration_secs: 1800,
        reason: "INC-42 fix disk".into(),
        by: None,
        outcome: None,
        serial: None,
        break_glass: false,
        at: Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap(),
        checkpoint: None,
    }
}

fn hook(url: String, events: Vec<AlertKind>) -> Webhook {
    Webhook { url, events }
}

/// Tiny backoffs so that retries take milliseconds.
fn quick(attempts: u32) -> Retry {
    Retry {
        attempts,
        first_backoff: Duration::from_millis(30),
        max_backoff: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn delivered_alert_has_fields_and_text() {
    logs();
    let server = Server::start(vec![], Reply::Status(200));
    let notifier = Notifier::start(
        vec![hook(server.url("/services/T0/B0/s3cret"), vec![])],
        quick(3),
    );
    notifier.send(alert(AlertKind::RequestMade));
    let mut decided = alert(AlertKind::Decided);
    decided.by = Some("bob".into());
    decided.outcome = Some("issued".into());
    decided.serial = Some(42);
    notifier.send(decided);
    assert!(notifier.drain(PATIENCE));

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/services/T0/B0/s3cret");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("user-agent"),
        Some(concat!("jitca/", env!("CARGO_PKG_VERSION")))
    );
    let body = req.json();
    assert_eq!(body["event"], "request_made");
    assert_eq!(body["id"], "abc123");
    assert_eq!(body["requester"], "alice");
    assert_eq!(body["rule"], "prod");
    assert_eq!(body["hosts"], serde_json::json!(["web1"]));
    assert_eq!(body["logins"], serde_json::json!(["deploy"]));
    assert_eq!(body["duration_secs"], 1800);
    assert_eq!(body["reason"], "INC-42 fix disk");
    assert_eq!(body["by"], Value::Null);
    assert_eq!(body["outcome"], Value::Null);
    assert_eq!(body["serial"], Value::Null);
    assert_eq!(body["break_glass"], false);
    assert_eq!(body["at"], "2025-03-04T05:06:07Z");
    assert_eq!(
        body["text"],
        "jitca: alice requested web1 as deploy for 30m under rule prod (request abc123): \
         \"INC-42 fix disk\""
    );
    assert_eq!(body.as_object().unwrap().len(), 14, "{body}");

    let body = reqs[1].json();
    assert_eq!(body["event"], "decided");
    assert_eq!(body["by"], "bob");
    assert_eq!(body["serial"], 42);
    assert_eq!(
        body["text"],
        "jitca: bob approved alice's request for web1 as deploy for 30m under rule prod \
         (request abc123); certificate 42 issued: \"INC-42 fix disk\""
    );
}

#[test]
fn server_errors_are_retried_with_backoff() {
    logs();
    let server = Server::start(
        vec![Reply::Status(500), Reply::Status(503)],
        Reply::Status(200),
    );
    let notifier = Notifier::start(vec![hook(server.url("/hook/s3cret"), vec![])], quick(6));
    notifier.send(alert(AlertKind::Revoked));
    assert!(notifier.drain(PATIENCE));
    // Nothing further arrives late.
    std::thread::sleep(Duration::from_millis(300));

    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "two failures then one success");
    assert!(reqs.iter().all(|r| r.body == reqs[0].body));
    // Backoff: at least 30 ms, then at least 60 ms (doubling).
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(30));
    assert!(reqs[2].at - reqs[1].at >= Duration::from_millis(60));

    let lines = log_lines(&server.endpoint());
    let warns: Vec<_> = lines.iter().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warns.len(), 2, "{lines:#?}");
    assert!(warns[0].contains("HTTP 500") && warns[1].contains("HTTP 503"));
    assert!(warns.iter().all(|l| l.contains("hook=0")));
    assert!(!lines.iter().any(|l| l.contains("ERROR")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("s3cret")), "URL leaked");
}

#[test]
fn gives_up_after_the_last_attempt() {
    logs();
    let server = Server::start(vec![], Reply::Status(502));
    let notifier = Notifier::start(vec![hook(server.url("/hook/s3cret"), vec![])], quick(3));
    notifier.send(alert(AlertKind::ReviewDue));
    assert!(notifier.drain(PATIENCE));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.requests().len(), 3);

    let lines = log_lines(&server.endpoint());
    assert_eq!(lines.iter().filter(|l| l.contains("WARN")).count(), 3);
    let errors: Vec<_> = lines.iter().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{lines:#?}");
    assert!(errors[0].contains("giving up") && errors[0].contains("HTTP 502"));
    assert!(!lines.iter().any(|l| l.contains("s3cret")), "URL leaked");
}

#[test]
fn client_error_is_not_retried() {
    logs();
    let server = Server::start(vec![Reply::Status(400)], Reply::Status(200));
    let notifier = Notifier::start(vec![hook(server.url("/hook/s3cret"), vec![])], quick(6));
    notifier.send(alert(AlertKind::RequestMade));
    assert!(notifier.drain(PATIENCE));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.requests().len(), 1);

    let lines = log_lines(&server.endpoint());
    let errors: Vec<_> = lines.iter().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{lines:#?}");
    assert!(errors[0].contains("HTTP 400") && errors[0].contains("not retrying"));
}

#[test]
fn redirect_is_a_failure_and_not_followed() {
    logs();
    let server = Server::start(vec![Reply::Redirect], Reply::Status(200));
    let notifier = Notifier::start(vec![hook(server.url("/hook/s3cret"), vec![])], quick(6));
    notifier.send(alert(AlertKind::RequestMade));
    assert!(notifier.drain(PATIENCE));
    std::thread::sleep(Duration::from_millis(300));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "redirect followed or retried");
    let lines = log_lines(&server.endpoint());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ERROR") && l.contains("HTTP 302")),
        "{lines:#?}"
    );
}

#[test]
fn too_many_requests_honours_retry_after() {
    logs();
    let server = Server::start(vec![Reply::SlowDown(1)], Reply::Status(200));
    let retry = Retry {
        attempts: 3,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
    };
    let notifier = Notifier::start(vec![hook(server.url("/h"), vec![])], retry);
    notifier.send(alert(AlertKind::RequestMade));
    assert!(notifier.drain(PATIENCE));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].at - reqs[0].at >= Duration::from_secs(1));
}

#[test]
fn retry_after_is_capped_by_max_backoff() {
    logs();
    let server = Server::start(vec![Reply::SlowDown(3600)], Reply::Status(200));
    let notifier = Notifier::start(vec![hook(server.url("/h"), vec![])], quick(3));
    notifier.send(alert(AlertKind::RequestMade));
    // An hour's Retry-After would blow through this; the 200 ms cap does not.
    assert!(notifier.drain(PATIENCE));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn events_filter() {
    logs();
    let glass_only = Server::start(vec![], Reply::Status(200));
    let everything = Server::start(vec![], Reply::Status(200));
    let notifier = Notifier::start(
        vec![
            hook(glass_only.url("/g"), vec![AlertKind::BreakGlass]),
            hook(everything.url("/e"), vec![]),
        ],
        quick(3),
    );
    notifier.send(alert(AlertKind::RequestMade));
    let mut glass = alert(AlertKind::BreakGlass);
    glass.break_glass = true;
    glass.serial = Some(7);
    notifier.send(glass);
    assert!(notifier.drain(PATIENCE));

    let got: Vec<Value> = glass_only.requests().iter().map(Recorded::json).collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"], "break_glass");
    let text = got[0]["text"].as_str().unwrap();
    assert!(text.starts_with(":rotating_light: BREAK-GLASS"), "{text}");
    assert!(
        text.contains("certificate 7") && text.contains("alice"),
        "{text}"
    );
    assert_eq!(everything.requests().len(), 2);
}

#[test]
fn send_never_waits_for_a_hanging_endpoint() {
    logs();
    let server = Server::start(vec![], Reply::Hang);
    let retry = Retry {
        timeout: Duration::from_secs(60),
        ..quick(2)
    };
    let notifier = Notifier::start_with_capacity(vec![hook(server.url("/h"), vec![])], retry, 4);
    notifier.send(alert(AlertKind::RequestMade));
    // The worker is now inside a POST the server will not answer.
    server.wait_for(1);
    // More than the queue holds: the extra ones are dropped, none waits.
    for _ in 0..20 {
        notifier.send(alert(AlertKind::RequestMade));
    }
    // All of that returned while the server still had not answered anything.
    assert_eq!(server.answered.load(Ordering::SeqCst), 0);
    assert_eq!(server.requests().len(), 1);

    // A short drain gives up, saying so, instead of waiting out the minute-long timeout.
    assert!(!notifier.drain(Duration::from_millis(100)));
    let lines = log_lines(&server.endpoint());
    let dropped = lines
        .iter()
        .filter(|l| l.contains("ERROR") && l.contains("queue is full"))
        .count();
    assert_eq!(dropped, 16, "4 queued, 1 in flight, 16 dropped: {lines:#?}");
}

#[test]
fn timeout_is_a_retried_failure() {
    logs();
    let server = Server::start(vec![], Reply::Hang);
    let retry = Retry {
        timeout: Duration::from_millis(200),
        ..quick(2)
    };
    let notifier = Notifier::start(vec![hook(server.url("/h/s3cret"), vec![])], retry);
    notifier.send(alert(AlertKind::RequestMade));
    assert!(notifier.drain(PATIENCE));
    assert_eq!(server.requests().len(), 2);
    let lines = log_lines(&server.endpoint());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("timed out")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("giving up")), "{lines:#?}");
}

#[test]
fn connection_refused_is_logged_without_the_url() {
    logs();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/services/T0/B0/s3cret");
    let notifier = Notifier::start(vec![hook(url, vec![])], quick(2));
    notifier.send(alert(AlertKind::RequestMade));
    assert!(notifier.drain(PATIENCE));
    let lines = log_lines(&format!("http://127.0.0.1:{port}"));
    assert_eq!(lines.iter().filter(|l| l.contains("WARN")).count(), 2);
    assert!(lines.iter().any(|l| l.contains("giving up")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("s3cret")), "URL leaked");
}

#[test]
fn hostile_reason_is_defused_in_text() {
    logs();
    let server = Server::start(vec![], Reply::Status(200));
    let notifier = Notifier::start(vec![hook(server.url("/h"), vec![])], quick(2));
    let reason = "<!channel> <https://evil|click> a&b\u{7}\r\nline2\u{202E}txt.exe\u{200B}";
    let mut a = alert(AlertKind::RequestMade);
    a.reason = reason.into();
    a.requester = "<@U123>".into();
    a.hosts = vec!["web1\u{2066}".into()];
    let mut long = alert(AlertKind::RequestMade);
    long.reason = "x".repeat(5000);
    notifier.send(a);
    notifier.send(long);
    assert!(notifier.drain(PATIENCE));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);

    let body = reqs[0].json();
    // The raw field is kept as typed, for machines; only `text` is for people.
    assert_eq!(body["reason"], reason);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("&lt;!channel&gt; &lt;https://evil|click&gt; a&amp;b"),
        "{text}"
    );
    assert!(
        text.starts_with("jitca: &lt;@U123&gt; requested web1\u{FFFD} as"),
        "{text}"
    );
    for bad in [
        '<', '>', '\u{7}', '\r', '\n', '\u{202E}', '\u{200B}', '\u{2066}',
    ] {
        assert!(!text.contains(bad), "{bad:?} in {text:?}");
    }
    assert!(text.contains("line2\u{FFFD}txt.exe\u{FFFD}"), "{text}");

    let text = reqs[1].json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.ends_with(&format!("\"{}…\"", "x".repeat(300))),
        "{text}"
    );
    assert!(text.chars().count() < 500, "{}", text.len());
}
