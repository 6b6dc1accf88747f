//! The load: N OpenSSH clients, each running one command after another (over a fresh
//! connection each time, or over its own ControlMaster), for a fixed time or a fixed count;
//! with the latency of every command and the CPU of the server and of the clients.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::procfs;
use crate::servers::{self, Master, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new TCP connection, key exchange and authentication for every command.
    Fresh,
    /// Every command over the client's own ControlMaster connection.
    Reused,
}

/// When the clients stop.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Commands started before this time are run to the end; then each client stops.
    Time(Duration),
    /// This many commands in all.
    Count(usize),
}

/// What the commands of one run gave.
#[derive(Debug, Default)]
pub struct Samples {
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl Samples {
    pub fn ops(&self) -> usize {
        self.latencies.len()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    }
}

/// Runs `make(client)` commands from `clients` threads until `until`; `check` says whether a
/// command's output is what it should be (failures are counted, not timed).
pub fn drive(
    clients: usize,
    until: Until,
    make: &(dyn Fn(usize) -> Command + Sync),
    check: &(dyn Fn(&Output) -> Result<(), String> + Sync),
) -> Samples {
    let started = Instant::now();
    let left = AtomicUsize::new(match until {
        Until::Count(n) => n,
        Until::Time(_) => usize::MAX,
    });
    let deadline = match until {
        Until::Time(d) => started + d,
        Until::Count(_) => started + Duration::from_secs(24 * 3600),
    };
    let all = Mutex::new(Samples::default());
    std::thread::scope(|scope| {
        for client in 0..clients {
            let (all, left) = (&all, &left);
            scope.spawn(move || {
                let mut mine = Vec::new();
                let mut errors = Vec::new();
                while Instant::now() < deadline
                    && left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                {
                    let t0 = Instant::now();
                    let outcome = make(client)
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .output()
                        .map_err(|e| format!("spawn ssh: {e}"))
                        .and_then(|out| check(&out));
                    match outcome {
                        Ok(()) => mine.push(t0.elapsed()),
                        Err(e) => errors.push(e),
                    }
                }
                let mut all = all.lock().unwrap();
                all.latencies.extend(mine);
                all.errors += errors.len();
                if all.first_error.is_none() {
                    all.first_error = errors.into_iter().next();
                }
            });
        }
    });
    let mut samples = all.into_inner().unwrap();
    samples.elapsed = started.elapsed();
    samples
}

/// A certificate on stdout and exit status 0.
pub fn issued(out: &Output) -> Result<(), String> {
    if out.status.success() && out.stdout.starts_with(b"ssh-ed25519-cert-v01@openssh.com ") {
        Ok(())
    } else {
        Err(describe(out))
    }
}

/// A request id on stdout and exit status 0.
pub fn made(out: &Output) -> Result<(), String> {
    if out.status.success() && !out.stdout.trim_ascii().is_empty() {
        Ok(())
    } else {
        Err(describe(out))
    }
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
            .chars()
            .take(200)
            .collect::<String>(),
        String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(400)
            .collect::<String>()
    )
}

/// One cell of the table: a server, a mode, a number of clients.
#[derive(Debug)]
pub struct Cell {
    pub server: &'static str,
    pub mode: Mode,
    pub clients: usize,
    pub samples: Samples,
    /// CPU of the server's process tree during the run, ms.
    pub server_cpu_ms: f64,
    /// CPU of the OpenSSH clients (and their masters) during the run, ms.
    pub client_cpu_ms: f64,
    /// Whether both CPU readings were taken with the server's tree quiet.
    pub settled: bool,
}

impl Cell {
    pub fn rate(&self) -> f64 {
        self.samples.ops() as f64 / self.samples.elapsed.as_secs_f64()
    }
    pub fn server_ms_per_op(&self) -> f64 {
        self.server_cpu_ms / self.samples.ops().max(1) as f64
    }
    pub fn client_ms_per_op(&self) -> f64 {
        self.client_cpu_ms / self.samples.ops().max(1) as f64
    }
}

/// CPU of this process's reaped children (the finished `ssh` clients), in ticks.
pub fn reaped_children_ticks() -> u64 {
    procfs::stat(std::process::id()).map_or(0, |s| s.cutime + s.cstime)
}

/// Runs one cell: `clients` clients for `seconds`, each sending `REQUEST` with its public key on
/// stdin, and reads the server's and the clients' CPU before and after.
pub fn cell(
    target: &dyn Target,
    mode: Mode,
    clients: usize,
    seconds: f64,
    key: &Path,
    scratch: &Path,
) -> Result<Cell> {
    let key_pub = servers::pub_path(key);
    let masters = match mode {
        Mode::Fresh => Vec::new(),
        Mode::Reused => start_masters(target, key, scratch, clients, clients)?,
    };
    let make = |client: usize| {
        let mut cmd = match mode {
            Mode::Fresh => servers::fresh_command(target, key, servers::REQUEST),
            Mode::Reused => {
                servers::mux_command(target, &masters[client].control, servers::REQUEST)
            }
        };
        cmd.stdin(std::fs::File::open(&key_pub).expect("the client's public key"));
        cmd
    };
    // Warm up: each client once (a fresh connection: a couple of them), not counted.
    let warm = drive(clients, Until::Count(clients.max(2)), &make, &issued);
    if warm.errors > 0 {
        anyhow::bail!(
            "{} does not issue: {}",
            target.name(),
            warm.first_error.unwrap_or_default()
        );
    }
    let expected = 1 + masters.len() * target.processes_per_connection();
    let quiet = || procfs::settle(target.pid(), expected, Duration::from_secs(10));
    let client_ticks = |masters: &[Master]| {
        reaped_children_ticks()
            + masters
                .iter()
                .map(|m| procfs::tree_cpu_ticks(m.pid()))
                .sum::<u64>()
    };
    let settled_before = quiet();
    let (s0, c0) = (procfs::tree_cpu_ticks(target.pid()), client_ticks(&masters));
    let samples = drive(
        clients,
        Until::Time(Duration::from_secs_f64(seconds)),
        &make,
        &issued,
    );
    let settled_after = quiet();
    let (s1, c1) = (procfs::tree_cpu_ticks(target.pid()), client_ticks(&masters));
    drop(masters);
    Ok(Cell {
        server: target.name(),
        mode,
        clients,
        samples,
        server_cpu_ms: procfs::ticks_to_ms(s1.saturating_sub(s0)),
        client_cpu_ms: procfs::ticks_to_ms(c1.saturating_sub(c0)),
        settled: settled_before && settled_after,
    })
}

/// Starts `count` ControlMasters, at most `parallel` authenticating at once, and waits until
/// all have authenticated.
pub fn start_masters(
    target: &dyn Target,
    key: &Path,
    scratch: &Path,
    count: usize,
    parallel: usize,
) -> Result<Vec<Master>> {
    let mut masters: Vec<Master> = Vec::with_capacity(count);
    let tag = format!("{}-{}", target.port(), std::process::id());
    for batch in (0..count).collect::<Vec<_>>().chunks(parallel.max(1)) {
        let mut started = Vec::new();
        for &i in batch {
            let control = scratch.join(format!("m{tag}-{i}"));
            started.push(Master::start(target, key, control, false)?);
        }
        for mut m in started {
            m.wait_ready(Duration::from_secs(60))?;
            masters.push(m);
        }
    }
    Ok(masters)
}
