//! The whole path: request, approve, certificate, login; and what survives a restart.

use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Waits until `who` sees `n` pending requests.
fn wait_pending(ca: &Ca, who: &Person, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending: Vec<_> = ca
            .list_json(who)
            .into_iter()
            .filter(|r| r["state"] == "pending")
            .collect();
        if pending.len() >= n {
            return pending;
        }
        assert!(Instant::now() < deadline, "no pending request appeared");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn approved_certificate_logs_in_exactly_where_approved() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let web1 = Sshd::start("web1", &ca.ca_pub(), &["root", "nobody"], "");
    let web2 = Sshd::start("web2", &ca.ca_pub(), &["root"], "");

    let waiting = {
        let alice = team.alice.clone();
        let ca = &ca;
        thread::scope(|s| {
            let handle = s.spawn(move || {
                ca.request(&alice, "web1 --as root --for 1h --reason INC-42 disk full")
            });
            let pending = wait_pending(ca, &team.bob, 1);
            let id = pending[0]["id"].as_str().unwrap().to_string();
            assert_eq!(pending[0]["reason"], "INC-42 disk full");
            assert_eq!(pending[0]["principals"], serde_json::json!(["root@web1"]));
            let approve = ca.ssh(&team.bob, &format!("approve {id}"), None);
            approve.ok();
            assert!(approve.stderr.contains("issued to alice"), "{approve:?}");
            (id, handle.join().unwrap())
        })
    };
    let (id, out) = waiting;
    out.ok();
    assert!(
        out.stderr
            .contains(&format!("request {id} made; waiting for 1 approval")),
        "{out:?}"
    );
    assert!(out.stderr.contains("approved by bob"), "{out:?}");
    assert!(
        out.stdout.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{out:?}"
    );

    let cert = save_cert(team.dir.path(), "alice_ed25519", &out.stdout);
    let listing = keygen_l(&cert);
    let shown = ca.show_json(&team.alice, &id);
    let serial = shown["serial"].as_u64().unwrap();
    assert!(serial > 0);
    assert!(
        listing.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{listing}"
    );
    assert!(listing.contains(&format!("Serial: {serial}")), "{listing}");
    assert!(
        listing.contains(&format!("Key ID: \"jitca:{id}:alice:approvers=bob\"")),
        "{listing}"
    );
    assert!(
        listing.contains("Principals: \n                root@web1\n"),
        "{listing}"
    );
    assert!(listing.contains("Critical Options: (none)"), "{listing}");
    assert!(
        listing.contains("Extensions: \n                permit-pty\n"),
        "{listing}"
    );
    // Valid: from T-1min to T+1h.
    let valid = listing
        .lines()
        .find(|l| l.trim_start().starts_with("Valid:"))
        .unwrap();
    let times: Vec<&str> = valid
        .split_whitespace()
        .filter(|w| w.contains('T'))
        .collect();
    let parse = |t: &str| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").unwrap();
    let window = parse(times[1]) - parse(times[0]);
    assert_eq!(window.num_seconds(), 3600 + 60, "{valid}");

    let ok = web1.login("root", &team.alice.key, &cert);
    ok.ok();
    assert_eq!(ok.stdout.trim(), "jitca-ok-root");
    let other_login = web1.login("nobody", &team.alice.key, &cert);
    assert_eq!(other_login.status, 255, "{other_login:?}");
    assert!(
        other_login.stderr.contains("Permission denied"),
        "{other_login:?}"
    );
    let other_host = web2.login("root", &team.alice.key, &cert);
    assert_eq!(other_host.status, 255, "{other_host:?}");
    assert!(
        web2.log()
            .contains("Certificate does not contain an authorized principal"),
        "{}",
        web2.log()
    );

    // `get` hands out the same certificate again, only to the requester.
    let again = ca.ssh(&team.alice, &format!("get {id}"), None);
    again.ok();
    assert_eq!(again.stdout, out.stdout);
    ca.ssh(&team.bob, &format!("get {id}"), None)
        .refused("no request");
}

#[test]
fn expired_certificate_is_refused_and_options_are_the_rules() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let lab = Sshd::start("lab1", &ca.ca_pub(), &["root"], "");
    // dev-lab needs no approval: the certificate comes at once.
    let out = ca.request(&team.alice, "lab1 --as root --for 5s --reason short test");
    out.ok();
    assert!(out.stderr.contains("no approval needed"), "{out:?}");
    let cert = save_cert(team.dir.path(), "alice_ed25519", &out.stdout);
    let listing = keygen_l(&cert);
    assert!(listing.contains("force-command echo forced"), "{listing}");
    assert!(listing.contains("permit-port-forwarding"), "{listing}");
    assert!(listing.contains(":alice:approvers=none\""), "{listing}");
    let login = lab.login("root", &team.alice.key, &cert);
    login.ok();
    assert_eq!(
        login.stdout.trim(),
        "forced",
        "the rule's force-command runs"
    );
    assert!(
        !lab.log().contains("Certificate invalid"),
        "refused while valid: {}",
        lab.log()
    );
    thread::sleep(Duration::from_secs(6));
    let late = lab.login("root", &team.alice.key, &cert);
    assert_eq!(late.status, 255, "{late:?}");
    assert!(late.stderr.contains("Permission denied"), "{late:?}");
    // Refused for its validity and nothing else: sshd names the reason, and only that one.
    let log = lab.log();
    let invalid: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Certificate invalid"))
        .collect();
    assert!(!invalid.is_empty(), "{log}");
    assert!(
        invalid
            .iter()
            .all(|l| l.trim_end().ends_with("Certificate invalid: expired")),
        "{log}"
    );
}

#[test]
fn restart_keeps_pending_and_issued_requests_and_never_reuses_serials() {
    let team = Team::new();
    let mut ca = Ca::start(&team.config("1h"));
    let pending = id_of(&ca.request(
        &team.alice,
        "web1,web2 --as root,nobody --for 30m --reason deploy --no-wait",
    ));
    let issued = ca.request(&team.alice, "lab1 --as root --for 10m --reason lab");
    issued.ok();
    let issued_id = ca
        .list_json(&team.alice)
        .into_iter()
        .find(|r| r["state"] == "issued")
        .unwrap();
    let first_serial = issued_id["serial"].as_u64().unwrap();
    let issued_id = issued_id["id"].as_str().unwrap().to_string();

    ca.restart_hard();

    let again = ca.ssh(&team.alice, &format!("get {issued_id}"), None);
    again.ok();
    assert_eq!(
        again.stdout, issued.stdout,
        "the issued certificate survived SIGKILL"
    );
    ca.ssh(&team.carol, &format!("approve {pending}"), None)
        .ok();
    let after = ca.show_json(&team.alice, &pending);
    assert_eq!(after["state"], "issued");
    assert!(after["serial"].as_u64().unwrap() > first_serial, "{after}");
    assert_eq!(
        after["principals"],
        serde_json::json!(["root@web1", "root@web2", "nobody@web1", "nobody@web2"])
    );
    let cert = ca.ssh(&team.alice, &format!("get {pending}"), None);
    cert.ok();
    let path = save_cert(team.dir.path(), "multi", &cert.stdout);
    assert!(keygen_l(&path).contains("nobody@web2"));
}

#[test]
fn denied_and_lapsed_requests_end_the_wait_and_stay_ended() {
    let team = Team::new();
    let ca = Ca::start(&team.config("3s"));
    thread::scope(|s| {
        let alice = team.alice.clone();
        let ca = &ca;
        let waiting =
            s.spawn(move || ca.request(&alice, "web1 --as root --for 1h --reason please"));
        let id = wait_pending(ca, &team.carol, 1)[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        ca.ssh(
            &team.carol,
            &format!("deny {id} --reason not during the freeze"),
            None,
        )
        .ok();
        waiting.join().unwrap().refused(&format!(
            "request {id} was denied by carol: not during the freeze"
        ));
        ca.ssh(&team.bob, &format!("approve {id}"), None)
            .refused("was denied by carol");
    });
    // Nobody decides: the waiting request lapses after pending_ttl (3s).
    let out = ca.request(&team.alice, "web2 --as root --for 1h --reason anyone?");
    out.refused("lapsed");
    let lapsed = ca
        .list_json(&team.alice)
        .into_iter()
        .find(|r| r["state"] == "lapsed")
        .unwrap();
    let id = lapsed["id"].as_str().unwrap();
    ca.ssh(&team.bob, &format!("approve {id}"), None)
        .refused("has lapsed");
    // A --no-wait request lapses too, with nobody waiting on it.
    let quiet = id_of(&ca.request(
        &team.alice,
        "web2 --as root --for 1h --reason later --no-wait",
    ));
    thread::sleep(Duration::from_secs(4));
    ca.ssh(&team.bob, &format!("approve {quiet}"), None)
        .refused("has lapsed");
    assert_eq!(ca.show_json(&team.alice, &quiet)["state"], "lapsed");

    // Each lapse is recorded once, by the daemon, with the time it was due, and not before.
    let audit = ca.audit_json(&team.ivy, "");
    for lapsed_id in [id, quiet.as_str()] {
        let records: Vec<&serde_json::Value> = audit
            .iter()
            .filter(|e| e["event"] == "lapsed" && e["request"] == lapsed_id)
            .collect();
        assert_eq!(records.len(), 1, "{audit:#?}");
        let r = records[0];
        assert_eq!(r["actor"], "jitca", "{r}");
        assert_eq!(r["requester"], "alice", "{r}");
        assert_eq!(r["hosts"], serde_json::json!(["web2"]), "{r}");
        assert_eq!(r["logins"], serde_json::json!(["root"]), "{r}");
        let at = |v: &serde_json::Value| {
            v.as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .unwrap_or_else(|| panic!("not an RFC 3339 time: {v} in {r}"))
        };
        let due = at(&r["details"]["lapses_at"]);
        let shown = at(&ca.show_json(&team.alice, lapsed_id)["lapses_at"]);
        assert!(
            (due - shown).num_milliseconds().abs() < 1000,
            "{r} vs {shown}"
        );
        assert!(at(&r["time"]) >= due, "recorded before it was due: {r}");
        let requested = audit
            .iter()
            .find(|e| e["event"] == "requested" && e["request"] == lapsed_id)
            .unwrap();
        // pending_ttl is 3s, counted from just before the request was recorded.
        let ttl = (due - at(&requested["time"])).num_milliseconds();
        assert!((2000..=3000).contains(&ttl), "{ttl} ms: {requested} {r}");
    }
    assert_eq!(
        audit.iter().filter(|e| e["event"] == "lapsed").count(),
        2,
        "the denied request did not lapse: {audit:#?}"
    );
}

#[test]
fn racing_approvers_issue_exactly_one_certificate() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    for round in 0..6 {
        let id = id_of(&ca.request(
            &team.alice,
            "pair1 --as root --for 10m --reason race --no-wait",
        ));
        let mut approvers = vec![&team.bob, &team.carol];
        if round % 2 == 1 {
            approvers.push(&team.frank);
        }
        let outs: Vec<Out> = thread::scope(|s| {
            let handles: Vec<_> = approvers
                .iter()
                .map(|p| {
                    let id = id.clone();
                    let ca = &ca;
                    s.spawn(move || ca.ssh(p, &format!("approve {id}"), None))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let issued = outs
            .iter()
            .filter(|o| o.status == 0 && o.stderr.contains("issued to alice"))
            .count();
        let counted = outs
            .iter()
            .filter(|o| o.status == 0 && o.stderr.contains("(1/2 approvals)"))
            .count();
        let late = outs
            .iter()
            .filter(|o| o.status == 1 && o.stderr.contains("already approved and issued"))
            .count();
        assert_eq!(issued, 1, "{outs:#?}");
        assert_eq!(counted, 1, "{outs:#?}");
        assert_eq!(late, approvers.len() - 2, "{outs:#?}");
        let shown = ca.show_json(&team.alice, &id);
        assert_eq!(shown["state"], "issued");
        assert_eq!(shown["approvals"].as_array().unwrap().len(), 2);
    }
    let serials: std::collections::BTreeSet<u64> = ca
        .list_json(&team.ivy)
        .iter()
        .map(|r| r["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(serials.len(), 6, "serials are unique");
}
