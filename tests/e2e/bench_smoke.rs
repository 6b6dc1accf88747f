//! The benchmark harness (`crates/bench`, run by `scripts/bench`) end to end, briefly: both
//! servers, both connection modes, signing, memory, and the tables it prints. No timing is
//! checked here; the figures live in docs/benchmarks.md.

use std::path::PathBuf;

use jitca_bench::{Options, Part};

use crate::harness::JITCA;

#[test]
fn the_benchmark_harness_runs_and_prints_its_tables() {
    let options = Options {
        jitca: PathBuf::from(JITCA),
        seconds: 0.3,
        clients: vec![1, 2],
        pending: 20,
        connections: 4,
        sign_seconds: 0.2,
        openssl_seconds: 1,
        settle_seconds: 0.2,
        parts: vec![Part::Fresh, Part::Reused, Part::Signing, Part::Memory],
    };
    let mut out = Vec::new();
    let report = jitca_bench::run(&options, &mut out).expect("the harness runs");
    let text = String::from_utf8(out).unwrap();
    for heading in [
        "### Issuance over fresh connections",
        "### Issuance over a reused connection (ControlMaster)",
        "### In-process signing, one thread",
        "### Memory",
        "### Goals",
    ] {
        assert!(text.contains(heading), "no {heading:?} in:\n{text}");
    }
    // Two servers, two modes, two client counts; every command gave a certificate.
    assert_eq!(report.cells.len(), 8, "{text}");
    for cell in &report.cells {
        assert!(cell.samples.ops() > 0, "{cell:?}");
        assert_eq!(cell.samples.errors, 0, "{cell:?}");
        assert!(
            text.contains(&format!("| {} |", cell.clients)),
            "{cell:?} not in:\n{text}"
        );
    }
    assert!(report.certificates_per_second.unwrap() > 0.0);
    let memory = report.memory.expect("the memory part ran");
    assert!(memory.idle_kib > 0 && memory.pending_kib > 0 && memory.connections_kib > 0);
}
