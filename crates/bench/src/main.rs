//! `jitca-bench`: jitca against the shell-script CA, side by side; prints markdown tables.
//! `scripts/bench` is the way to run it (release build, audit benchmark, machine details).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
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
    /// Parts to run, comma-separated: fresh, reused, signing, memory [default: all].
    #[arg(long, value_delimiter = ',')]
    only: Vec<Part>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let jitca = args.jitca.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("jitca")))
            .unwrap_or_else(|| PathBuf::from("jitca"))
    });
    let options = Options {
        jitca,
        seconds: args.seconds,
        clients: args.clients,
        pending: args.pending,
        connections: args.connections,
        sign_seconds: args.sign_seconds,
        openssl_seconds: args.openssl_seconds,
        settle_seconds: args.settle_seconds,
        parts: if args.only.is_empty() {
            vec![Part::Fresh, Part::Reused, Part::Signing, Part::Memory]
        } else {
            args.only
        },
    };
    match jitca_bench::run(&options, &mut std::io::stdout()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jitca-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
