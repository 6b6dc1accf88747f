//! What an issuance's durable write costs in the sled store, against the least a write of the
//! same bytes can cost in sled (docs/benchmarks.md, "Writing once per issuance"):
//! `issuance_writes [COUNT] [store|tx|once|all|setup]` (default 2000, all; `setup` only makes
//! the store variant's pending requests, so that its writes can be told apart).
//!
//! - `store`: the issuance as the authority writes it: a pending request replaced by its issued
//!   form with the issuance's audit record (`replace_request`: one sled transaction over the
//!   requests, audit, index and meta trees), then `flush`.
//! - `tx`: the same entries (the request, the audit line, five index keys, the chain's head)
//!   written by one bare sled transaction over four trees, then `flush`: what sled's
//!   multi-tree transaction costs without any code of ours around it.
//! - `once`: the same bytes (the issued request's JSON and the audit line) as one value
//!   inserted into one tree of a bare sled database, then `flush`: one log buffer, the floor
//!   for any layout of ours that "writes once".
//!
//! Each variant runs in a folder of its own in `$TMPDIR`; the requests are made (and flushed)
//! before the clock starts. Prints, per issuance, the wall time and the process's CPU time
//! (all threads, sled's IO pool included). Run under `strace -f -c` with one variant to count
//! the writes and syncs of each.

use std::time::Instant;

use chrono::TimeDelta;
use jitca_store::{AuditRecord, EventKind, Issuance, Request, SledStore, State, Store, Swap};

#[path = "../tests/common/mod.rs"]
mod common;

/// The store tests' sample request, with a real key's and reason's length.
fn request(i: u64) -> Request {
    let mut r = common::request(&format!("r{i:09}"));
    r.public_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8mYh7bWm7cQn1lX2c0d3y1o8Q3QpN3Hc3mVJkq0f2R".into();
    r.fingerprint = "SHA256:uN4Qb4wJ0bBq0Y7oJ1y6b0v4V2pWn8Jm1lP9k3sQe5A".into();
    r.reason = "INC-4411 investigate latency on web1".into();
    r.source = "10.1.2.3:52814".into();
    r
}

/// The issued form of `request(i)`, with a certificate of a real one's length.
fn issued(i: u64, serial: u64) -> Request {
    let mut r = request(i);
    let now = r.created_at + TimeDelta::seconds(30);
    r.state = State::Issued(Issuance {
        serial,
        key_id: format!("jitca:{}:alice", r.id),
        issued_at: now,
        valid_after: now - TimeDelta::minutes(5),
        valid_before: now + TimeDelta::hours(1),
        certificate: format!("ssh-ed25519-cert-v01@openssh.com {}", "A".repeat(640)),
    });
    r
}

fn issued_event(r: &Request, serial: u64) -> AuditRecord {
    let mut e = AuditRecord::new(EventKind::Issued, "bob");
    e.request = Some(r.id.clone());
    e.requester = Some(r.requester.clone());
    e.hosts = r.hosts.clone();
    e.logins = r.logins.clone();
    e.principals = r.principals.clone();
    e.serial = Some(serial);
    e.source = Some("10.9.8.7:40022".into());
    e
}

/// The process's CPU time so far (user and system, all threads), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name (which is in parentheses): utime is the 12th.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Runs `op` for each of `0..count` and prints wall and CPU time per call.
fn measure(name: &str, count: u64, mut op: impl FnMut(u64)) {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for i in 0..count {
        op(i);
    }
    let wall = wall.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    println!(
        "{name:<6} {count} issuances: {:.3} ms wall, {:.3} ms CPU each",
        wall * 1e3 / count as f64,
        cpu * 1e3 / count as f64
    );
}

/// With `measured` false, only the pending requests are made (to count the set-up's writes).
fn store_variant(count: u64, measured: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    for i in 0..count {
        let r = request(i);
        let mut e = AuditRecord::new(EventKind::Requested, "alice");
        e.request = Some(r.id.clone());
        store.create_request(&r, &[e]).unwrap();
    }
    store.flush().unwrap();
    if !measured {
        return;
    }
    let current: Vec<_> = (0..count)
        .map(|i| store.request(&request(i).id).unwrap().unwrap())
        .collect();
    measure("store", count, |i| {
        let serial = store.next_serial().unwrap();
        let next = issued(i, serial);
        let event = issued_event(&next, serial);
        let swap = store
            .replace_request(&current[i as usize], &next, &[event])
            .unwrap();
        assert!(matches!(swap, Swap::Done));
        store.flush().unwrap();
    });
}

fn tx_variant(count: u64) {
    use sled::Transactional;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let trees: Vec<sled::Tree> = ["requests", "audit", "index", "meta"]
        .iter()
        .map(|name| db.open_tree(name).unwrap())
        .collect();
    measure("tx", count, |i| {
        let next = issued(i, i + 1);
        let request = serde_json::to_vec(&next).unwrap();
        let line = serde_json::to_vec(&issued_event(&next, i + 1)).unwrap();
        let seq = (i + 1).to_be_bytes();
        let index: Vec<Vec<u8>> = [
            "ualice",
            "ubob",
            "hweb1",
            &format!("r{}", next.id),
            "sserial",
        ]
        .iter()
        .map(|name| [name.as_bytes(), &seq].concat())
        .collect();
        (&trees[0], &trees[1], &trees[2], &trees[3])
            .transaction(|(requests, audit, idx, meta)| {
                requests.insert(next.id.as_bytes(), request.as_slice())?;
                audit.insert(&seq, line.as_slice())?;
                for key in &index {
                    idx.insert(key.as_slice(), &[])?;
                }
                meta.insert("head", &[7u8; 40][..])?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
        db.flush().unwrap();
    });
}

fn once_variant(count: u64) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let tree = db.open_tree("issuances").unwrap();
    measure("once", count, |i| {
        let next = issued(i, i + 1);
        let mut value = serde_json::to_vec(&next).unwrap();
        value.extend(serde_json::to_vec(&issued_event(&next, i + 1)).unwrap());
        tree.insert(next.id.as_bytes(), value).unwrap();
        db.flush().unwrap();
    });
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().map_or(2000, |n| n.parse().expect("COUNT"));
    let variant = args.next().unwrap_or_else(|| "all".into());
    if matches!(variant.as_str(), "store" | "all") {
        store_variant(count, true);
    }
    if variant == "setup" {
        store_variant(count, false);
    }
    if matches!(variant.as_str(), "tx" | "all") {
        tx_variant(count);
    }
    if matches!(variant.as_str(), "once" | "all") {
        once_variant(count);
    }
}
