//! Governance: ticket-bound reasons, break-glass, post-access review, webhook alerts, and
//! whether a grant was used, read from a real `sshd`'s log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;

/// A local HTTP server that records every POST body (as JSON) and answers 200.
struct Hooks {
    port: u16,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Hooks {
    fn start() -> Hooks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let sink = received.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() || !first.starts_with("POST /hook ") {
                    continue;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(value) = serde_json::from_slice(&body)
                {
                    sink.lock().unwrap().push(value);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Hooks { port, received }
    }

    /// Waits for an alert of `event` about request `id`.
    fn wait_for(&self, event: &str, id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(alert) = self
                .received
                .lock()
                .unwrap()
                .iter()
                .find(|a| a["event"] == event && a["id"] == id)
            {
                return alert.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {event} alert for {id}; got {:#?}",
                self.received.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The team's config plus a ticket-bound rule, a break-glass rule, a rule that requires
/// reviews, and a webhook.
fn config(team: &Team, hook_port: u16) -> String {
    team.config("1h")
        .replace(
            "  lab: [lab1]\n",
            "  lab: [lab1]\n  tix: [tix1]\n  rev: [rev1]\n",
        )
        .replace(
            "auditors: [audit]\n",
            "\x20 - name: dev-ticket\n    requesters: [dev]\n    hosts: [tix]\n    logins: [root]\n    max_duration: 1h\n    approvals: 0\n    reason_pattern: \"^(INC|CHG)-[0-9]+\"\n\
             \x20 - name: dev-glass\n    requesters: [dev]\n    hosts: [web]\n    logins: [root]\n    max_duration: 30m\n    break_glass: true\n    approvers: [sre]\n\
             \x20 - name: dev-reviewed\n    requesters: [dev]\n    hosts: [rev]\n    logins: [root]\n    max_duration: 1h\n    approvals: 0\n    approvers: [sre]\n    review: required\n\
             auditors: [audit]\n",
        )
        + &format!("notify:\n  - url: http://127.0.0.1:{hook_port}/hook\n")
}

fn id_from_stderr(out: &Out) -> String {
    out.stderr
        .split("request ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ';']).next())
        .unwrap_or_else(|| panic!("no request id in {out:#?}"))
        .to_string()
}

#[test]
fn a_reason_must_match_the_rules_ticket_pattern() {
    let team = Team::new();
    let hooks = Hooks::start();
    let ca = Ca::start(&config(&team, hooks.port));
    ca.request(
        &team.alice,
        "tix1 --as root --for 10m --reason fixing the disk",
    )
    .refused("rule dev-ticket needs a reason matching \"^(INC|CHG)-[0-9]+\" (a ticket reference)");
    // Nothing was stored.
    assert!(ca.list_json(&team.alice).is_empty());
    let out = ca.request(
        &team.alice,
        "tix1 --as root --for 10m --reason INC-42 disk full",
    );
    out.ok();
    assert!(out.stdout.contains("-cert-v01@openssh.com "), "{out:?}");
}

#[test]
fn break_glass_is_issued_at_once_alerted_and_reviewed_by_an_approver_only() {
    let team = Team::new();
    let hooks = Hooks::start();
    let ca = Ca::start(&config(&team, hooks.port));
    let sshd = Sshd::start("web1", &ca.ca_pub(), &["root"], "");

    // Without --break-glass, web1 is the ordinary rule's: it waits for an approver.
    let waiting = ca.request(
        &team.alice,
        "web1 --as root --for 10m --reason INC-7 --no-wait",
    );
    let ordinary = id_of(&waiting);
    assert_eq!(ca.show_json(&team.alice, &ordinary)["state"], "pending");
    // Longer than the break-glass rule allows.
    ca.request(
        &team.alice,
        "web1 --as root --for 1h --reason INC-7 outage --break-glass",
    )
    .refused("longer than rule dev-glass allows (30m)");
    // A break-glass rule covers only what it lists.
    ca.request(
        &team.alice,
        "db1 --as root --for 10m --reason INC-7 --break-glass",
    )
    .refused("no break-glass rule lets alice request login root on db1");

    let out = ca.request(
        &team.alice,
        "web1 --as root --for 10m --reason INC-7 site down --break-glass",
    );
    out.ok();
    let id = id_from_stderr(&out);
    let cert = save_cert(team.dir.path(), "alice", &out.stdout);
    let listing = keygen_l(&cert);
    assert!(
        listing.contains(&format!("jitca:{id}:alice:break-glass:approvers=none")),
        "{listing}"
    );
    let login = sshd.login("root", &team.alice.key, &cert);
    assert_eq!(login.ok().stdout.trim(), "jitca-ok-root", "{login:?}");

    // Marked everywhere: show, list, audit, and the alert.
    let shown = ca.show_json(&team.bob, &id);
    assert_eq!(shown["break_glass"], true);
    assert_eq!(shown["review_required"], true);
    assert_eq!(shown["approvals"], serde_json::json!([]));
    let text = ca.ssh(&team.bob, &format!("show {id}"), None);
    assert!(
        text.ok().stdout.contains("break-glass      YES"),
        "{text:?}"
    );
    let list = ca.ssh(&team.bob, "list", None);
    let row = list.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("BREAK-GLASS"), "{row}");
    let issued = ca.audit_json(&team.ivy, &format!("--request {id}"));
    let issued = issued.iter().find(|e| e["event"] == "issued").unwrap();
    assert_eq!(issued["details"]["break_glass"], true, "{issued}");
    let alert = hooks.wait_for("break_glass", &id);
    assert_eq!(alert["break_glass"], true);
    assert_eq!(alert["requester"], "alice");
    assert!(
        alert["text"].as_str().unwrap().contains("BREAK-GLASS"),
        "{alert}"
    );
    hooks.wait_for("request_made", &id);

    // Not reviewable while the access lasts; nothing is unreviewed yet.
    ca.ssh(
        &team.bob,
        &format!("review {id} --outcome ok --note looked fine"),
        None,
    )
    .refused("has not ended yet");
    let unreviewed = ca.ssh(&team.bob, "list --unreviewed", None);
    assert!(!unreviewed.ok().stdout.contains(&id), "{unreviewed:?}");

    // The requester ends it: revoked, review due, both alerted.
    ca.ssh(&team.alice, &format!("done {id}"), None).ok();
    hooks.wait_for("revoked", &id);
    hooks.wait_for("review_due", &id);
    // An ordinary grant that ended (issued by bob, then done) lists after the break-glass one.
    ca.ssh(
        &team.bob,
        &format!("review {ordinary} --outcome ok --note nothing yet"),
        None,
    )
    .refused("was never issued, so there is no access to review: it is pending");
    ca.ssh(&team.bob, &format!("approve {ordinary}"), None).ok();
    ca.ssh(&team.alice, &format!("done {ordinary}"), None).ok();
    let unreviewed = ca.ssh(&team.bob, "list --unreviewed", None);
    let rows: Vec<&str> = unreviewed.ok().stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{unreviewed:?}");
    assert!(
        rows[0].starts_with(&id) && rows[0].contains("DUE"),
        "{rows:?}"
    );
    assert!(rows[1].starts_with(&ordinary), "{rows:?}");

    // Never the requester; never someone who is neither approver nor auditor.
    ca.ssh(
        &team.alice,
        &format!("review {id} --outcome ok --note all good"),
        None,
    )
    .refused("you cannot review your own access");
    ca.ssh(
        &team.dave,
        &format!("review {id} --outcome ok --note all good"),
        None,
    )
    .refused(&format!("no request {id}"));
    ca.ssh(
        &team.bob,
        &format!("review {id} --outcome maybe --note hmm"),
        None,
    )
    .refused("write ok or concern");

    ca.ssh(
        &team.bob,
        &format!("review {id} --outcome concern --note restarted nginx without a change"),
        None,
    )
    .ok();
    let unreviewed = ca.ssh(&team.bob, "list --unreviewed", None);
    assert!(!unreviewed.ok().stdout.contains(&id), "{unreviewed:?}");
    ca.ssh(
        &team.carol,
        &format!("review {id} --outcome ok --note again"),
        None,
    )
    .refused("reviewed already by bob");
    let review = &ca.show_json(&team.ivy, &id)["review"];
    assert_eq!(review["by"], "bob");
    assert_eq!(review["outcome"], "concern");
    let events = ca.audit_json(&team.ivy, &format!("--request {id}"));
    let reviewed = events.iter().find(|e| e["event"] == "reviewed").unwrap();
    assert_eq!(reviewed["actor"], "bob");
    assert_eq!(reviewed["details"]["outcome"], "concern");
    assert!(events.iter().any(|e| e["event"] == "review_due"));
}

#[test]
fn a_required_review_falls_due_when_the_certificate_expires() {
    let team = Team::new();
    let hooks = Hooks::start();
    let ca = Ca::start(&config(&team, hooks.port));
    let out = ca.request(&team.alice, "rev1 --as root --for 2s --reason INC-8");
    out.ok();
    let id = id_from_stderr(&out);
    // The sweeper announces it once the certificate has expired (it runs every few seconds).
    let alert = hooks.wait_for("review_due", &id);
    assert_eq!(alert["break_glass"], false);
    let unreviewed = ca.ssh(&team.ivy, "list --unreviewed --json", None);
    let rows: Vec<serde_json::Value> = unreviewed
        .ok()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["state"], "expired");
    // An auditor may review too.
    ca.ssh(
        &team.ivy,
        &format!("review {id} --outcome ok --note matches INC-8"),
        None,
    )
    .ok();
    let events = ca.audit_json(&team.ivy, &format!("--request {id}"));
    assert_eq!(
        events.iter().filter(|e| e["event"] == "review_due").count(),
        1,
        "{events:#?}"
    );
}

#[test]
fn usage_read_from_a_real_sshd_log_marks_exactly_the_grants_that_logged_in() {
    let team = Team::new();
    let hooks = Hooks::start();
    let ca = Ca::start(&config(&team, hooks.port));
    let sshd = Sshd::start("rev1", &ca.ca_pub(), &["root"], "");
    let grant = |name: &str| {
        let out = ca.request(
            &team.alice,
            &format!("rev1 --as root --for 30m --reason {name}"),
        );
        out.ok();
        (
            id_from_stderr(&out),
            save_cert(team.dir.path(), name, &out.stdout),
        )
    };
    let (used, used_cert) = grant("INC-1");
    let (unused, _) = grant("INC-2");
    let (twice, twice_cert) = grant("INC-3");
    sshd.login("root", &team.alice.key, &used_cert).ok();
    sshd.login("root", &team.alice.key, &twice_cert).ok();
    sshd.login("root", &team.alice.key, &twice_cert).ok();
    let log = sshd.log();
    assert!(log.contains(&format!("ID jitca:{used}:alice:")), "{log}");

    // Not for requesters.
    ca.ssh(&team.alice, "usage --sshd-log -", Some(log.as_bytes()))
        .refused("only auditors");
    let out = ca.ssh(&team.ivy, "usage --sshd-log -", Some(log.as_bytes()));
    out.ok();
    assert!(
        out.stdout
            .starts_with("3 certificate logins read: 3 newly recorded on 2 grants"),
        "{out:?}"
    );
    assert_eq!(ca.show_json(&team.ivy, &used)["usage"]["logins"], 1);
    assert_eq!(ca.show_json(&team.ivy, &twice)["usage"]["logins"], 2);
    assert!(ca.show_json(&team.ivy, &unused).get("usage").is_none());
    let unused_list = ca.ssh(&team.ivy, "list --unused --json", None);
    let ids: Vec<String> = unused_list
        .ok()
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, [unused]);

    // The same log again counts nothing twice.
    let again = ca.ssh(&team.ivy, "usage --sshd-log -", Some(log.as_bytes()));
    assert!(
        again.ok().stdout.starts_with(
            "3 certificate logins read: 0 newly recorded on 0 grants, 3 recorded before"
        ),
        "{again:?}"
    );
    let events = ca.audit_json(&team.ivy, &format!("--request {twice}"));
    let recorded: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "usage_recorded")
        .collect();
    assert_eq!(recorded.len(), 1, "{events:#?}");
    assert_eq!(recorded[0]["details"]["logins"], 2);

    // Offline, the command line refuses while the daemon holds the store, then records.
    let log_file = team.dir.path().join("auth.log");
    std::fs::write(&log_file, &log).unwrap();
    let cli = |ca: &Ca| {
        run(
            Command::new(JITCA)
                .arg("usage")
                .arg("--sshd-log")
                .arg(&log_file)
                .arg("--config")
                .arg(&ca.config),
            None,
        )
    };
    let busy = cli(&ca);
    assert_eq!(busy.status, 1, "{busy:?}");
    assert!(busy.stderr.contains("usage --sshd-log - <"), "{busy:?}");
    let mut ca = ca;
    ca.stop();
    let offline = cli(&ca);
    assert_eq!(offline.status, 0, "{offline:?}");
    assert!(offline.stdout.contains("3 recorded before"), "{offline:?}");
}

/// Asserts the fields every request alert carries, the same for each kind: who asked, under
/// which rule, for what, and when (an RFC 3339 UTC time within `window`).
#[track_caller]
fn assert_alert(
    alert: &serde_json::Value,
    (event, id, by, outcome): (&str, &str, Option<&str>, &str),
    serial: Option<u64>,
    window: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
) {
    assert_eq!(alert["event"], event, "{alert:#}");
    assert_eq!(alert["id"], id, "{alert:#}");
    assert_eq!(alert["requester"], "alice", "{alert:#}");
    assert_eq!(alert["rule"], "dev-web", "{alert:#}");
    assert_eq!(alert["hosts"], serde_json::json!(["web1"]), "{alert:#}");
    assert_eq!(alert["logins"], serde_json::json!(["root"]), "{alert:#}");
    assert_eq!(alert["duration_secs"], 600, "{alert:#}");
    assert_eq!(alert["reason"], "INC-11 certs", "{alert:#}");
    assert_eq!(alert["by"], serde_json::json!(by), "{alert:#}");
    assert_eq!(alert["outcome"], outcome, "{alert:#}");
    assert_eq!(alert["serial"], serde_json::json!(serial), "{alert:#}");
    assert_eq!(alert["break_glass"], false, "{alert:#}");
    let at = chrono::DateTime::parse_from_rfc3339(alert["at"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("`at` is not RFC 3339 ({e}): {alert:#}"));
    assert_eq!(at.offset().local_minus_utc(), 0, "UTC: {alert:#}");
    assert!(
        window.0 <= at && at <= window.1,
        "`at` outside {window:?}: {alert:#}"
    );
}

#[test]
fn decided_and_revoked_alerts_reach_the_webhook_with_who_what_and_the_serial() {
    let team = Team::new();
    let hooks = Hooks::start();
    let ca = Ca::start(&config(&team, hooks.port));
    // Whole seconds on both ends: RFC 3339 times may be printed without fractions.
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let ask = || {
        id_of(&ca.request(
            &team.alice,
            "web1 --as root --for 10m --reason INC-11 certs --no-wait",
        ))
    };

    // Approved by bob: the certificate is issued, and the alert says so with its serial.
    let issued = ask();
    ca.ssh(&team.bob, &format!("approve {issued}"), None).ok();
    let serial = ca.show_json(&team.alice, &issued)["serial"]
        .as_u64()
        .unwrap();
    let decided = hooks.wait_for("decided", &issued);
    let now = || chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_alert(
        &decided,
        ("decided", &issued, Some("bob"), "issued"),
        Some(serial),
        (started, now()),
    );
    assert!(
        decided["text"]
            .as_str()
            .unwrap()
            .contains("bob approved alice's request"),
        "{decided:#}"
    );

    // Denied by carol: decided too, with no serial.
    let denied = ask();
    ca.ssh(
        &team.carol,
        &format!("deny {denied} --reason not today"),
        None,
    )
    .ok();
    let refusal = hooks.wait_for("decided", &denied);
    assert_alert(
        &refusal,
        ("decided", &denied, Some("carol"), "denied"),
        None,
        (started, now()),
    );
    assert!(
        refusal["text"]
            .as_str()
            .unwrap()
            .contains("carol denied alice's request"),
        "{refusal:#}"
    );

    // Revoked by an approver of the rule: the alert names the revoker and the serial.
    ca.ssh(
        &team.carol,
        &format!("revoke {issued} --reason rotated the keys"),
        None,
    )
    .ok();
    let revoked = hooks.wait_for("revoked", &issued);
    assert_alert(
        &revoked,
        ("revoked", &issued, Some("carol"), "revoked"),
        Some(serial),
        (started, now()),
    );
    assert!(
        revoked["text"].as_str().unwrap().contains("carol revoked"),
        "{revoked:#}"
    );
    // One of each, nothing twice.
    let received = hooks.received.lock().unwrap();
    let count = |event: &str, id: &str| {
        received
            .iter()
            .filter(|a| a["event"] == event && a["id"] == id)
            .count()
    };
    assert_eq!(count("decided", &issued), 1, "{received:#?}");
    assert_eq!(count("decided", &denied), 1, "{received:#?}");
    assert_eq!(count("revoked", &issued), 1, "{received:#?}");
    assert_eq!(count("revoked", &denied), 0, "{received:#?}");
}
