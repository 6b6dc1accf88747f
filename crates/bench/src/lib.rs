//! The benchmark harness: jitca against the shell-script CA people build by hand (a real
//! `sshd` whose forced command signs with `ssh-keygen -s`), side by side in one run, with real
//! OpenSSH clients. It reports issuance over fresh connections and over reused (ControlMaster)
//! connections at several client counts, in-process signing against the machine's raw ed25519
//! rate, and the daemon's resident memory; then checks the goals of docs/benchmarks.md.
//!
//! Needs root (sshd, and the shell CA's account), `ssh`, `ssh-keygen`, `/usr/sbin/sshd` and,
//! for the raw signature rate, `openssl`. `scripts/bench` builds and runs it (and the audit
//! query benchmark) and prints the tables.
//!
//! The part `stores` ([`stores`], run by `scripts/bench-ha`) is another comparison: one daemon
//! on sled, one on PostgreSQL and two on one PostgreSQL database.

pub mod load;
pub mod memory;
pub mod procfs;
pub mod servers;
pub mod signing;
pub mod stores;

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use load::{Cell, Mode};
use servers::{Jitca, ShellCa};

/// Which parts to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Fresh,
    Reused,
    Signing,
    Memory,
    /// One daemon on sled, one on PostgreSQL, two on PostgreSQL ([`stores`]); only when named.
    Stores,
}

impl std::str::FromStr for Part {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fresh" => Ok(Part::Fresh),
            "reused" => Ok(Part::Reused),
            "signing" => Ok(Part::Signing),
            "memory" => Ok(Part::Memory),
            "stores" => Ok(Part::Stores),
            _ => Err(format!(
                "unknown part {s:?}: fresh, reused, signing, memory or stores"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The `jitca` binary to serve with (a release build for real figures).
    pub jitca: PathBuf,
    /// Seconds each cell (server, mode, client count) runs.
    pub seconds: f64,
    /// Client counts.
    pub clients: Vec<usize>,
    /// Pending requests for the memory figure.
    pub pending: usize,
    /// Idle authenticated connections for the memory figure.
    pub connections: usize,
    /// Seconds of in-process signing.
    pub sign_seconds: f64,
    /// `openssl speed -seconds N`.
    pub openssl_seconds: u32,
    /// Seconds the memory part lets the daemon settle before reading its memory (at least one
    /// pass of its 5-second sweeper, which reads the pending requests).
    pub settle_seconds: f64,
    pub parts: Vec<Part>,
}

impl Options {
    fn runs(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub cells: Vec<Cell>,
    pub certificates_per_second: Option<f64>,
    pub openssl_signs_per_second: Option<f64>,
    pub memory: Option<memory::Memory>,
    pub cpus: usize,
    pub load_before: String,
    pub load_after: String,
}

/// Runs the parts `options` names, printing progress on stderr, and writes the report (markdown
/// tables, then the goals) to `out`.
pub fn run(options: &Options, out: &mut dyn Write) -> Result<Report> {
    anyhow::ensure!(
        options.jitca.exists(),
        "no jitca binary at {} (cargo build --release --bin jitca)",
        options.jitca.display()
    );
    let scratch = tempfile::Builder::new().prefix("jitca-bench.").tempdir()?;
    let key = scratch.path().join("client_ed25519");
    servers::keygen(&key, "bench-client")?;
    let mut report = Report {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_before: loadavg(),
        ..Report::default()
    };

    if options.runs(Part::Signing) {
        eprintln!(
            "signing: CertAuthority::sign for {} s",
            options.sign_seconds
        );
        report.certificates_per_second =
            Some(signing::certificates_per_second(options.sign_seconds)?);
        eprintln!(
            "signing: openssl speed -seconds {} ed25519",
            options.openssl_seconds
        );
        report.openssl_signs_per_second = signing::openssl_ed25519_signs(options.openssl_seconds)?;
    }

    let modes: Vec<Mode> = [(Part::Fresh, Mode::Fresh), (Part::Reused, Mode::Reused)]
        .into_iter()
        .filter(|(p, _)| options.runs(*p))
        .map(|(_, m)| m)
        .collect();
    if !modes.is_empty() {
        let key_pub = servers::pub_path(&key);
        let jitca = Jitca::start(&options.jitca, &key_pub).context("start jitca serve")?;
        let shell = ShellCa::start(&key_pub).context("start the shell CA's sshd")?;
        for &mode in &modes {
            for &clients in &options.clients {
                for target in [&jitca as &dyn servers::Target, &shell] {
                    eprintln!(
                        "{}: {mode:?} connections, {clients} clients, {} s",
                        target.name(),
                        options.seconds
                    );
                    let cell =
                        load::cell(target, mode, clients, options.seconds, &key, scratch.path())?;
                    eprintln!(
                        "  {} ops, {:.1}/s, p50 {:.1} ms, p99 {:.1} ms, server {:.2} ms/op, clients {:.2} ms/op, {} errors{}",
                        cell.samples.ops(),
                        cell.rate(),
                        ms(cell.samples.percentile(0.5)),
                        ms(cell.samples.percentile(0.99)),
                        cell.server_ms_per_op(),
                        cell.client_ms_per_op(),
                        cell.samples.errors,
                        cell.samples
                            .first_error
                            .as_deref()
                            .map(|e| format!(" (first: {e})"))
                            .unwrap_or_default()
                    );
                    report.cells.push(cell);
                }
            }
        }
    }

    if options.runs(Part::Memory) {
        report.memory = Some(memory::measure(
            &options.jitca,
            &key,
            scratch.path(),
            options.pending,
            options.connections,
            std::time::Duration::from_secs_f64(options.settle_seconds),
        )?);
    }
    report.load_after = loadavg();
    out.write_all(render(options, &report).as_bytes())?;
    Ok(report)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Thousands separated by commas, for counts.
fn count(n: f64) -> String {
    let s = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The report as markdown.
pub fn render(options: &Options, r: &Report) -> String {
    let mut s = String::new();
    let shell = "shell CA (sshd + ssh-keygen)";
    for (mode, title) in [
        (Mode::Fresh, "Issuance over fresh connections"),
        (
            Mode::Reused,
            "Issuance over a reused connection (ControlMaster)",
        ),
    ] {
        let cells: Vec<&Cell> = r.cells.iter().filter(|c| c.mode == mode).collect();
        if cells.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "### {title}\n\n`{}` with the key on stdin, {} s a cell; CPU from /proc ({} cores: \
             the ceiling is what the server and the clients together could reach on all of them)\n",
            servers::REQUEST,
            options.seconds,
            r.cpus
        );
        s.push_str("| server | clients | issuances/s | p50 ms | p99 ms | server CPU ms/issuance | client CPU ms/issuance | CPU ceiling/s | errors |\n");
        s.push_str("|:---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for c in cells {
            let ceiling = r.cpus as f64 * 1000.0 / (c.server_ms_per_op() + c.client_ms_per_op());
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.0} | {}{} |",
                if c.server == "jitca" { "jitca" } else { shell },
                c.clients,
                c.rate(),
                ms(c.samples.percentile(0.5)),
                ms(c.samples.percentile(0.99)),
                c.server_ms_per_op(),
                c.client_ms_per_op(),
                ceiling,
                c.samples.errors,
                if c.settled {
                    ""
                } else {
                    " (CPU read while busy)"
                }
            );
        }
        s.push('\n');
    }
    if let Some(certs) = r.certificates_per_second {
        s.push_str("### In-process signing, one thread\n\n| what | per second | of raw ed25519 |\n|:---|---:|---:|\n");
        let raw = r.openssl_signs_per_second;
        let _ = writeln!(
            s,
            "| `jitca_signer::CertAuthority::sign` (a whole certificate, checked) | {} | {} |",
            count(certs),
            raw.map_or("n/a".into(), |raw| format!("{:.2}", certs / raw))
        );
        let _ = writeln!(
            s,
            "| `openssl speed -seconds {} ed25519` (sign/s) | {} | 1.00 |\n",
            options.openssl_seconds,
            raw.map_or("n/a (no openssl)".into(), count)
        );
    }
    if let Some(m) = &r.memory {
        let _ = writeln!(
            s,
            "### Memory\n\n| state | jitca (VmRSS of `jitca serve`) | shell CA (PSS of the sshd tree) |\n|:---|---:|---:|\n\
             | idle | {} | {} |\n\
             | {} pending requests (made in {:.1} s over 8 ControlMasters) | {} (peak {}) | n/a |\n\
             | {} idle authenticated connections | {} (idle {}; {} sockets) | {} ({} processes) |\n",
            mib(m.idle_kib),
            mib(m.sshd_idle_pss_kib),
            count(m.pending as f64),
            m.pending_seconds,
            mib(m.pending_kib),
            mib(m.pending_peak_kib),
            count(m.connections as f64),
            mib(m.connections_kib),
            mib(m.idle_again_kib),
            m.sockets_held,
            mib(m.sshd_connections_pss_kib),
            m.sshd_connections_processes,
        );
    }
    s.push_str(&render_goals(r));
    let _ = writeln!(
        s,
        "\nLoad average before and after the run: {} / {}.",
        r.load_before, r.load_after
    );
    s
}

/// One goal: what it compares, the figures, and whether it holds.
struct Goal {
    what: String,
    ours: String,
    theirs: String,
    measured: String,
    target: &'static str,
    met: bool,
}

fn find<'a>(r: &'a Report, server: &str, mode: Mode, clients: usize) -> Option<&'a Cell> {
    r.cells
        .iter()
        .find(|c| c.server == server && c.mode == mode && c.clients == clients)
}

fn goals(r: &Report) -> Vec<Goal> {
    let mut goals = Vec::new();
    for (mode, label) in [(Mode::Fresh, "fresh"), (Mode::Reused, "reused")] {
        let clients: Vec<usize> = r
            .cells
            .iter()
            .filter(|c| c.mode == mode)
            .map(|c| c.clients)
            .collect();
        let (Some(&lo), Some(&hi)) = (clients.iter().min(), clients.iter().max()) else {
            continue;
        };
        // Server CPU per issuance: the worst ratio over the client counts.
        let worst = clients
            .iter()
            .filter_map(|&n| Some((n, find(r, "jitca", mode, n)?, find(r, "shell CA", mode, n)?)))
            .max_by(|a, b| {
                let ra = a.1.server_ms_per_op() / a.2.server_ms_per_op();
                let rb = b.1.server_ms_per_op() / b.2.server_ms_per_op();
                ra.total_cmp(&rb)
            });
        if let Some((n, ours, theirs)) = worst {
            let ratio = ours.server_ms_per_op() / theirs.server_ms_per_op();
            goals.push(Goal {
                what: format!("server CPU per issuance, {label} (worst: {n} clients)"),
                ours: format!("{:.2} ms", ours.server_ms_per_op()),
                theirs: format!("{:.2} ms", theirs.server_ms_per_op()),
                measured: format!("1/{:.0}", 1.0 / ratio),
                target: "≤ 1/10",
                met: ratio <= 0.1,
            });
        }
        if let (Some(ours), Some(theirs)) =
            (find(r, "jitca", mode, hi), find(r, "shell CA", mode, hi))
        {
            let ratio = ours.rate() / theirs.rate();
            goals.push(Goal {
                what: format!("issuances/s, {label}, {hi} clients"),
                ours: format!("{:.1}", ours.rate()),
                theirs: format!("{:.1}", theirs.rate()),
                measured: format!("{ratio:.1}×"),
                target: "≥ 2×",
                met: ratio >= 2.0,
            });
        }
        if let (Some(ours), Some(theirs)) =
            (find(r, "jitca", mode, lo), find(r, "shell CA", mode, lo))
        {
            let (a, b) = (
                ms(ours.samples.percentile(0.5)),
                ms(theirs.samples.percentile(0.5)),
            );
            goals.push(Goal {
                what: format!(
                    "p50 latency, {label}, {lo} client{}",
                    if lo == 1 { "" } else { "s" }
                ),
                ours: format!("{a:.1} ms"),
                theirs: format!("{b:.1} ms"),
                measured: format!("{:.2}×", a / b),
                target: "≤ 0.5×",
                met: a / b <= 0.5,
            });
        }
    }
    if let (Some(certs), Some(raw)) = (r.certificates_per_second, r.openssl_signs_per_second) {
        goals.push(Goal {
            what: "in-process signing against raw ed25519 signatures".into(),
            ours: format!("{}/s", count(certs)),
            theirs: format!("{}/s (openssl)", count(raw)),
            measured: format!("{:.2}×", certs / raw),
            target: "≥ 0.5×",
            met: certs / raw >= 0.5,
        });
    }
    if let Some(m) = &r.memory {
        goals.push(Goal {
            what: format!(
                "resident memory with {} pending requests",
                count(m.pending as f64)
            ),
            ours: mib(m.pending_kib),
            theirs: "n/a".into(),
            measured: mib(m.pending_kib),
            target: "< 64 MiB",
            met: m.pending_kib < 64 * 1024,
        });
    }
    goals
}

fn render_goals(r: &Report) -> String {
    let goals = goals(r);
    if goals.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "### Goals\n\n| goal | jitca | shell CA | measured | target | met |\n|:---|---:|---:|---:|:---|:---|\n",
    );
    for g in &goals {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            g.what,
            g.ours,
            g.theirs,
            g.measured,
            g.target,
            if g.met { "yes" } else { "**no**" }
        );
    }
    s
}
