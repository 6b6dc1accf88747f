//! Operable like the daemons operators already run: `/metrics` for Prometheus, systemd's
//! readiness protocol, and logs fit for a file, the journal or a log shipper.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// One HTTP/1.1 exchange with the metrics listener: the status code and the body.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics_listen");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Scrapes until `series` has `want` (counts written from other threads land a moment later).
fn scrape_until(port: u16, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http(port, "GET", "/metrics");
        assert_eq!(status, 200, "{body}");
        if sample(&body, series) == Some(want) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `config` with `metrics_listen` on `port`, and `more` settings after it.
fn with_metrics(config: &str, port: u16, more: &str) -> String {
    let listen = "listen: \"127.0.0.1:0\"\n";
    assert!(config.contains(listen));
    config.replacen(
        listen,
        &format!("{listen}metrics_listen: \"127.0.0.1:{port}\"\n{more}"),
        1,
    )
}

#[test]
fn metrics_count_a_request_cycle_and_pass_promtool() {
    let team = Team::new();
    let metrics_port = free_port();
    let config = with_metrics(&team.config("1h"), metrics_port, "");
    let ca = Ca::start(&config);

    // Issued: a request and its approval.
    let id = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 1h --reason INC-7 disk full --no-wait",
    ));
    ca.ssh(&team.bob, &format!("approve {id}"), None).ok();
    // Still pending: nobody approves this one.
    id_of(&ca.request(
        &team.alice,
        "web2 --as nobody --for 10m --reason look --no-wait",
    ));
    // Refused by the policy: no rule gives alice db1 as nobody.
    ca.request(
        &team.alice,
        "db1 --as nobody --for 10m --reason x --no-wait",
    )
    .refused("");
    // A refused command that is no request at all.
    ca.ssh(&team.bob, "approve nosuchrequest", None)
        .refused("no request");
    // An unknown key: mallory is in no config.
    let unknown = ca.ssh(&team.mallory, "whoami", None);
    assert_eq!(unknown.status, 255, "{unknown:?}");

    let text = scrape_until(metrics_port, "jitca_auth_failures_total", 1.0);
    let at = |series: &str| {
        sample(&text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
    };
    assert_eq!(at("jitca_certificates_issued_total"), 1.0);
    assert_eq!(at("jitca_requests_total{outcome=\"issued\"}"), 1.0);
    assert_eq!(at("jitca_requests_total{outcome=\"refused\"}"), 1.0);
    assert_eq!(at("jitca_requests_total{outcome=\"denied\"}"), 0.0);
    assert_eq!(at("jitca_requests_total{outcome=\"lapsed\"}"), 0.0);
    assert_eq!(at("jitca_pending_requests"), 1.0);
    assert_eq!(at("jitca_auth_failures_total"), 1.0);
    assert_eq!(at("jitca_commands_refused_total"), 2.0);
    assert_eq!(at("jitca_issue_duration_seconds_count"), 1.0);
    assert!(
        at("jitca_store_write_duration_seconds_count") >= 5.0,
        "{text}"
    );
    assert!(at("jitca_krl_version") >= 1.0, "{text}");
    assert_eq!(at("jitca_store_errors_total"), 0.0);
    assert_eq!(at("jitca_krl_path_failing"), 0.0);
    assert_eq!(at("jitca_config_last_reload_successful"), 1.0);
    assert_eq!(at("jitca_control_connections"), 0.0);
    // Every record the auditor reads (the read itself included).
    let audit = ca.audit_json(&team.ivy, "");
    let after = scrape_until(metrics_port, "jitca_audit_records", audit.len() as f64);
    assert_eq!(
        sample(&after, "jitca_audit_records"),
        Some(audit.len() as f64),
        "{after}"
    );
    // Nothing personal: no user, key, host or address in any sample.
    for secret in [
        "alice",
        "bob",
        "mallory",
        "web1",
        "127.0.0.1",
        "SHA256:",
        &id,
    ] {
        assert!(!text.contains(secret), "{secret} exposed:\n{text}");
    }

    // promtool's lint: exit 0, warnings (exit 3) included.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert_eq!(
        checked.status.code(),
        Some(0),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Anything but GET /metrics.
    for path in ["/", "/metric", "/metrics/", "/debug/pprof", "/metrics/../x"] {
        assert_eq!(http(metrics_port, "GET", path).0, 404, "{path}");
    }
    assert_eq!(http(metrics_port, "POST", "/metrics").0, 405);
    assert_eq!(http(metrics_port, "DELETE", "/metrics").0, 405);
}

#[test]
fn a_reload_refused_is_counted() {
    let team = Team::new();
    let metrics_port = free_port();
    let config = with_metrics(&team.config("1h"), metrics_port, "");
    let ca = Ca::start(&config);
    std::fs::write(&ca.config, "listen: nowhere\n").unwrap();
    ca.signal("HUP");
    let text = scrape_until(
        metrics_port,
        "jitca_config_reloads_total{result=\"refused\"}",
        1.0,
    );
    assert_eq!(
        sample(&text, "jitca_config_last_reload_successful"),
        Some(0.0),
        "{text}"
    );
    std::fs::write(&ca.config, &config).unwrap();
    ca.signal("HUP");
    let text = scrape_until(
        metrics_port,
        "jitca_config_reloads_total{result=\"done\"}",
        1.0,
    );
    assert_eq!(
        sample(&text, "jitca_config_last_reload_successful"),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn krl_path_failures_and_dropped_webhook_alerts_are_counted() {
    let team = Team::new();
    let metrics_port = free_port();
    // A webhook endpoint that refuses every alert with 400: no retry, dropped at once.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in hook.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buffer = [0u8; 65536];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let krl_dir = tempfile::tempdir().unwrap();
    let krl_path = krl_dir.path().join("not-yet").join("jitca.krl");
    let config = with_metrics(
        &team.config("1h"),
        metrics_port,
        &format!(
            "krl_path: {}\nnotify:\n  - url: http://127.0.0.1:{hook_port}/hook\n",
            krl_path.display()
        ),
    );
    let ca = Ca::start(&config);
    // Its folder is missing: every write fails until it is made.
    let text = scrape_until(metrics_port, "jitca_krl_path_failing", 1.0);
    assert_eq!(sample(&text, "jitca_krl_path_failing"), Some(1.0), "{text}");
    assert!(
        sample(&text, "jitca_krl_path_write_failures_total").unwrap() >= 1.0,
        "{text}"
    );
    std::fs::create_dir(krl_path.parent().unwrap()).unwrap();
    // The sweeper retries every few seconds.
    let text = scrape_until(metrics_port, "jitca_krl_path_failing", 0.0);
    assert_eq!(sample(&text, "jitca_krl_path_failing"), Some(0.0), "{text}");
    assert!(krl_path.exists());

    id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 1h --reason INC-7 --no-wait",
    ));
    let text = scrape_until(
        metrics_port,
        "jitca_webhook_alerts_dropped_total{reason=\"refused\"}",
        1.0,
    );
    assert_eq!(
        sample(
            &text,
            "jitca_webhook_alerts_dropped_total{reason=\"refused\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "jitca_webhook_alerts_delivered_total"),
        Some(0.0)
    );
}

/// `jitca init` in a fresh folder with `config` as its jitca.yaml; the folder and the file.
fn initialised(config: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    run(
        Command::new(JITCA).arg("init").arg("--dir").arg(dir.path()),
        None,
    )
    .ok();
    let path = dir.path().join("jitca.yaml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

/// `jitca serve` with its stderr written to `log` (a file, so not a terminal).
fn serve_logging_to(config: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(JITCA);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.spawn().expect("start jitca")
}

fn wait_for_log(log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
}

fn stop(mut child: Child) {
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "jitca serve did not stop cleanly");
}

/// The next message on the fake notify socket that is not a watchdog keep-alive.
fn next_notice(socket: &UnixDatagram, watchdogs: &mut usize) -> String {
    let mut buffer = [0u8; 4096];
    loop {
        let n = socket
            .recv(&mut buffer)
            .expect("a message from jitca on NOTIFY_SOCKET in time");
        let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
        if text == "WATCHDOG=1\n" {
            *watchdogs += 1;
            continue;
        }
        return text;
    }
}

#[test]
fn systemd_hears_ready_reloading_ready_and_stopping() {
    let team = Team::new();
    let (dir, config) = initialised(&team.config("1h"));
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let log = dir.path().join("jitca.log");
    let child = serve_logging_to(
        &config,
        &log,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            // 200 ms: a keep-alive every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut watchdogs = 0;

    let ready = next_notice(&socket, &mut watchdogs);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=serving on 127.0.0.1:")),
        "{ready:?}"
    );
    // Ready means accepting: a command gets through at once.
    let port: u16 = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=serving on 127.0.0.1:"))
        .unwrap()
        .parse()
        .unwrap();
    ssh_at(port, &team.alice, &[], "whoami", None).ok();

    signal(&child, "HUP");
    let reloading = next_notice(&socket, &mut watchdogs);
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let again = next_notice(&socket, &mut watchdogs);
    assert!(again.lines().any(|l| l == "READY=1"), "{again:?}");

    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "TERM");
    let stopping = next_notice(&socket, &mut watchdogs);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(
        watchdogs >= 2,
        "only {watchdogs} WATCHDOG=1 in 0.5 s at 100 ms"
    );
    let mut child = child;
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_log_written_to_a_file_has_no_escape_codes() {
    let team = Team::new();
    let (dir, config) = initialised(&team.config("1h"));
    let log = dir.path().join("jitca.log");
    let child = serve_logging_to(&config, &log, &[("JITCA_LOG", "info")]);
    let text = wait_for_log(&log, "listening on");
    let port: u16 = text
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    // Lines at info, warn and error: a request, an unknown key, a refused command.
    request_at(
        port,
        &team.alice,
        "lab1 --as root --for 5m --reason test --no-wait",
    )
    .ok();
    ssh_at(port, &team.mallory, &[], "whoami", None);
    ssh_at(port, &team.bob, &[], "approve nosuchrequest", None).refused("no request");
    std::fs::write(&config, "listen: nowhere\n").unwrap();
    signal(&child, "HUP");
    wait_for_log(&log, "config reload refused");
    stop(child);
    let bytes = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("request made"), "{text}");
    assert!(text.contains(" INFO "), "{text}");
    assert!(text.contains(" ERROR "), "{text}");
    assert!(
        !bytes.contains(&0x1b),
        "escape codes in a log written to a file:\n{text:?}"
    );
}

#[test]
fn log_format_json_gives_one_json_object_a_line() {
    let team = Team::new();
    let (dir, config) = initialised(&format!("log_format: json\n{}", team.config("1h")));
    let log = dir.path().join("jitca.log");
    let child = serve_logging_to(&config, &log, &[("JITCA_LOG", "info")]);
    wait_for_log(&log, "listening on");
    let text = wait_for_log(&log, "listening on");
    let port: u16 = text
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    request_at(
        port,
        &team.alice,
        "lab1 --as root --for 5m --reason test --no-wait",
    )
    .ok();
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    assert!(lines.len() >= 4, "{text}");
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["level"].is_string(), "{line}");
        assert!(line["message"].is_string(), "{line}");
    }
    let made = lines
        .iter()
        .find(|l| l["message"] == "request made")
        .unwrap_or_else(|| panic!("no request made in:\n{text}"));
    assert_eq!(made["level"], "INFO");
    assert_eq!(made["requester"], "alice");
    assert!(lines.iter().any(|l| l["message"] == "stopped"), "{text}");
    assert!(!text.as_bytes().contains(&0x1b));
}
