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

#[test]
fn a_flood_of_unauthenticated_connections_does_not_lock_out_engineers() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
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
        // ...and 200 from ten more addresses that trickle their version string.
        let mut trickling = Vec::new();
        for i in 0..200u32 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(format!("127.0.0.{}:0", 3 + i % 10).parse().unwrap())
                .unwrap();
            let mut stream = socket.connect(addr).await.unwrap();
            trickling.push(tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for byte in b"SSH-2.0-slowloris".iter().cycle().take(200) {
                    if stream.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }));
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
    eprintln!(
        "flood: {} attacker connections accepted by the kernel, 200 trickling; daemon RSS {before} KiB before, {during} KiB during; request took {took:?}",
        held.len()
    );
    assert!(
        took < Duration::from_secs(2),
        "an engineer waited {took:?} during the flood"
    );
    assert!(
        during < before + 64 * 1024,
        "memory grew from {before} KiB to {during} KiB"
    );
    for t in trickling {
        t.abort();
    }
    drop(held);
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

    // An authenticated connection that runs nothing is closed after idle_timeout...
    let idle = ssh_n(ca.port, &team.alice.key);
    let started = Instant::now();
    let status = idle.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the idle connection stayed"
    );
    assert_ne!(status.status.code(), Some(0));
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
    let agent = via_master(&["-A"], Some("whoami"));
    assert!(
        agent.stdout.contains("alice"),
        "agent forwarding refused, command ran: {agent:?}"
    );
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
