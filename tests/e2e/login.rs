//! `jitca login` with a real ssh-agent, and `watch` for approvers.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;

/// `jitca login ARGS --ca 127.0.0.1:PORT`, talking to the CA with the agent's keys.
fn login(ca: &Ca, agent: Option<&Agent>, args: &str) -> Out {
    let mut cmd = Command::new(JITCA);
    cmd.arg("login")
        .args(shlex::split(args).unwrap())
        .args(["--ca", &format!("127.0.0.1:{}", ca.port)])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ])
        .env_remove("SSH_AUTH_SOCK");
    if let Some(agent) = agent {
        cmd.env("SSH_AUTH_SOCK", &agent.socket);
    }
    run(&mut cmd, None)
}

/// Logs in to `sshd` as root with whatever the agent holds.
fn ssh_via_agent(sshd: &Sshd, agent: &Agent) -> Out {
    run(
        Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-o")
            .arg(format!("IdentityAgent={}", agent.socket.display()))
            .args([
                "-p",
                &sshd.port.to_string(),
                "root@127.0.0.1",
                "echo jitca-ok-$(id -un)",
            ]),
        None,
    )
}

#[test]
fn login_puts_the_grant_in_the_agent_for_its_lifetime() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let web1 = Sshd::start("web1", &ca.ca_pub(), &["root"], "");
    let agent = Agent::start();
    agent.add(&team.alice.key); // her identity towards the CA

    // An approval is needed: login waits, showing progress, until bob approves.
    let out = thread::scope(|s| {
        let waiting = s.spawn(|| {
            login(
                &ca,
                Some(&agent),
                "web1 --as root --for 8s --reason INC-9 restart",
            )
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let id = loop {
            let pending = ca.list_json(&team.bob);
            if let Some(r) = pending.iter().find(|r| r["state"] == "pending") {
                break r["id"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "no request arrived");
            thread::sleep(Duration::from_millis(50));
        };
        ca.ssh(&team.bob, &format!("approve {id}"), None).ok();
        (id, waiting.join().unwrap())
    });
    let (id, out) = out;
    out.ok();
    assert!(
        out.stderr.contains("waiting for 1 approval"),
        "progress is shown: {out:?}"
    );
    assert!(out.stderr.contains("loaded into ssh-agent"), "{out:?}");
    assert_eq!(out.stdout.trim(), "ssh root@web1");
    let listed = agent.list();
    assert!(
        listed.contains("jitca-login web1 as root (ED25519-CERT)"),
        "{listed}"
    );

    let ok = ssh_via_agent(&web1, &agent);
    ok.ok();
    assert_eq!(ok.stdout.trim(), "jitca-ok-root");

    // The key leaves the agent when the certificate's lifetime ends: not before, and not
    // later than a fixed margin after (the agent's timer counts whole seconds from loading).
    let valid_before = ca.show_json(&team.alice, &id)["valid_before"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap();
    let margin = chrono::Duration::seconds(2);
    // When the agent was last asked and still held it; when it was first seen without it.
    let mut held_at = None;
    let gone_at = loop {
        let asked = chrono::Utc::now();
        if !agent.list().contains("jitca-login") {
            break chrono::Utc::now();
        }
        held_at = Some(asked);
        assert!(
            asked <= valid_before + margin,
            "the grant stayed in the agent at {asked}, valid before {valid_before}: {}",
            agent.list()
        );
        thread::sleep(Duration::from_millis(250));
    };
    let held_at = held_at.expect("the grant left the agent before its lifetime ended");
    assert!(
        gone_at <= valid_before + margin,
        "the grant left the agent by {gone_at}, valid before {valid_before}"
    );
    assert!(
        held_at >= valid_before - chrono::Duration::seconds(1),
        "the grant left the agent after {held_at}, before its end {valid_before}"
    );
    assert!(agent.list().contains("alice"), "only the grant left");
    assert_eq!(ssh_via_agent(&web1, &agent).status, 255);
}

#[test]
fn login_says_clearly_what_went_wrong() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let agent = Agent::start();
    agent.add(&team.alice.key);

    let no_agent = login(&ca, None, "lab1 --as root --for 5m --reason x");
    assert_eq!(no_agent.status, 1);
    assert!(
        no_agent
            .stderr
            .contains("no ssh-agent: SSH_AUTH_SOCK is not set"),
        "{no_agent:?}"
    );
    let dead = Agent::start();
    let socket = dead.socket.clone();
    drop(dead);
    let out = run(
        Command::new(JITCA)
            .args([
                "login",
                "lab1",
                "--as",
                "root",
                "--for",
                "5m",
                "--reason",
                "x",
                "--ca",
                "127.0.0.1:1",
            ])
            .env("SSH_AUTH_SOCK", &socket),
        None,
    );
    assert!(out.stderr.contains("does not answer"), "{out:?}");
    assert!(ca.list_json(&team.ivy).is_empty(), "nothing was requested");

    let closed_port = free_port();
    let unreachable = run(
        Command::new(JITCA)
            .args([
                "login", "lab1", "--as", "root", "--for", "5m", "--reason", "x", "--ca",
            ])
            .arg(format!("127.0.0.1:{closed_port}"))
            .env("SSH_AUTH_SOCK", &agent.socket),
        None,
    );
    assert_eq!(unreachable.status, 1);
    assert!(
        unreachable
            .stderr
            .contains(&format!("cannot reach the CA at 127.0.0.1:{closed_port}")),
        "{unreachable:?}"
    );

    let refused = login(
        &ca,
        Some(&agent),
        "lab1 --as root --for 2h --reason too long",
    );
    assert_eq!(refused.status, 1);
    assert!(
        refused.stderr.contains("jitca: 2h is longer than"),
        "the CA's own message: {refused:?}"
    );
    assert!(
        refused.stderr.contains("no certificate: the CA refused"),
        "{refused:?}"
    );

    // Denied while waiting.
    let denied = thread::scope(|s| {
        let waiting =
            s.spawn(|| login(&ca, Some(&agent), "web1 --as root --for 5m --reason please"));
        let deadline = Instant::now() + Duration::from_secs(20);
        let id = loop {
            if let Some(r) = ca
                .list_json(&team.bob)
                .iter()
                .find(|r| r["state"] == "pending")
            {
                break r["id"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline);
            thread::sleep(Duration::from_millis(50));
        };
        ca.ssh(&team.bob, &format!("deny {id} --reason no"), None)
            .ok();
        waiting.join().unwrap()
    });
    assert_eq!(denied.status, 1);
    assert!(
        denied.stderr.contains("was denied by bob: no"),
        "{denied:?}"
    );

    // --out writes key and certificate instead, never over existing files.
    let out_dir = tempfile::tempdir().unwrap();
    let path = out_dir.path().join("grant");
    let written = login(
        &ca,
        Some(&agent),
        &format!(
            "lab1 --as root --for 5m --reason files --out {}",
            path.display()
        ),
    );
    written.ok();
    assert_eq!(
        written.stdout.trim(),
        format!("ssh -i {} root@lab1", path.display())
    );
    assert!(
        std::fs::read_to_string(format!("{}-cert.pub", path.display()))
            .unwrap()
            .starts_with("ssh-ed25519-cert-v01@openssh.com")
    );
    let again = login(
        &ca,
        Some(&agent),
        &format!(
            "lab1 --as root --for 5m --reason files --out {}",
            path.display()
        ),
    );
    assert!(again.stderr.contains("exists already"), "{again:?}");
    let lab = Sshd::start("lab1", &ca.ca_pub(), &["root"], "");
    let used = lab.login(
        "root",
        &path,
        &PathBuf::from(format!("{}-cert.pub", path.display())),
    );
    assert_eq!(used.stdout.trim(), "forced");
}

#[test]
fn watch_shows_requests_as_they_come_and_how_they_end() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let early = id_of(&ca.request(
        &team.alice,
        "web2 --as root --for 1h --reason already there --no-wait",
    ));
    // Lines carry whole seconds: the watch connects a second later than the request was made.
    thread::sleep(Duration::from_millis(1100));
    let mut watch = ssh_client(&team.bob.key)
        .args(["-p", &ca.port.to_string(), "jitca@127.0.0.1", "watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("watch printed a line")
    };
    let first = next();
    assert!(
        first.contains(&format!("pending  {early} alice wants root on web2")),
        "{first}"
    );
    // Stamped with the request's own time, not the moment the watch connected.
    let made = ca.show_json(&team.bob, &early)["created_at"]
        .as_str()
        .expect("show --json has created_at")
        .to_string();
    let made = chrono::DateTime::parse_from_rfc3339(&made).unwrap();
    assert!(
        first.starts_with(
            &made
                .with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        "{first} (made {made})"
    );

    // Made in another connection while the watch runs.
    let id = id_of(&ca.request(
        &team.alice,
        "web1 --as root --for 1h --reason INC-5 disk --no-wait",
    ));
    let arrived = next();
    assert!(
        arrived.contains(&format!(
            "pending  {id} alice wants root on web1 for 1h (0/1 approvals)"
        )),
        "{arrived}"
    );
    // Not for bob: a db request (dave approves those) never shows.
    id_of(&ca.request(&team.alice, "db1 --as root --for 1h --reason db --no-wait"));
    ca.ssh(&team.carol, &format!("approve {id}"), None).ok();
    let issued = next();
    assert!(
        issued.contains(&format!("issued   {id}")) && issued.contains("(1/1 approvals)"),
        "{issued}"
    );
    ca.ssh(&team.carol, &format!("deny {early} --reason stale"), None)
        .ok();
    let denied = next();
    assert!(
        denied.contains(&format!("denied   {early}")) && denied.ends_with("by carol: stale"),
        "{denied}"
    );
    let _ = watch.kill();
    let _ = watch.wait();
    // The daemon is fine after the watcher left.
    ca.ssh(&team.bob, "whoami", None).ok();
}
