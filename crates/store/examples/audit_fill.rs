//! Fills a new store with a realistic audit history, for the audit query benchmark
//! (`scripts/bench-audit`): `audit_fill DIR COUNT`. 200 users, 400 hosts, events spread over
//! 30 days, in the proportions of real request cycles.

use std::path::PathBuf;

use chrono::{DateTime, Duration, TimeZone, Utc};
use jitca_store::{AuditRecord, EventKind, SledStore, Store};

const BATCH: usize = 100;
const USERS: u64 = 200;
const HOSTS: u64 = 400;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: audit_fill DIR COUNT"));
    let count: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: audit_fill DIR COUNT");
    assert!(!dir.exists(), "{} exists; give a new folder", dir.display());
    let store = SledStore::open(&dir).expect("open store");
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let step = Duration::milliseconds(30 * 24 * 3600 * 1000 / count as i64);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let kinds = [
        EventKind::Requested,
        EventKind::Approved,
        EventKind::Issued,
        EventKind::CertificateFetched,
        EventKind::Refused,
        EventKind::AuthFailed,
    ];
    let mut seq = 0u64;
    while seq < count {
        let n = BATCH.min((count - seq) as usize);
        let batch: Vec<AuditRecord> = (0..n)
            .map(|i| {
                let r = next();
                let kind = kinds[(r % kinds.len() as u64) as usize];
                let requester = format!("u{:03}", (r >> 8) % USERS);
                let approver = format!("u{:03}", (r >> 20) % USERS);
                let host = format!("web{:03}", (r >> 32) % HOSTS);
                let actor = match kind {
                    EventKind::Approved | EventKind::Issued => approver,
                    EventKind::AuthFailed => "-".to_string(),
                    _ => requester.clone(),
                };
                let mut e = AuditRecord::new(kind, actor);
                e.source = Some(format!(
                    "10.{}.{}.{}:52814",
                    r % 250,
                    (r >> 4) % 250,
                    (r >> 12) % 250
                ));
                if kind != EventKind::AuthFailed {
                    e.request = Some(format!("r{:09}", (seq + i as u64) / 4));
                    e.requester = Some(requester);
                    e.hosts = vec![host.clone()];
                    e.logins = vec!["deploy".into()];
                }
                match kind {
                    EventKind::Requested => {
                        e.reason =
                            Some(format!("INC-{} investigate latency on {host}", r % 100_000));
                        e = e.with("duration_secs", 3600).with(
                            "fingerprint",
                            "SHA256:uN4Qb4wJ0bBq0Y7oJ1y6b0v4V2pWn8Jm1lP9k3sQe5A",
                        );
                    }
                    EventKind::Issued | EventKind::CertificateFetched => {
                        e.serial = Some(seq + i as u64 + 1);
                        e.principals = vec![format!("deploy@{host}")];
                        e = e.with(
                            "key_id",
                            format!("jitca:r{:09}:u001:approvers=u002", seq / 4),
                        );
                    }
                    _ => {}
                }
                e
            })
            .collect();
        let now = start + step * (seq as i32);
        store.append_audit_at(&batch, now).expect("append");
        seq += n as u64;
    }
    store.flush().expect("flush");
    eprintln!("{count} records in {}", dir.display());
}
