//! Resident memory of the real `jitca serve` process: idle, holding many pending requests,
//! and holding many idle authenticated connections; the shell CA's sshd tree for comparison.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::load::{self, Until};
use crate::procfs;
use crate::servers::{self, Jitca, ShellCa, Target};

#[derive(Debug, Default)]
pub struct Memory {
    pub idle_kib: u64,
    pub pending: usize,
    pub pending_seconds: f64,
    pub pending_kib: u64,
    pub pending_peak_kib: u64,
    pub idle_again_kib: u64,
    pub connections: usize,
    /// Sockets the daemon held with the connections open (the listener is one).
    pub sockets_held: usize,
    pub connections_kib: u64,
    pub sshd_idle_pss_kib: u64,
    pub sshd_connections_pss_kib: u64,
    pub sshd_connections_processes: usize,
}

/// How many clients make the pending requests, each over its own ControlMaster.
const PENDING_CLIENTS: usize = 8;
/// How many masters authenticate at once while the idle connections open.
const CONNECT_PARALLEL: usize = 16;

fn kib(pid: u32) -> u64 {
    procfs::rss_kib(pid).unwrap_or(0)
}

fn tree_pss_kib(root: u32) -> (u64, usize) {
    let tree = procfs::tree(root);
    (
        tree.iter()
            .map(|s| procfs::pss_kib(s.pid).unwrap_or(0))
            .sum(),
        tree.len(),
    )
}

pub fn measure(
    jitca: &Path,
    key: &Path,
    scratch: &Path,
    pending: usize,
    connections: usize,
    settle: Duration,
) -> Result<Memory> {
    let key_pub = servers::pub_path(key);
    let mut m = Memory {
        pending,
        connections,
        ..Memory::default()
    };

    // Idle, then with `pending` requests waiting for an approval nobody gives.
    let ca = Jitca::start(jitca, &key_pub)?;
    std::thread::sleep(settle);
    m.idle_kib = kib(ca.pid());
    eprintln!(
        "memory: jitca idle {} KiB; making {pending} pending requests",
        m.idle_kib
    );
    let masters = load::start_masters(&ca, key, scratch, PENDING_CLIENTS, PENDING_CLIENTS)?;
    let started = Instant::now();
    let made = load::drive(
        PENDING_CLIENTS,
        Until::Count(pending),
        &|client| {
            let mut cmd = servers::mux_command(&ca, &masters[client].control, servers::PENDING);
            cmd.stdin(std::fs::File::open(&key_pub).expect("public key"));
            cmd
        },
        &load::made,
    );
    m.pending_seconds = started.elapsed().as_secs_f64();
    drop(masters);
    if made.errors > 0 || made.ops() != pending {
        bail!(
            "made {} of {pending} pending requests: {}",
            made.ops(),
            made.first_error.unwrap_or_default()
        );
    }
    // The daemon's sweeper looks at the pending requests every 5 s: let it run.
    std::thread::sleep(settle);
    m.pending_kib = kib(ca.pid());
    m.pending_peak_kib = procfs::hwm_kib(ca.pid()).unwrap_or(0);
    eprintln!(
        "memory: jitca with {pending} pending: {} KiB (peak {} KiB), made in {:.1} s",
        m.pending_kib, m.pending_peak_kib, m.pending_seconds
    );
    drop(ca);

    // A fresh daemon, then `connections` idle authenticated connections (ssh -M -N).
    let ca = Jitca::start(jitca, &key_pub)?;
    std::thread::sleep(settle);
    m.idle_again_kib = kib(ca.pid());
    let masters = load::start_masters(&ca, key, scratch, connections, CONNECT_PARALLEL)?;
    std::thread::sleep(settle);
    m.sockets_held = procfs::sockets(ca.pid());
    m.connections_kib = kib(ca.pid());
    eprintln!(
        "memory: jitca with {connections} idle connections: {} KiB ({} sockets)",
        m.connections_kib, m.sockets_held
    );
    drop(masters);
    drop(ca);

    // The shell CA's sshd: the same connections, its whole tree's proportional memory.
    let sshd = ShellCa::start(&key_pub)?;
    m.sshd_idle_pss_kib = tree_pss_kib(sshd.pid()).0;
    let masters = load::start_masters(&sshd, key, scratch, connections, CONNECT_PARALLEL)?;
    std::thread::sleep(settle);
    (m.sshd_connections_pss_kib, m.sshd_connections_processes) = tree_pss_kib(sshd.pid());
    eprintln!(
        "memory: sshd with {connections} idle connections: {} KiB PSS over {} processes",
        m.sshd_connections_pss_kib, m.sshd_connections_processes
    );
    drop(masters);
    Ok(m)
}
