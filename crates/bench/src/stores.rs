//! One daemon on sled, one daemon on PostgreSQL and two daemons on one PostgreSQL database,
//! side by side in one run (`jitca-bench --only stores`, run by `scripts/bench-ha`): issuance
//! with real OpenSSH clients, the same `request lab ...` (approvals: 0) as the comparison with
//! the shell CA, over reused (ControlMaster) and fresh connections.
//!
//! Each PostgreSQL setup has a throwaway cluster of its own (`jitca-pgtest`) set up as a
//! deployment would be: `fsync`, `synchronous_commit` and `full_page_writes` on (the test
//! clusters turn them off; here `ALTER SYSTEM` turns them back on and the server restarts),
//! so the CPU of one setup's `postgres` processes is its own. The two daemons share one folder
//! made by `jitca init` (so the CA key, host key, audit key and mfa.key), each with its own
//! config that differs only in `listen:`; client `i` talks to daemon `i mod 2`.
//!
//! Measured per cell: issuances/s, p50/p99 latency, errors; CPU of every `jitca serve` of the
//! setup and of its cluster's processes (the postmaster's tree, minus the sampler's own
//! backend), of the clients, and of the whole machine from /proc/stat (busy and iowait); and
//! for PostgreSQL, what the database's connections were doing (`pg_stat_activity` every
//! 50 ms: running, waiting for the audit head's row lock, for the lock NOTIFY takes at commit,
//! for the WAL flush, for jitca inside a transaction), the transaction ids and the WAL bytes
//! each issuance took. Then every setup idle, side by side, for a while (its upkeep: with a
//! shared store each daemon reads the requests again every 30 s to recount its gauges).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use jitca_pgtest::Cluster;
use tempfile::TempDir;

use crate::load::{self, Mode, Samples, Until};
use crate::procfs;
use crate::servers::{self, Daemon, Master, Target};

/// How often the database's connections are looked at during a cell.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct StoresOptions {
    /// The `jitca` binary (a release build for real figures).
    pub jitca: PathBuf,
    /// Seconds each cell (setup, mode, client count) runs.
    pub seconds: f64,
    /// Client counts.
    pub clients: Vec<usize>,
    /// Connection modes, in order.
    pub modes: Vec<Mode>,
    /// Seconds every setup is watched idle after the load (0: not at all).
    pub idle_seconds: f64,
}

/// What serves: the store and how many daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// One daemon, its sled store in `data_dir`.
    Sled,
    /// One daemon on a PostgreSQL database.
    Postgres,
    /// Two daemons on one PostgreSQL database, the clients split evenly between them.
    TwoPostgres,
}

impl Setup {
    pub const ALL: [Setup; 3] = [Setup::Sled, Setup::Postgres, Setup::TwoPostgres];

    pub fn store(self) -> &'static str {
        match self {
            Setup::Sled => "sled",
            Setup::Postgres | Setup::TwoPostgres => "PostgreSQL",
        }
    }

    pub fn daemons(self) -> usize {
        match self {
            Setup::TwoPostgres => 2,
            _ => 1,
        }
    }

    pub fn label(self) -> String {
        format!(
            "{} daemon{} on {}",
            self.daemons(),
            if self.daemons() == 1 { "" } else { "s" },
            self.store()
        )
    }
}

/// The counts of the database's connections in each state, summed over the samples.
#[derive(Debug, Default, Clone)]
pub struct Waits {
    pub samples: u64,
    /// Summed over the samples, in the order of [`WAIT_NAMES`].
    pub sums: [u64; WAITS],
}

const WAITS: usize = 8;

/// What the columns of [`Waits`] count: the client backends of the setup's database (the
/// sampler left out), by the statement they run or last ran (`pg_stat_activity.query`) and
/// what they wait for. An issuance's write is one transaction: `BEGIN`, the request's
/// `INSERT`, `SELECT head FROM jitca_audit_head FOR UPDATE` (the head row lock, held to the
/// end), the audit lines' `INSERT`, the head's `UPDATE`, `pg_notify`, `COMMIT` (which takes
/// NOTIFY's commit lock and flushes the WAL before the row lock is let go).
pub const WAIT_NAMES: [&str; WAITS] = [
    "head lock held: waiting for jitca's next statement",
    "held: running",
    "held: WAL flush at commit",
    "held: waiting for NOTIFY's commit lock",
    "waiting for the head lock",
    "in a transaction before the lock (waiting for jitca)",
    "other statements running (serials, reads)",
    "idle",
];

const WAITS_SQL: &str = "WITH a AS (SELECT state, wait_event_type AS wt, \
     coalesce(wait_event, '') AS we, \
     CASE WHEN query LIKE 'SELECT head FROM jitca_audit_head FOR UPDATE%' THEN 'lock' \
          WHEN query LIKE 'INSERT INTO jitca_audit %' OR query LIKE 'UPDATE jitca_audit_head%' \
            OR query LIKE 'SELECT pg_notify%' THEN 'held' \
          WHEN query = 'COMMIT' THEN 'commit' ELSE 'other' END AS q \
     FROM pg_stat_activity \
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
     AND datname = current_database()) \
     SELECT \
     count(*) FILTER (WHERE state = 'idle in transaction' AND q IN ('lock', 'held')), \
     count(*) FILTER (WHERE state = 'active' AND q IN ('lock', 'held', 'commit') \
         AND wt IS DISTINCT FROM 'Lock' AND we NOT IN ('WALSync', 'WALWrite')), \
     count(*) FILTER (WHERE state = 'active' AND q = 'commit' AND we IN ('WALSync', 'WALWrite')), \
     count(*) FILTER (WHERE state = 'active' AND q = 'commit' AND wt = 'Lock'), \
     count(*) FILTER (WHERE state = 'active' AND q IN ('lock', 'held') AND wt = 'Lock'), \
     count(*) FILTER (WHERE state = 'idle in transaction' AND q NOT IN ('lock', 'held')), \
     count(*) FILTER (WHERE state = 'active' AND q = 'other'), \
     count(*) FILTER (WHERE state = 'idle') \
     FROM a";

impl Waits {
    pub fn mean(&self, i: usize) -> f64 {
        self.sums[i] as f64 / self.samples.max(1) as f64
    }

    /// The mean number holding the head lock: the share of the time it was held (it is one
    /// row, locked by one transaction at a time).
    pub fn held(&self) -> f64 {
        (0..4).map(|i| self.mean(i)).sum()
    }
}

/// What the database did during a cell.
#[derive(Debug, Default, Clone)]
pub struct DbFigures {
    /// Transaction ids handed out (transactions that wrote).
    pub xids: u64,
    /// WAL written, bytes.
    pub wal_bytes: u64,
    pub waits: Waits,
}

/// One cell: a setup, a mode, a number of clients.
#[derive(Debug)]
pub struct StoreCell {
    pub setup: Setup,
    pub mode: Mode,
    pub clients: usize,
    pub samples: Samples,
    /// CPU of the setup's `jitca serve` processes, ms.
    pub jitca_cpu_ms: f64,
    /// CPU of the setup's PostgreSQL processes (without the sampler's backend), ms.
    pub postgres_cpu_ms: f64,
    /// CPU of the OpenSSH clients and their masters, ms.
    pub client_cpu_ms: f64,
    /// The whole machine during the cell, as fractions of all its cores: busy, and idle
    /// waiting for IO.
    pub busy: f64,
    pub iowait: f64,
    /// Whether the daemons were quiet at both CPU readings.
    pub settled: bool,
    pub db: Option<DbFigures>,
}

impl StoreCell {
    pub fn rate(&self) -> f64 {
        self.samples.ops() as f64 / self.samples.elapsed.as_secs_f64()
    }
    fn per_op(&self, ms: f64) -> f64 {
        ms / self.samples.ops().max(1) as f64
    }
    pub fn jitca_ms_per_op(&self) -> f64 {
        self.per_op(self.jitca_cpu_ms)
    }
    pub fn postgres_ms_per_op(&self) -> f64 {
        self.per_op(self.postgres_cpu_ms)
    }
    pub fn server_ms_per_op(&self) -> f64 {
        self.per_op(self.jitca_cpu_ms + self.postgres_cpu_ms)
    }
    pub fn client_ms_per_op(&self) -> f64 {
        self.per_op(self.client_cpu_ms)
    }
}

/// One setup idle after the load.
#[derive(Debug)]
pub struct Idle {
    pub setup: Setup,
    pub seconds: f64,
    /// Requests in the store.
    pub requests: u64,
    /// The requests' table with its indexes and TOAST, bytes (PostgreSQL).
    pub table_bytes: Option<u64>,
    pub jitca_cpu_ms: f64,
    pub postgres_cpu_ms: f64,
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct StoresReport {
    pub cells: Vec<StoreCell>,
    pub idle: Vec<Idle>,
    /// The PostgreSQL server's version and settings, as `SHOW` gives them.
    pub postgres: String,
    pub cpus: usize,
    pub load_before: String,
    pub load_after: String,
}

/// A throwaway cluster set up for durability as a deployment would be, one database in it,
/// and the sampler's connection.
struct Database {
    // Fields drop in order: the sampler's connection before the cluster.
    sampler: Sampler,
    // Held for its drop: the server stops and its folder goes.
    _cluster: Cluster,
    url: String,
    /// The postmaster: every server process descends from it.
    postmaster: u32,
    settings: String,
}

impl Database {
    fn start() -> Result<Self> {
        let cluster = Cluster::start();
        // jitca-pgtest turns these off for the tests (its own include file);
        // postgresql.auto.conf is read after it.
        cluster.psql(
            "postgres",
            "ALTER SYSTEM SET fsync = on;\n\
             ALTER SYSTEM SET synchronous_commit = on;\n\
             ALTER SYSTEM SET full_page_writes = on;\n",
        );
        cluster.restart();
        let settings = cluster
            .psql(
                "postgres",
                "SELECT current_setting('server_version'), current_setting('fsync'), \
                 current_setting('synchronous_commit'), current_setting('full_page_writes'), \
                 current_setting('wal_sync_method'), current_setting('shared_buffers'), \
                 current_setting('max_wal_size'), current_setting('checkpoint_timeout');",
            )
            .trim()
            .to_string();
        let f: Vec<&str> = settings.split('|').collect();
        ensure!(
            f.len() == 8 && f[1..4] == ["on", "on", "on"],
            "PostgreSQL did not take fsync, synchronous_commit and full_page_writes on: {settings}"
        );
        let settings = format!(
            "PostgreSQL {}: fsync={}, synchronous_commit={}, full_page_writes={}, \
             wal_sync_method={}, shared_buffers={}, max_wal_size={}, checkpoint_timeout={}",
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]
        );
        let url = cluster.fresh_database();
        let name = url.rsplit('/').next().unwrap_or_default().to_string();
        let pid_file = cluster.dir().join("data").join("postmaster.pid");
        let postmaster = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("read {}", pid_file.display()))?
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("no pid in {}", pid_file.display()))?;
        let sampler = Sampler::start(&cluster, &name)?;
        Ok(Database {
            sampler,
            _cluster: cluster,
            url,
            postmaster,
            settings,
        })
    }

    /// CPU of the server's processes so far, without the sampler's backend, ticks.
    fn cpu_ticks(&self) -> u64 {
        let all = procfs::tree_cpu_ticks(self.postmaster);
        let sampler = procfs::stat(self.sampler.backend).map_or(0, |s| s.with_reaped());
        all.saturating_sub(sampler)
    }

    /// Waits (at most 2 s) until no server process is a zombie: a connection that ended is
    /// reaped, its CPU in the postmaster's.
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while procfs::tree(self.postmaster).iter().any(|s| s.state == 'Z')
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One `psql` session kept open, a query at a time (psql answers each at once).
struct Sampler {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The session's backend process.
    backend: u32,
}

impl Sampler {
    fn start(cluster: &Cluster, db: &str) -> Result<Self> {
        let mut cmd = cluster.psql_command();
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &cluster.port().to_string()])
            .args(["-U", "postgres", "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("start psql")?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut sampler = Sampler {
            child,
            stdin,
            stdout,
            backend: 0,
        };
        sampler.backend = sampler
            .query("SELECT pg_backend_pid()")?
            .parse()
            .context("pg_backend_pid()")?;
        Ok(sampler)
    }

    /// Runs one query that gives one row; its columns as psql prints them (`a|b|c`).
    fn query(&mut self, sql: &str) -> Result<String> {
        writeln!(self.stdin, "{sql};")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the sampler's psql ended (its error is above)");
        }
        Ok(line.trim_end().to_string())
    }

    fn numbers(&mut self, sql: &str) -> Result<Vec<u64>> {
        let row = self.query(sql)?;
        row.split('|')
            .map(|v| {
                v.parse::<u64>()
                    .with_context(|| format!("{v:?} in {row:?}"))
            })
            .collect()
    }

    /// The next transaction id and the WAL insert position (bytes), without taking an id.
    fn position(&mut self) -> Result<(u64, u64)> {
        let v = self.numbers(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text, \
             pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint",
        )?;
        Ok((v[0], v[1]))
    }

    fn waits(&mut self) -> Result<[u64; WAITS]> {
        let v = self.numbers(WAITS_SQL)?;
        v.try_into()
            .map_err(|v: Vec<u64>| anyhow::anyhow!("{} columns from the waits query", v.len()))
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A setup running: its daemons, their folder and, for PostgreSQL, the database.
struct Running {
    setup: Setup,
    // Fields drop in order: the daemons before their folder and their database.
    daemons: Vec<Daemon>,
    _folder: TempDir,
    database: Option<Database>,
    /// Certificates issued so far (the requests it stores).
    issued: u64,
}

impl Running {
    fn start(setup: Setup, jitca: &Path, user_pub: &Path) -> Result<Self> {
        let database = match setup {
            Setup::Sled => None,
            _ => Some(Database::start()?),
        };
        let folder = servers::ca_folder(jitca)?;
        let url = database.as_ref().map(|d| d.url.as_str());
        let mut daemons = Vec::new();
        for name in ["a", "b"].into_iter().take(setup.daemons()) {
            // One at a time: the first makes the schema.
            daemons.push(
                Daemon::start(jitca, folder.path(), name, user_pub, url)
                    .with_context(|| format!("start {} ({name})", setup.label()))?,
            );
        }
        Ok(Running {
            setup,
            daemons,
            _folder: folder,
            database,
            issued: 0,
        })
    }

    fn jitca_ticks(&self) -> u64 {
        self.daemons
            .iter()
            .map(|d| procfs::tree_cpu_ticks(d.pid()))
            .sum()
    }

    /// Waits until every daemon is one process again and the server has reaped what ended.
    fn settle(&self) -> bool {
        let mut quiet = true;
        for d in &self.daemons {
            quiet &= procfs::settle(d.pid(), 1, Duration::from_secs(10));
        }
        if let Some(db) = &self.database {
            db.settle();
        }
        quiet
    }
}

/// Reads /proc/stat's first line: (busy, iowait, total) jiffies of all cores.
fn machine_cpu() -> (u64, u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    if v.len() < 8 {
        return (0, 0, 0);
    }
    // user nice system idle iowait irq softirq steal
    let total: u64 = v.iter().sum();
    (total - v[3] - v[4], v[4], total)
}

/// Runs one cell against `run`'s daemons.
fn cell(
    run: &mut Running,
    mode: Mode,
    clients: usize,
    seconds: f64,
    key: &Path,
    scratch: &Path,
) -> Result<StoreCell> {
    let key_pub = servers::pub_path(key);
    let targets: Vec<&dyn Target> = run.daemons.iter().map(|d| d as &dyn Target).collect();
    let target_of = |client: usize| targets[client % targets.len()];
    let mut masters: Vec<Master> = Vec::new();
    if mode == Mode::Reused {
        for client in 0..clients {
            let t = target_of(client);
            let control = scratch.join(format!("s{}-{client}", t.port()));
            masters.push(Master::start(t, key, control, false)?);
        }
        for m in &mut masters {
            m.wait_ready(Duration::from_secs(60))?;
        }
    }
    let make = |client: usize| {
        let t = target_of(client);
        let mut cmd = match mode {
            Mode::Fresh => servers::fresh_command(t, key, servers::REQUEST),
            Mode::Reused => servers::mux_command(t, &masters[client].control, servers::REQUEST),
        };
        cmd.stdin(std::fs::File::open(&key_pub).expect("the client's public key"));
        cmd
    };
    let warm = load::drive(clients, Until::Count(clients.max(2)), &make, &load::issued);
    if warm.errors > 0 {
        bail!(
            "{} does not issue: {}",
            run.setup.label(),
            warm.first_error.unwrap_or_default()
        );
    }
    let client_ticks = |masters: &[Master]| {
        load::reaped_children_ticks()
            + masters
                .iter()
                .map(|m| procfs::tree_cpu_ticks(m.pid()))
                .sum::<u64>()
    };

    let settled_before = run.settle();
    let position_before = match &mut run.database {
        Some(db) => Some(db.sampler.position()?),
        None => None,
    };
    let (j0, p0, c0, m0) = (
        run.jitca_ticks(),
        run.database.as_ref().map_or(0, Database::cpu_ticks),
        client_ticks(&masters),
        machine_cpu(),
    );
    let stop = AtomicBool::new(false);
    let mut waits = Waits::default();
    let samples = std::thread::scope(|scope| -> Result<Samples> {
        let sampling = run.database.as_mut().map(|db| {
            let (stop, waits) = (&stop, &mut waits);
            scope.spawn(move || -> Result<()> {
                while !stop.load(Ordering::SeqCst) {
                    let t0 = Instant::now();
                    let row = db.sampler.waits()?;
                    waits.samples += 1;
                    for (sum, v) in waits.sums.iter_mut().zip(row) {
                        *sum += v;
                    }
                    std::thread::sleep(SAMPLE_EVERY.saturating_sub(t0.elapsed()));
                }
                Ok(())
            })
        });
        let samples = load::drive(
            clients,
            Until::Time(Duration::from_secs_f64(seconds)),
            &make,
            &load::issued,
        );
        stop.store(true, Ordering::SeqCst);
        if let Some(handle) = sampling {
            handle.join().expect("the sampler thread")?;
        }
        Ok(samples)
    })?;
    let m1 = machine_cpu();
    let settled_after = run.settle();
    let (j1, p1, c1) = (
        run.jitca_ticks(),
        run.database.as_ref().map_or(0, Database::cpu_ticks),
        client_ticks(&masters),
    );
    let db = match (&mut run.database, position_before) {
        (Some(db), Some((x0, w0))) => {
            let (x1, w1) = db.sampler.position()?;
            Some(DbFigures {
                xids: x1.saturating_sub(x0),
                wal_bytes: w1.saturating_sub(w0),
                waits,
            })
        }
        _ => None,
    };
    drop(masters);
    run.issued += (warm.ops() + samples.ops()) as u64;
    let total = (m1.2.saturating_sub(m0.2)).max(1) as f64;
    Ok(StoreCell {
        setup: run.setup,
        mode,
        clients,
        jitca_cpu_ms: procfs::ticks_to_ms(j1.saturating_sub(j0)),
        postgres_cpu_ms: procfs::ticks_to_ms(p1.saturating_sub(p0)),
        client_cpu_ms: procfs::ticks_to_ms(c1.saturating_sub(c0)),
        busy: m1.0.saturating_sub(m0.0) as f64 / total,
        iowait: m1.1.saturating_sub(m0.1) as f64 / total,
        settled: settled_before && settled_after,
        samples,
        db,
    })
}

/// Runs the whole comparison, printing progress on stderr, and writes the report (markdown)
/// to `out`.
pub fn run(options: &StoresOptions, out: &mut dyn Write) -> Result<StoresReport> {
    ensure!(
        options.jitca.exists(),
        "no jitca binary at {} (cargo build --release --bin jitca)",
        options.jitca.display()
    );
    let scratch = tempfile::Builder::new()
        .prefix("jitca-bench-ha.")
        .tempdir()?;
    let key = scratch.path().join("client_ed25519");
    servers::keygen(&key, "bench-client")?;
    let key_pub = servers::pub_path(&key);
    let mut report = StoresReport {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_before: crate::loadavg(),
        ..StoresReport::default()
    };
    let mut running = Vec::new();
    for setup in Setup::ALL {
        eprintln!("stores: starting {}", setup.label());
        running.push(Running::start(setup, &options.jitca, &key_pub)?);
    }
    if let Some(db) = running.iter().find_map(|r| r.database.as_ref()) {
        report.postgres = db.settings.clone();
    }
    for &mode in &options.modes {
        for &clients in &options.clients {
            for run in running.iter_mut() {
                eprintln!(
                    "stores: {}, {mode:?} connections, {clients} clients, {} s",
                    run.setup.label(),
                    options.seconds
                );
                let c = cell(run, mode, clients, options.seconds, &key, scratch.path())?;
                eprintln!(
                    "  {} ops, {:.1}/s, p50 {:.1} ms, p99 {:.1} ms, jitca {:.2} + postgres {:.2} ms/op, \
                     clients {:.2} ms/op, machine {:.0}% busy {:.0}% iowait, {} errors{}",
                    c.samples.ops(),
                    c.rate(),
                    crate::ms(c.samples.percentile(0.5)),
                    crate::ms(c.samples.percentile(0.99)),
                    c.jitca_ms_per_op(),
                    c.postgres_ms_per_op(),
                    c.client_ms_per_op(),
                    c.busy * 100.0,
                    c.iowait * 100.0,
                    c.samples.errors,
                    c.samples
                        .first_error
                        .as_deref()
                        .map(|e| format!(" (first: {e})"))
                        .unwrap_or_default()
                );
                report.cells.push(c);
            }
        }
    }
    if options.idle_seconds > 0.0 {
        eprintln!("stores: every setup idle for {} s", options.idle_seconds);
        let mut requests = Vec::new();
        for run in running.iter_mut() {
            requests.push(match &mut run.database {
                Some(db) => {
                    let v = db.sampler.numbers(
                        "SELECT count(*), pg_total_relation_size('jitca_requests') \
                         FROM jitca_requests",
                    )?;
                    (v[0], Some(v[1]))
                }
                None => (run.issued, None),
            });
        }
        let before: Vec<(u64, u64)> = running
            .iter()
            .map(|r| {
                (
                    r.jitca_ticks(),
                    r.database.as_ref().map_or(0, Database::cpu_ticks),
                )
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(options.idle_seconds));
        for ((run, (j0, p0)), (requests, table_bytes)) in running.iter().zip(before).zip(requests) {
            report.idle.push(Idle {
                setup: run.setup,
                seconds: options.idle_seconds,
                requests,
                table_bytes,
                jitca_cpu_ms: procfs::ticks_to_ms(run.jitca_ticks().saturating_sub(j0)),
                postgres_cpu_ms: procfs::ticks_to_ms(
                    run.database
                        .as_ref()
                        .map_or(0, Database::cpu_ticks)
                        .saturating_sub(p0),
                ),
            });
        }
    }
    for run in &running {
        for d in &run.daemons {
            let log = std::fs::read_to_string(&d.log).unwrap_or_default();
            let bad = log
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .count();
            if bad > 0 {
                eprintln!(
                    "stores: {} logged {bad} warnings or errors ({}), the first: {}",
                    run.setup.label(),
                    d.log.display(),
                    log.lines()
                        .find(|l| l.contains("ERROR") || l.contains("WARN"))
                        .unwrap_or_default()
                );
            }
        }
    }
    drop(running);
    report.load_after = crate::loadavg();
    out.write_all(render(options, &report).as_bytes())?;
    Ok(report)
}

/// The report as markdown.
pub fn render(options: &StoresOptions, r: &StoresReport) -> String {
    let mut s = String::new();
    let ms = crate::ms;
    for mode in &options.modes {
        let cells: Vec<&StoreCell> = r.cells.iter().filter(|c| c.mode == *mode).collect();
        if cells.is_empty() {
            continue;
        }
        let title = match mode {
            Mode::Reused => "Issuance over a reused connection (ControlMaster)",
            Mode::Fresh => "Issuance over fresh connections",
        };
        let _ = writeln!(
            s,
            "### {title}: sled, PostgreSQL, two daemons on PostgreSQL\n\n\
             `{}` (approvals: 0) with the key on stdin, {} s a cell; with two daemons client i \
             talks to daemon i mod 2. CPU from /proc; server CPU is every `jitca serve` of the \
             setup plus its PostgreSQL cluster's processes; machine busy and iowait are the \
             share of all {} cores (clients, daemons and database share them)\n",
            servers::REQUEST,
            options.seconds,
            r.cpus
        );
        s.push_str(
            "| setup | clients | issuances/s | p50 ms | p99 ms | errors | jitca CPU ms/issuance | \
             postgres CPU ms/issuance | server CPU ms/issuance | client CPU ms/issuance | \
             machine busy | iowait |\n",
        );
        s.push_str("|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for c in &cells {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {} | {:.2} | {:.2} | {:.0}% | {:.0}% |",
                c.setup.label(),
                c.clients,
                c.rate(),
                ms(c.samples.percentile(0.5)),
                ms(c.samples.percentile(0.99)),
                if c.settled {
                    c.samples.errors.to_string()
                } else {
                    format!("{} (CPU read while busy)", c.samples.errors)
                },
                c.jitca_ms_per_op(),
                if c.db.is_some() {
                    format!("{:.2}", c.postgres_ms_per_op())
                } else {
                    "n/a".into()
                },
                c.server_ms_per_op(),
                c.client_ms_per_op(),
                c.busy * 100.0,
                c.iowait * 100.0,
            );
        }
        s.push('\n');
    }
    let db_cells: Vec<&StoreCell> = r.cells.iter().filter(|c| c.db.is_some()).collect();
    if !db_cells.is_empty() {
        let _ = writeln!(
            s,
            "### The database during the load\n\n\
             The setup's database's connections (`pg_stat_activity`: client backends, the \
             sampler left out) every {} ms, as the mean number in each state. An issuance's \
             write is one transaction: `BEGIN`, the request's `INSERT`, `SELECT head FROM \
             jitca_audit_head FOR UPDATE` (the audit chain's head row: one transaction at a \
             time holds it, to its end), the audit lines' `INSERT`, the head's `UPDATE`, \
             `pg_notify`, `COMMIT` (NOTIFY's commit lock, then the WAL flush, then the row lock \
             is let go). Held: the mean number of connections in the four held states, that is \
             the share of the time the head lock was held (pg_stat_activity is read one \
             connection after another, so the end of one commit and the start of the next \
             transaction can both be seen: it can pass 1 a little when the lock is never \
             free), and per issuance (held / issuances per second). Then the transaction ids handed out \
             (transactions that wrote) and the WAL written per issuance\n",
            SAMPLE_EVERY.as_millis()
        );
        s.push_str(
            "| setup | mode | clients | issuances/s | head lock held | ms held per issuance |",
        );
        for name in WAIT_NAMES {
            let _ = write!(s, " {name} |");
        }
        s.push_str(" xids/issuance | WAL bytes/issuance |\n|:---|:---|---:|---:|---:|---:|");
        for _ in WAIT_NAMES {
            s.push_str("---:|");
        }
        s.push_str("---:|---:|\n");
        for c in db_cells {
            let db = c.db.as_ref().expect("filtered");
            let _ = write!(
                s,
                "| {} | {} | {} | {:.1} | {:.2} | {:.2} |",
                c.setup.label(),
                match c.mode {
                    Mode::Reused => "reused",
                    Mode::Fresh => "fresh",
                },
                c.clients,
                c.rate(),
                db.waits.held(),
                db.waits.held() * 1000.0 / c.rate().max(f64::MIN_POSITIVE),
            );
            for i in 0..WAIT_NAMES.len() {
                let _ = write!(s, " {:.2} |", db.waits.mean(i));
            }
            let ops = c.samples.ops().max(1) as f64;
            let _ = writeln!(
                s,
                " {:.2} | {:.0} |",
                db.xids as f64 / ops,
                db.wal_bytes as f64 / ops
            );
        }
        s.push('\n');
    }
    if !r.idle.is_empty() {
        let _ = writeln!(
            s,
            "### Idle after the load\n\n\
             Every setup idle at once for {} s, CPU per second (a shared store's daemons read \
             every request again every 30 s to recount their gauges)\n\n\
             | setup | requests stored | requests' table | jitca CPU ms/s | postgres CPU ms/s |\n\
             |:---|---:|---:|---:|---:|",
            r.idle.first().map_or(0.0, |i| i.seconds)
        );
        for i in &r.idle {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {} |",
                i.setup.label(),
                crate::count(i.requests as f64),
                i.table_bytes
                    .map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
                i.jitca_cpu_ms / i.seconds,
                if i.setup == Setup::Sled {
                    "n/a".to_string()
                } else {
                    format!("{:.1}", i.postgres_cpu_ms / i.seconds)
                }
            );
        }
        s.push('\n');
    }
    if !r.postgres.is_empty() {
        let _ = writeln!(s, "{}.\n", r.postgres);
    }
    let _ = writeln!(
        s,
        "Load average before and after the run: {} / {}.",
        r.load_before, r.load_after
    );
    s
}
