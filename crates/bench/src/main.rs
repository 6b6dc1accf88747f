//! `jitca-bench`: jitca against the shell-script CA, side by side; prints markdown tables.
//! `scripts/bench` is the way to run it (release build, audit benchmark, machine details).
//! `--only stores` is the comparison of stores instead (sled, PostgreSQL, two daemons on
//! PostgreSQL), run by `scripts/bench-ha`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use jitca_bench::load::Mode;
use jitca_bench::stores::StoresOptions;
use jitca_bench::{Options, Part};

#[derive(Parser, Debug)]
#[command(
    name = "jitca-bench",
    about = "jitca against the shell-script CA (sshd + ssh-keygen), with real OpenSSH clients; run as root"
)]
struct Args {
    /// The jitca binary to serve with [default: jitca next to this program].
    #[arg(long)]
    jitca: Option<PathBuf>,
    /// Seconds each cell (server, connection mode, client count) runs.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Client counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    clients: Vec<usize>,
    /// Pending requests for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    pending: usize,
    /// Idle authenticated connections for the memory figure.
    #[arg(long, default_value_t = 500)]
    connections: usize,
    /// Seconds of in-process signing.
    #[arg(long, default_value_t = 3.0)]
    sign_seconds: f64,
    /// Seconds of `openssl speed ed25519`.
    #[arg(long, default_value_t = 3)]
    openssl_seconds: u32,
    /// Seconds the daemon settles before its memory is read (one sweeper pass: 5 s).
    #[arg(long, default_value_t = 6.0)]
    settle_seconds: f64,
    /// Parts to run, comma-separated: fresh, reused, signing, memory, and stores (one daemon
    /// on sled, one on PostgreSQL, two on PostgreSQL; it needs PostgreSQL's server binaries)
    /// [default: fresh, reused, signing, memory].
    #[arg(long, value_delimiter = ',')]
    only: Vec<Part>,
    /// For `stores`: connection modes, comma-separated, in order: reused, fresh.
    #[arg(long, value_delimiter = ',', default_value = "reused,fresh", value_parser = mode)]
    store_modes: Vec<Mode>,
    /// For `stores`: seconds every setup is watched idle after the load (0: not at all).
    #[arg(long, default_value_t = 60.0)]
    idle_seconds: f64,
}

fn mode(s: &str) -> Result<Mode, String> {
    match s {
        "reused" => Ok(Mode::Reused),
        "fresh" => Ok(Mode::Fresh),
        _ => Err(format!("unknown mode {s:?}: reused or fresh")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let jitca = args.jitca.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("jitca")))
            .unwrap_or_else(|| PathBuf::from("jitca"))
    });
    let parts = if args.only.is_empty() {
        vec![Part::Fresh, Part::Reused, Part::Signing, Part::Memory]
    } else {
        args.only
    };
    let stores = parts.contains(&Part::Stores);
    let parts: Vec<Part> = parts.into_iter().filter(|p| *p != Part::Stores).collect();
    if stores {
        let options = StoresOptions {
            jitca: jitca.clone(),
            seconds: args.seconds,
            clients: args.clients.clone(),
            modes: args.store_modes,
            idle_seconds: args.idle_seconds,
        };
        if let Err(e) = jitca_bench::stores::run(&options, &mut std::io::stdout()) {
            eprintln!("jitca-bench: {e:#}");
            return ExitCode::FAILURE;
        }
        if parts.is_empty() {
            return ExitCode::SUCCESS;
        }
        println!();
    }
    let options = Options {
        jitca,
        seconds: args.seconds,
        clients: args.clients,
        pending: args.pending,
        connections: args.connections,
        sign_seconds: args.sign_seconds,
        openssl_seconds: args.openssl_seconds,
        settle_seconds: args.settle_seconds,
        parts,
    };
    match jitca_bench::run(&options, &mut std::io::stdout()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jitca-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
