//! The control channel under attack: floods of connections that never authenticate, slow
//! clients, idle and greedy ones, and requests for what jitca never offers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn with_limits(config: &str, limits: &str) -> String {
    config.replace(
        "data_dir: data\n",
        &format!("data_dir: data\nlimits:\n{limits}"),
    )
}

/// What one attacker connection got from the daemon before it sent anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeting {
    /// The daemon's SSH version line: it holds the connection, waiting for the client's.
    Held,
    /// Closed at once without a byte: over the limits.
    Refused,
    /// Neither within the wait.
    Silent,
}

/// Reads the first bytes the daemon sends on `stream`.
async fn greeting(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Greeting {
    use tokio::io::AsyncReadExt;
    let mut first = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut first)).await {
        Ok(Ok(n)) if first[..n].starts_with(b"SSH-2.0-jitca") => Greeting::Held,
        Ok(Ok(0)) | Ok(Err(_)) => Greeting::Refused,
        Ok(Ok(n)) => panic!("unexpected first bytes {:?}", &first[..n]),
        Err(_) => Greeting::Silent,
    }
}

#[test]
fn a_flood_of_unauthenticated_connections_does_not_lock_out_engineers() {
    let team = Team::new();
    // The defaults, written out: what this test counts against. Eleven sources hold at most
    // 11 * 16 = 176 < 256 connections, so the per-source limit is the one that refuses.
    let per_source = 16;
    let ca = Ca::start(&with_limits(
        &team.config("1h"),
        &format!("  max_startups: 256\n  max_startups_per_source: {per_source}\n"),
    ));
    let addr: SocketAddr = format!("127.0.0.1:{}", ca.port).parse().unwrap();
    let before = rss_kib(ca.pid());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (held, trickling) = runtime.block_on(async {
        // 1,000 connections from one attacker address that never say anything...
        let mut held = Vec::new();
        for _ in 0..1000 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            if let Ok(stream) = socket.connect(addr).await {
                held.push(stream);
            }
        }
        // ...and 200 from ten more addresses that trickle their version string, each noting
        // what the daemon sent it first.
        let mut trickling = Vec::new();
        for i in 0..200u32 {
            let source = 3 + i % 10;
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(format!("127.0.0.{source}:0").parse().unwrap())
                .unwrap();
            let (mut read, mut write) = socket.connect(addr).await.unwrap().into_split();
            let trickle = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for byte in b"SSH-2.0-slowloris".iter().cycle().take(200) {
                    if write.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            let greeted = tokio::spawn(async move { (source, greeting(&mut read).await) });
            trickling.push((trickle, greeted));
        }
        (held, trickling)
    });
    std::thread::sleep(Duration::from_millis(500));
    let during = rss_kib(ca.pid());

    let started = Instant::now();
    let out = ca.request(
        &team.alice,
        "lab1 --as root --for 5m --reason during a flood",
    );
    let took = started.elapsed();
    out.ok();
    assert!(out.stdout.starts_with("ssh-ed25519-cert-v01@openssh.com"));

    // What the daemon held: within the grace time (20 s) nothing it admitted has been let go,
    // so every connection it admitted is still held, and all of them at once.
    let (greetings, trickled) = runtime.block_on(async {
        let mut reads = tokio::task::JoinSet::new();
        for stream in held {
            reads.spawn(async move { greeting(&mut stream.into_split().0).await });
        }
        let greetings = reads.join_all().await;
        let mut trickled = Vec::new();
        for (trickle, greeted) in trickling {
            trickled.push(greeted.await.unwrap());
            trickle.abort();
        }
        (greetings, trickled)
    });
    let count = |all: &[Greeting], g: Greeting| all.iter().filter(|x| **x == g).count();
    eprintln!(
        "flood: {} attacker connections accepted by the kernel, {} held by the daemon, {} refused; \
         200 trickling from ten addresses, {} held; daemon RSS {before} KiB before, {during} KiB \
         during; request took {took:?}",
        greetings.len(),
        count(&greetings, Greeting::Held),
        count(&greetings, Greeting::Refused),
        trickled
            .iter()
            .filter(|(_, g)| *g == Greeting::Held)
            .count(),
    );
    assert_eq!(count(&greetings, Greeting::Silent), 0, "{greetings:?}");
    assert_eq!(
        count(&greetings, Greeting::Held),
        per_source,
        "one address holds max_startups_per_source connections, no more"
    );
    assert_eq!(
        count(&greetings, Greeting::Refused),
        greetings.len() - per_source,
        "the rest are closed before a byte"
    );
    for source in 3..13 {
        let mine: Vec<Greeting> = trickled
            .iter()
            .filter(|(s, _)| *s == source)
            .map(|(_, g)| *g)
            .collect();
        assert_eq!(mine.len(), 20);
        assert_eq!(
            (
                count(&mine, Greeting::Held),
                count(&mine, Greeting::Refused)
            ),
            (per_source, 20 - per_source),
            "127.0.0.{source}: {mine:?}"
        );
    }
    assert!(
        took < Duration::from_secs(2),
        "an engineer waited {took:?} during the flood"
    );
    assert!(
        during < before + 64 * 1024,
        "memory grew from {before} KiB to {during} KiB"
    );
}

#[test]
fn slow_idle_and_greedy_clients_are_cut_off() {
    let team = Team::new();
    let ca = Ca::start(&with_limits(
        &team.config("1h"),
        "  login_grace_time: 2s\n  idle_timeout: 3s\n  max_sessions_per_user: 2\n",
    ));
    // A client that never finishes authenticating is disconnected after the grace time.
    let mut slow = TcpStream::connect(("127.0.0.1", ca.port)).unwrap();
    slow.write_all(b"SSH-2.0-slow\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = slow.read_to_end(&mut sink);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "cut after {waited:?}"
    );

    // An authenticated connection that runs nothing is closed after idle_timeout (3 s)...
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("idle");
    let idle = ssh_client(&team.alice.key)
        .args(["-M", "-N", "-S"])
        .arg(&control)
        .args(["-p", &ca.port.to_string(), "jitca@127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the idle connection to be up", || control.exists());
    // It authenticated: a command run over it says who it is. The idle time counts from the
    // end of that command, so from before it was sent is a lower bound.
    let asked = Instant::now();
    let who = run(
        ssh_client(&team.alice.key).arg("-S").arg(&control).args([
            "-p",
            &ca.port.to_string(),
            "jitca@127.0.0.1",
            "whoami",
        ]),
        None,
    );
    assert!(who.ok().stdout.contains("user     alice"), "{who:?}");
    let answered = Instant::now();
    let closed = idle.wait_with_output().unwrap();
    let (idle_for, since_answer) = (asked.elapsed(), answered.elapsed());
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(closed.status.code(), Some(255), "{stderr}");
    assert!(
        stderr.contains("idle too long"),
        "cut for idleness: {stderr}"
    );
    assert!(
        idle_for >= Duration::from_secs(3),
        "cut after {idle_for:?} without a command, before idle_timeout"
    );
    assert!(
        since_answer < Duration::from_secs(8),
        "the idle connection stayed {since_answer:?}"
    );
    // ...but a request waiting for approval longer than that is not idle.
    let waiting = std::thread::scope(|s| {
        let w = s.spawn(|| ca.request(&team.alice, "web1 --as root --for 5m --reason wait long"));
        std::thread::sleep(Duration::from_secs(5));
        let id = ca
            .list_json(&team.bob)
            .iter()
            .find(|r| r["state"] == "pending")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        ca.ssh(&team.bob, &format!("approve {id}"), None).ok();
        w.join().unwrap()
    });
    waiting.ok();

    // At most two connections per person at once.
    let a = ssh_n(ca.port, &team.alice.key);
    let b = ssh_n(ca.port, &team.alice.key);
    std::thread::sleep(Duration::from_millis(700));
    ca.ssh(&team.alice, "whoami", None)
        .refused("alice has 2 connections open already (at most 2)");
    ca.ssh(&team.bob, "whoami", None).ok();
    for mut c in [a, b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    std::thread::sleep(Duration::from_millis(300));
    ca.ssh(&team.alice, "whoami", None).ok();
}

/// `ssh -N`: authenticates and holds the connection without running anything.
fn ssh_n(port: u16, key: &Path) -> std::process::Child {
    ssh_client(key)
        .arg("-N")
        .args(["-p", &port.to_string(), "jitca@127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn forwarding_shells_and_terminals_are_refused_and_the_connection_still_runs_commands() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("master");
    let base = || {
        let mut cmd = ssh_client(&team.alice.key);
        cmd.arg("-S")
            .arg(&control)
            .args(["-p", &ca.port.to_string()]);
        cmd
    };
    // One master connection, reused by every command below.
    let mut master = base();
    let status = master
        .args([
            "-M",
            "-f",
            "-N",
            "-o",
            "ControlPersist=yes",
            "jitca@127.0.0.1",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let via_master = |extra: &[&str], command: Option<&str>| {
        let mut cmd = base();
        cmd.args(extra).arg("jitca@127.0.0.1");
        if let Some(c) = command {
            cmd.arg(c);
        }
        run(&mut cmd, None)
    };
    let forward = via_master(&["-W", "127.0.0.1:22"], None);
    assert_eq!(forward.status, 255, "{forward:?}");
    assert!(
        forward
            .stderr
            .contains("forwarding request failed: Session open refused by peer"),
        "{forward:?}"
    );
    via_master(&[], None).refused("no shell here");
    via_master(&["-tt"], Some("whoami")).refused("no terminals here");
    // With IdentityAgent=none OpenSSH has no agent, so `-A` sends nothing: this only shows the
    // command runs. The refusal itself is shown by
    // agent_env_subsystem_x11_and_remote_forwarding_are_each_refused.
    let agent = via_master(&["-A"], Some("whoami"));
    assert!(agent.ok().stdout.contains("alice"), "{agent:?}");
    let ok = via_master(&[], Some("whoami"));
    ok.ok();
    assert!(ok.stdout.contains("user     alice"));
    let _ = Command::new("ssh")
        .arg("-S")
        .arg(&control)
        .args(["-O", "exit", "jitca@127.0.0.1"])
        .output();
}

#[test]
fn every_oversized_field_is_refused_before_any_work() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let key = team.alice.public_key();
    let req = |args: &str| {
        ca.ssh(
            &team.alice,
            &format!("request {args}"),
            Some(key.as_bytes()),
        )
    };
    req(&format!(
        "web1 --as root --for 1h --reason {}",
        "r".repeat(513)
    ))
    .refused("512");
    req(&format!(
        "{} --as root --for 1h --reason x",
        "h".repeat(254)
    ))
    .refused("253");
    let many: Vec<String> = (0..65).map(|i| format!("h{i}")).collect();
    req(&format!("{} --as root --for 1h --reason x", many.join(","))).refused("64");
    req(&format!("web1 --as {} --for 1h --reason x", "l".repeat(33))).refused("login");
    req(&format!(
        "web1 --as root --for {}h --reason x",
        "9".repeat(12)
    ))
    .refused("duration");
    ca.ssh(&team.alice, &format!("whoami {}", "x".repeat(9000)), None)
        .refused("longer than 8192 bytes");
    ca.ssh(
        &team.alice,
        "request web1 --as root --for 1h --reason x",
        Some(&vec![b'A'; 20_000]),
    )
    .refused("16 KiB");
    assert!(ca.list_json(&team.ivy).is_empty(), "nothing was stored");
}

#[test]
fn only_modern_algorithms_with_strict_key_exchange() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let verbose = ca.ssh_with(&team.alice, &["-vv"], "whoami", None);
    verbose.ok();
    assert!(
        verbose.stderr.contains("kex-strict-s-v00@openssh.com"),
        "strict kex offered: {}",
        verbose.stderr
    );
    for (option, complaint) in [
        (
            "KexAlgorithms=diffie-hellman-group14-sha256",
            "no matching key exchange method found",
        ),
        ("Ciphers=aes128-ctr", "no matching cipher found"),
        ("Ciphers=aes256-cbc", "no matching cipher found"),
        (
            "HostKeyAlgorithms=ssh-rsa",
            "no matching host key type found",
        ),
    ] {
        let out = ca.ssh_with(&team.alice, &["-v", "-o", option], "whoami", None);
        assert_eq!(out.status, 255, "{option}: {out:?}");
        assert!(out.stderr.contains(complaint), "{option}: {}", out.stderr);
    }
    for option in [
        "KexAlgorithms=curve25519-sha256",
        "KexAlgorithms=sntrup761x25519-sha512@openssh.com,curve25519-sha256",
        "Ciphers=aes256-gcm@openssh.com",
    ] {
        ca.ssh_with(&team.alice, &["-o", option], "whoami", None)
            .ok();
    }
}

#[test]
fn every_rejected_key_costs_a_second() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let strangers: Vec<Person> = (0..3)
        .map(|i| Person::new(team.dir.path(), &format!("stranger{i}")))
        .collect();
    let offering = |keys: &[&Person]| {
        let mut cmd = ssh_client(&keys[0].key);
        for p in &keys[1..] {
            cmd.arg("-i").arg(&p.key);
        }
        cmd.args(["-p", &ca.port.to_string(), "jitca@127.0.0.1", "whoami"]);
        let started = Instant::now();
        let out = run(&mut cmd, None);
        (out, started.elapsed())
    };

    // Three unknown keys: each one's rejection takes a second.
    let (out, took) = offering(&[&strangers[0], &strangers[1], &strangers[2]]);
    assert_eq!(out.status, 255, "{out:?}");
    assert!(
        out.stderr.contains("Permission denied (publickey)"),
        "{out:?}"
    );
    assert!(
        took >= Duration::from_millis(2700),
        "three rejected keys took {took:?}"
    );
    // The daemon saw all three offered (and rejected) on that one connection.
    let mut failed = Vec::new();
    wait_for("the failed connection's record", || {
        failed = ca
            .audit_json(&team.ivy, "")
            .into_iter()
            .filter(|e| e["event"] == "auth_failed")
            .collect();
        !failed.is_empty()
    });
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(
        failed[0]["details"]["keys"].as_array().unwrap().len(),
        3,
        "{failed:#?}"
    );

    // Two unknown keys, then a registered one: two seconds, then in.
    let (out, took) = offering(&[&strangers[0], &strangers[1], &team.alice]);
    assert!(out.ok().stdout.contains("user     alice"), "{out:?}");
    assert!(
        took >= Duration::from_millis(1800),
        "two rejected keys took {took:?}"
    );
}

#[test]
fn agent_env_subsystem_x11_and_remote_forwarding_are_each_refused() {
    use crate::russh_client::{Connection, exec, reply};
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let port = ca.port.to_string();
    // For -A: an agent to forward (OpenSSH asks only when it has one).
    let agent = Agent::start();
    let ssh = |extra: &[&str], command: &str| {
        let mut cmd = ssh_client(&team.alice.key);
        // For -X: a display to forward (nothing listens there; the daemon never asks).
        cmd.env("DISPLAY", "127.0.0.1:99").args(extra).args([
            "-p",
            &port,
            "jitca@127.0.0.1",
            command,
        ]);
        run(&mut cmd, None)
    };

    // What OpenSSH asks with a reply, it reports refused.
    let subsystem = ssh(&["-s"], "sftp");
    assert_eq!(subsystem.status, 255, "{subsystem:?}");
    assert!(
        subsystem
            .stderr
            .contains("subsystem request failed on channel 0"),
        "{subsystem:?}"
    );
    let remote = ssh(
        &["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"],
        "whoami",
    );
    assert_eq!(remote.status, 255, "{remote:?}");
    assert!(
        remote
            .stderr
            .contains("remote port forwarding failed for listen port 0"),
        "{remote:?}"
    );
    assert!(remote.stdout.is_empty(), "{remote:?}");
    // X11's refusal is an INFO line (hence -v); the command runs on regardless.
    let x11 = ssh(&["-v", "-X"], "whoami");
    assert!(x11.ok().stdout.contains("user     alice"), "{x11:?}");
    assert!(
        x11.stderr
            .contains("X11 forwarding request failed on channel 0"),
        "{x11:?}"
    );
    // Agent forwarding and env go without asking for a reply: the command runs...
    // (With the harness's IdentityAgent=none OpenSSH forgets the agent, and so never asks.)
    let mut forwarding = Command::new("ssh");
    forwarding
        .arg("-i")
        .arg(&team.alice.key)
        .arg("-o")
        .arg(format!("IdentityAgent={}", agent.socket.display()))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-F",
            "/dev/null",
            "-v",
            "-A",
            "-o",
            "SetEnv=JITCA_TEST=1",
            "-p",
            &port,
            "jitca@127.0.0.1",
            "whoami",
        ]);
    let quiet = run(&mut forwarding, None);
    assert!(quiet.ok().stdout.contains("user     alice"), "{quiet:?}");
    assert!(
        quiet
            .stderr
            .contains("Requesting authentication agent forwarding"),
        "{quiet:?}"
    );
    assert!(
        !quiet.stderr.contains("ctype auth-agent@openssh.com"),
        "the daemon reached for the agent: {quiet:?}"
    );
    assert!(
        quiet
            .stderr
            .contains("channel 0: setting env JITCA_TEST = \"1\""),
        "{quiet:?}"
    );

    // ...and asked with a reply, the daemon refuses every one of them, on one connection
    // that then still runs a command.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ran = runtime.block_on(async {
        let connection = Connection::open(
            &ca,
            &team.alice,
            &[
                russh::kex::CURVE25519,
                russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            ],
        )
        .await;
        let mut channel = connection.session().await;
        channel.agent_forward(true).await.unwrap();
        assert!(!reply(&mut channel).await, "agent forwarding was granted");
        channel.set_env(true, "JITCA_TEST", "1").await.unwrap();
        assert!(!reply(&mut channel).await, "env was accepted");
        channel.request_subsystem(true, "sftp").await.unwrap();
        assert!(!reply(&mut channel).await, "a subsystem was started");
        channel
            .request_x11(
                true,
                false,
                "MIT-MAGIC-COOKIE-1",
                "00112233445566778899aabbccddeeff",
                0,
            )
            .await
            .unwrap();
        assert!(!reply(&mut channel).await, "X11 forwarding was granted");
        let forwarded = connection.remote_forward().await;
        assert!(
            matches!(forwarded, Err(russh::Error::RequestDenied)),
            "remote forwarding: {forwarded:?}"
        );
        exec(channel, "whoami").await
    });
    assert_eq!(ran.status, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("user     alice"), "{ran:?}");
}

#[test]
fn ml_kem_key_exchange_alone_is_enough_to_run_commands() {
    use crate::russh_client::{Connection, Negotiated, exec, handshake};
    use russh::kex;
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (whoami, ca_key) = runtime.block_on(async {
        // The client offers what it is told and nothing else: a method the daemon lacks fails.
        let dh_only: &[kex::Name] = &[kex::DH_G14_SHA256];
        assert!(
            handshake(&ca, dh_only).await.is_err(),
            "the client added methods"
        );

        let connection = Connection::open(
            &ca,
            &team.alice,
            &[
                kex::MLKEM768X25519_SHA256,
                kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            ],
        )
        .await;
        assert_eq!(
            connection.negotiated(),
            Negotiated {
                kex: "mlkem768x25519-sha256".into(),
                strict_kex: true,
            }
        );
        (
            exec(connection.session().await, "whoami").await,
            exec(connection.session().await, "ca-key").await,
        )
    });
    assert_eq!(whoami.status, Some(0), "{whoami:?}");
    assert!(whoami.stdout.contains("user     alice"), "{whoami:?}");
    assert_eq!(ca_key.status, Some(0), "{ca_key:?}");
    let on_disk = std::fs::read_to_string(ca.ca_pub()).unwrap();
    let key_of = |line: &str| {
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(key_of(&ca_key.stdout), key_of(&on_disk), "{ca_key:?}");
}
