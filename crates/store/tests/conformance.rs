//! What every [`Store`] backend owes the request lifecycle, checked the same way on each.
//!
//! Each check is a function of a fresh, empty `&dyn Store`; [`backend!`] runs all of them
//! against one backend, one test each. A new backend (PostgreSQL, say) passes when one more
//! `backend!` line for it passes: unique ids, compare-and-swap against the exact record read,
//! audit records that land with their change or not at all on a chain that verifies, serials
//! that are never 0 or repeated (also from many threads at once), the deadline index, the
//! revocation list's version, marks and second factors.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use jitca_store::{
    Approval, AuditQuery, AuditRecord, EventKind, FactorState, Head, Issuance, MemoryStore,
    PgOptions, PgStore, Request, SecondFactor, SledStore, State, Store, StoreError, Swap,
    verify_audit,
};

mod common;
use common::{request, t0};

/// Runs every check against the backend that `$open` makes: an expression giving a fresh
/// store and whatever must live as long as it (a folder).
macro_rules! backend {
    ($name:ident, $open:expr) => {
        mod $name {
            use super::*;

            fn check(f: fn(&dyn Store)) {
                let (store, _keep) = $open;
                f(&store);
            }

            #[test]
            fn ids_are_unique_and_a_clash_appends_nothing() {
                check(checks::ids_are_unique_and_a_clash_appends_nothing);
            }
            #[test]
            fn a_swap_changes_once_and_a_lost_one_appends_nothing() {
                check(checks::a_swap_changes_once_and_a_lost_one_appends_nothing);
            }
            #[test]
            fn a_swap_of_a_request_never_stored_is_missing() {
                check(checks::a_swap_of_a_request_never_stored_is_missing);
            }
            #[test]
            fn racing_swaps_of_one_read_change_it_once() {
                check(checks::racing_swaps_of_one_read_change_it_once);
            }
            #[test]
            fn racing_writers_that_read_again_lose_no_change() {
                check(checks::racing_writers_that_read_again_lose_no_change);
            }
            #[test]
            fn requests_are_listed_newest_first() {
                check(checks::requests_are_listed_newest_first);
            }
            #[test]
            fn due_follows_every_change() {
                check(checks::due_follows_every_change);
            }
            #[test]
            fn serials_are_never_zero_or_repeated() {
                check(checks::serials_are_never_zero_or_repeated);
            }
            #[test]
            fn the_audit_chain_verifies_and_answers_queries() {
                check(checks::the_audit_chain_verifies_and_answers_queries);
            }
            #[test]
            fn a_long_chain_answers_every_query_as_a_full_scan_does() {
                check(checks::a_long_chain_answers_every_query_as_a_full_scan_does);
            }
            #[test]
            fn the_krl_version_only_grows() {
                check(checks::the_krl_version_only_grows);
            }
            #[test]
            fn marks_are_kept_by_name() {
                check(checks::marks_are_kept_by_name);
            }
            #[test]
            fn second_factors_are_swapped_against_what_was_read() {
                check(checks::second_factors_are_swapped_against_what_was_read);
            }
        }
    };
}

backend!(memory, (MemoryStore::new(), ()));
backend!(sled, {
    let dir = tempfile::tempdir().unwrap();
    (SledStore::open(&dir.path().join("data")).unwrap(), dir)
});
// A new database in this process's throwaway cluster (jitca-pgtest) for each check.
backend!(postgres, {
    let url = jitca_pgtest::shared().fresh_database();
    (PgStore::open(&PgOptions::new(url)).unwrap(), ())
});

fn approved_by(request: &Request, who: &str) -> Request {
    let mut next = request.clone();
    next.approvals.push(Approval {
        by: who.into(),
        at: next.created_at,
        mfa: false,
    });
    next
}

fn event(kind: EventKind, actor: &str, request: Option<&str>) -> AuditRecord {
    let mut r = AuditRecord::new(kind, actor);
    r.request = request.map(str::to_string);
    r.hosts = vec!["web1".into()];
    r
}

/// The seqs of the records matching `query`.
fn scan(store: &dyn Store, query: &AuditQuery) -> Vec<u64> {
    let mut seqs = Vec::new();
    store
        .scan_audit(query, &mut |r, _| {
            seqs.push(r.seq);
            true
        })
        .unwrap();
    seqs
}

fn swapped(outcome: Result<Swap, StoreError>) -> bool {
    matches!(outcome.unwrap(), Swap::Done)
}

mod checks {
    use super::*;

    pub fn ids_are_unique_and_a_clash_appends_nothing(store: &dyn Store) {
        let made = event(EventKind::Requested, "alice", Some("a"));
        store
            .create_request(&request("a"), std::slice::from_ref(&made))
            .unwrap();
        let mut other = request("a");
        other.requester = "mallory".into();
        assert!(matches!(
            store.create_request(&other, std::slice::from_ref(&made)),
            Err(StoreError::Exists(id)) if id == "a"
        ));
        assert_eq!(store.audit_head().unwrap().seq, 1);
        assert_eq!(store.request("a").unwrap().unwrap().request, request("a"));
        assert!(store.request("b").unwrap().is_none());
    }

    pub fn a_swap_changes_once_and_a_lost_one_appends_nothing(store: &dyn Store) {
        store.create_request(&request("a"), &[]).unwrap();
        let seen_by_bob = store.request("a").unwrap().unwrap();
        let seen_by_carol = store.request("a").unwrap().unwrap();
        let bob = approved_by(&seen_by_bob.request, "bob");
        let carol = approved_by(&seen_by_carol.request, "carol");
        assert!(swapped(store.replace_request(
            &seen_by_bob,
            &bob,
            &[event(EventKind::Approved, "bob", Some("a"))]
        )));
        assert!(!swapped(store.replace_request(
            &seen_by_carol,
            &carol,
            &[event(EventKind::Approved, "carol", Some("a"))]
        )));
        assert_eq!(store.request("a").unwrap().unwrap().request, bob);
        assert_eq!(store.audit_head().unwrap().seq, 1);
        let mut actors = Vec::new();
        store
            .scan_audit(&AuditQuery::default(), &mut |r, _| {
                actors.push(r.actor.clone());
                true
            })
            .unwrap();
        assert_eq!(actors, ["bob"]);
        // A fresh read wins.
        let fresh = store.request("a").unwrap().unwrap();
        let both = approved_by(&fresh.request, "carol");
        assert!(swapped(store.replace_request(&fresh, &both, &[])));
        assert_eq!(store.request("a").unwrap().unwrap().request, both);
    }

    pub fn a_swap_of_a_request_never_stored_is_missing(store: &dyn Store) {
        store.create_request(&request("a"), &[]).unwrap();
        let mut read = store.request("a").unwrap().unwrap();
        read.request.id = "ghost".into();
        assert!(matches!(
            store.replace_request(&read, &read.request, &[event(EventKind::Approved, "bob", None)]),
            Err(StoreError::Missing(id)) if id == "ghost"
        ));
        assert_eq!(store.audit_head().unwrap(), Head::genesis());
        assert!(store.request("ghost").unwrap().is_none());
    }

    pub fn racing_swaps_of_one_read_change_it_once(store: &dyn Store) {
        store.create_request(&request("a"), &[]).unwrap();
        let read = store.request("a").unwrap().unwrap();
        let names: Vec<String> = (0..8).map(|i| format!("approver{i}")).collect();
        let barrier = std::sync::Barrier::new(names.len());
        let won: Vec<&String> = std::thread::scope(|s| {
            let racers: Vec<_> = names
                .iter()
                .map(|who| {
                    let (read, barrier) = (&read, &barrier);
                    s.spawn(move || {
                        let next = approved_by(&read.request, who);
                        let events = [event(EventKind::Approved, who, Some("a"))];
                        barrier.wait();
                        swapped(store.replace_request(read, &next, &events)).then_some(who)
                    })
                })
                .collect();
            racers
                .into_iter()
                .filter_map(|r| r.join().unwrap())
                .collect()
        });
        assert_eq!(won.len(), 1, "exactly one racer wins: {won:?}");
        let stored = store.request("a").unwrap().unwrap().request;
        assert_eq!(stored.approvers().collect::<Vec<_>>(), [won[0].as_str()]);
        assert_eq!(store.audit_head().unwrap().seq, 1);
        assert_eq!(verify_audit(store).unwrap().unwrap().seq, 1);
    }

    pub fn racing_writers_that_read_again_lose_no_change(store: &dyn Store) {
        store.create_request(&request("a"), &[]).unwrap();
        let names: Vec<String> = (0..8).map(|i| format!("approver{i}")).collect();
        std::thread::scope(|s| {
            for who in &names {
                s.spawn(move || {
                    loop {
                        let read = store.request("a").unwrap().unwrap();
                        let next = approved_by(&read.request, who);
                        let events = [event(EventKind::Approved, who, Some("a"))];
                        if swapped(store.replace_request(&read, &next, &events)) {
                            break;
                        }
                    }
                });
            }
        });
        let stored = store.request("a").unwrap().unwrap().request;
        let approvers: BTreeSet<&str> = stored.approvers().collect();
        assert_eq!(approvers.len(), names.len(), "{approvers:?}");
        // One record per change that happened, in the order the changes happened.
        let mut recorded = Vec::new();
        store
            .scan_audit(&AuditQuery::default(), &mut |r, _| {
                recorded.push(r.actor.clone());
                true
            })
            .unwrap();
        let applied: Vec<String> = stored.approvals.iter().map(|a| a.by.clone()).collect();
        assert_eq!(recorded, applied);
        assert_eq!(
            verify_audit(store).unwrap().unwrap().seq,
            names.len() as u64
        );
    }

    pub fn requests_are_listed_newest_first(store: &dyn Store) {
        let mut old = request("z");
        old.created_at -= TimeDelta::seconds(10);
        store.create_request(&old, &[]).unwrap();
        store.create_request(&request("a"), &[]).unwrap();
        store.create_request(&request("b"), &[]).unwrap();
        let ids: Vec<String> = store
            .requests()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        // Same time: by id, descending, so the order never depends on the backend.
        assert_eq!(ids, ["b", "a", "z"]);
    }

    pub fn due_follows_every_change(store: &dyn Store) {
        let deadline = request("a").lapses_at;
        let due = |at: DateTime<Utc>| {
            let mut ids: Vec<String> = store.due(at).unwrap().into_iter().map(|r| r.id).collect();
            ids.sort();
            ids
        };
        for id in ["a", "b", "c"] {
            store.create_request(&request(id), &[]).unwrap();
        }
        let mut decided = request("d");
        decided.state = State::Lapsed { at: deadline };
        store.create_request(&decided, &[]).unwrap();
        assert!(due(deadline - TimeDelta::seconds(1)).is_empty());
        assert_eq!(due(deadline), ["a", "b", "c"]);

        // An approval keeps it pending; a lapse takes it out.
        let read = store.request("a").unwrap().unwrap();
        assert!(swapped(store.replace_request(
            &read,
            &approved_by(&read.request, "bob"),
            &[]
        )));
        let read = store.request("b").unwrap().unwrap();
        let mut lapsed = read.request.clone();
        lapsed.state = State::Lapsed { at: deadline };
        assert!(swapped(store.replace_request(&read, &lapsed, &[])));
        assert_eq!(due(deadline), ["a", "c"]);

        // An issued grant that needs a review is due when it expires, until announced.
        let read = store.request("c").unwrap().unwrap();
        let mut issued = read.request.clone();
        issued.review_required = true;
        let valid_before = deadline + TimeDelta::hours(2);
        issued.state = State::Issued(Issuance {
            serial: 7,
            key_id: "jitca:c:alice:approvers=none".into(),
            issued_at: deadline,
            valid_after: deadline,
            valid_before,
            certificate: "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
        });
        assert!(swapped(store.replace_request(&read, &issued, &[])));
        assert_eq!(due(valid_before - TimeDelta::seconds(1)), ["a"]);
        assert_eq!(due(valid_before), ["a", "c"]);
        let read = store.request("c").unwrap().unwrap();
        let mut announced = read.request.clone();
        announced.review_due_announced = true;
        assert!(swapped(store.replace_request(&read, &announced, &[])));
        assert_eq!(due(valid_before), ["a"]);
    }

    pub fn serials_are_never_zero_or_repeated(store: &dyn Store) {
        let taken: Vec<u64> = std::thread::scope(|s| {
            let takers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..300)
                            .map(|_| store.next_serial().unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            takers.into_iter().flat_map(|t| t.join().unwrap()).collect()
        });
        let unique: BTreeSet<u64> = taken.iter().copied().collect();
        assert_eq!(unique.len(), taken.len(), "a serial was handed out twice");
        assert!(!unique.contains(&0), "serial 0 was handed out");
        // Each thread's own serials grow: a later serial is never an earlier one reused.
        assert!(store.next_serial().unwrap() > *unique.last().unwrap());
    }

    /// Enough records for a backend that keeps old records apart from new ones (the sled
    /// store packs blocks of 1,024) to hold both: each query must find exactly what a filter
    /// over every record finds, across the boundary, and stop when told.
    pub fn a_long_chain_answers_every_query_as_a_full_scan_does(store: &dyn Store) {
        use EventKind::*;
        const COUNT: u64 = 2_600;
        let mut seq = 0u64;
        while seq < COUNT {
            let batch: Vec<AuditRecord> = (seq..(seq + 50).min(COUNT))
                .map(|i| {
                    let mut r = event(
                        [Requested, Approved, Issued][(i % 3) as usize],
                        &format!("u{}", i % 7),
                        Some(&format!("r{}", i / 4)),
                    );
                    r.requester = Some(format!("u{}", i % 5));
                    r.hosts = vec![format!("h{}", i % 11), format!("h{}", i % 13)];
                    r.serial = (i % 3 == 2).then_some(i);
                    r
                })
                .collect();
            store.append_audit(&batch).unwrap();
            seq += batch.len() as u64;
        }
        let head = verify_audit(store).unwrap().unwrap();
        assert_eq!(head, store.audit_head().unwrap());
        assert_eq!(head.seq, COUNT);
        let mut all = Vec::new();
        store
            .scan_audit(&AuditQuery::default(), &mut |r, line| {
                all.push((r.clone(), line.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(all.len() as u64, COUNT);
        assert!(all.iter().zip(1..).all(|((r, _), seq)| r.seq == seq));
        let middle = all[1500].0.time;
        let queries: Vec<AuditQuery> = vec![
            AuditQuery {
                user: Some("u3".into()),
                ..Default::default()
            },
            AuditQuery {
                user: Some("u6".into()),
                after_seq: Some(1000),
                ..Default::default()
            },
            AuditQuery {
                host: Some("h12".into()),
                ..Default::default()
            },
            AuditQuery {
                request: Some("r300".into()),
                ..Default::default()
            },
            AuditQuery {
                request: Some("r600".into()),
                ..Default::default()
            },
            AuditQuery {
                serial: Some(2048),
                ..Default::default()
            },
            AuditQuery {
                serial: Some(2049),
                ..Default::default()
            },
            AuditQuery {
                user: Some("nobody".into()),
                ..Default::default()
            },
            AuditQuery {
                since: Some(middle),
                ..Default::default()
            },
            AuditQuery {
                until: Some(middle),
                ..Default::default()
            },
            AuditQuery {
                user: Some("u1".into()),
                since: Some(middle),
                ..Default::default()
            },
            AuditQuery {
                after_seq: Some(1020),
                ..Default::default()
            },
        ];
        // Each query but these two (no such user; a seq that carries no serial) finds some.
        let finds_none = [6, 7];
        for (n, query) in queries.iter().enumerate() {
            let expected: Vec<(AuditRecord, Vec<u8>)> = all
                .iter()
                .filter(|(r, _)| query.matches(r))
                .cloned()
                .collect();
            assert_eq!(expected.is_empty(), finds_none.contains(&n), "{query:?}");
            let mut found = Vec::new();
            store
                .scan_audit(query, &mut |r, line| {
                    found.push((r.clone(), line.to_vec()));
                    true
                })
                .unwrap();
            assert_eq!(found, expected, "{query:?}");
            // Stopped after the first match, the scan gives no more.
            let mut first = 0;
            store
                .scan_audit(query, &mut |_, _| {
                    first += 1;
                    false
                })
                .unwrap();
            assert_eq!(first, expected.len().min(1), "{query:?}");
        }
    }

    pub fn the_audit_chain_verifies_and_answers_queries(store: &dyn Store) {
        use EventKind::*;
        assert_eq!(store.audit_head().unwrap(), Head::genesis());
        assert_eq!(verify_audit(store).unwrap().unwrap(), Head::genesis());
        let mut made = event(Requested, "alice", Some("a"));
        made.requester = Some("alice".into());
        store.create_request(&request("a"), &[made]).unwrap();
        let read = store.request("a").unwrap().unwrap();
        let mut approved = event(Approved, "bob", Some("a"));
        approved.requester = Some("alice".into());
        let mut issued = event(Issued, "bob", Some("a"));
        issued.requester = Some("alice".into());
        issued.serial = Some(9);
        assert!(swapped(store.replace_request(
            &read,
            &approved_by(&read.request, "bob"),
            &[approved, issued]
        )));
        let mut refused = event(Refused, "carol", None);
        refused.hosts = vec!["db1".into()];
        let head = store.append_audit(&[refused]).unwrap();
        assert_eq!(head.seq, 4);
        assert_eq!(store.audit_head().unwrap(), head);
        assert_eq!(verify_audit(store).unwrap().unwrap(), head);
        // An empty append changes nothing.
        assert_eq!(store.append_audit(&[]).unwrap(), head);

        // Every stored line is sealed: it opens, names its place, and chains on.
        let mut prev = Head::genesis();
        store
            .raw_audit(&mut |seq, line| {
                let record = jitca_store::audit::open(seq, line).unwrap();
                assert_eq!(record.seq, seq);
                assert_eq!(record.prev, prev.hash);
                assert!(record.time >= prev.time);
                prev = Head {
                    seq,
                    hash: record.hash.unwrap(),
                    time: record.time,
                };
                true
            })
            .unwrap();
        assert_eq!(prev, head);

        let q = |f: fn(&mut AuditQuery)| {
            let mut q = AuditQuery::default();
            f(&mut q);
            scan(store, &q)
        };
        assert_eq!(q(|_| {}), [1, 2, 3, 4]);
        assert_eq!(q(|q| q.user = Some("alice".into())), [1, 2, 3]);
        assert_eq!(q(|q| q.user = Some("bob".into())), [2, 3]);
        assert_eq!(q(|q| q.host = Some("db1".into())), [4]);
        assert_eq!(q(|q| q.serial = Some(9)), [3]);
        assert_eq!(q(|q| q.request = Some("a".into())), [1, 2, 3]);
        assert_eq!(q(|q| q.after_seq = Some(2)), [3, 4]);
        assert_eq!(q(|q| q.after_seq = Some(u64::MAX)), Vec::<u64>::new());
        assert_eq!(
            q(|q| q.since = Some(Utc::now() + TimeDelta::hours(1))),
            Vec::<u64>::new()
        );
        assert_eq!(
            q(|q| q.until = Some(Utc::now() - TimeDelta::hours(1))),
            Vec::<u64>::new()
        );
        assert_eq!(
            q(|q| q.since = Some(Utc::now() - TimeDelta::hours(1))),
            [1, 2, 3, 4]
        );
        // A visitor that stops gets no more.
        let mut seen = 0;
        store
            .scan_audit(&AuditQuery::default(), &mut |_, _| {
                seen += 1;
                seen < 2
            })
            .unwrap();
        assert_eq!(seen, 2);
    }

    pub fn the_krl_version_only_grows(store: &dyn Store) {
        let start = store.krl_state().unwrap();
        assert_eq!(start.version, 0);
        assert_eq!(start.generated_at, DateTime::UNIX_EPOCH);
        let first = store.bump_krl(t0()).unwrap();
        assert_eq!((first.version, first.generated_at), (1, t0()));
        let second = store.bump_krl(t0() + TimeDelta::seconds(5)).unwrap();
        assert_eq!(second.version, 2);
        assert_eq!(store.krl_state().unwrap(), second);
    }

    pub fn marks_are_kept_by_name(store: &dyn Store) {
        assert_eq!(store.mark("audit_file").unwrap(), 0);
        store.set_mark("audit_file", 42).unwrap();
        store.set_mark("other", 7).unwrap();
        assert_eq!(store.mark("audit_file").unwrap(), 42);
        store.set_mark("audit_file", 43).unwrap();
        assert_eq!(store.mark("audit_file").unwrap(), 43);
        assert_eq!(store.mark("other").unwrap(), 7);
        store.flush().unwrap();
    }

    pub fn second_factors_are_swapped_against_what_was_read(store: &dyn Store) {
        let factor = |state, last_step| SecondFactor {
            state,
            sealed: "00".repeat(60),
            last_step,
            created_at: t0(),
            confirmed_at: None,
            wrong_codes: Vec::new(),
        };
        assert!(store.second_factor("alice").unwrap().is_none());
        let new = factor(FactorState::Unconfirmed, 0);
        let enrolled = [AuditRecord::new(EventKind::MfaEnrolled, "alice")];
        assert!(swapped(store.swap_second_factor(
            "alice",
            None,
            Some(&new),
            &enrolled
        )));
        // Creating it again from "none" loses, and records nothing.
        assert!(!swapped(store.swap_second_factor(
            "alice",
            None,
            Some(&new),
            &enrolled
        )));
        assert_eq!(store.audit_head().unwrap().seq, 1);
        let read = store.second_factor("alice").unwrap().unwrap();
        assert_eq!(read.factor, new);
        assert!(store.second_factor("bob").unwrap().is_none());

        // One read, many racers: the step advances once.
        let next = factor(FactorState::Active, 11);
        let confirmed = [AuditRecord::new(EventKind::MfaConfirmed, "alice")];
        let wins = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        swapped(store.swap_second_factor(
                            "alice",
                            Some(&read),
                            Some(&next),
                            &confirmed,
                        ))
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().unwrap())
                .filter(|won| *won)
                .count()
        });
        assert_eq!(wins, 1);
        assert_eq!(store.audit_head().unwrap().seq, 2);
        // Removing it with the stale read loses; with a fresh one it goes, with its record.
        assert!(!swapped(store.swap_second_factor(
            "alice",
            Some(&read),
            None,
            &[]
        )));
        let fresh = store.second_factor("alice").unwrap().unwrap();
        assert_eq!(fresh.factor, next);
        let reset = [AuditRecord::new(EventKind::MfaReset, "carol")];
        assert!(swapped(store.swap_second_factor(
            "alice",
            Some(&fresh),
            None,
            &reset
        )));
        assert!(store.second_factor("alice").unwrap().is_none());
        assert_eq!(verify_audit(store).unwrap().unwrap().seq, 3);
    }
}
