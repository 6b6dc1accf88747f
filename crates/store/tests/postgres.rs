//! What the PostgreSQL backend owes beyond the conformance suite: TLS that verifies the
//! server, a database that goes away and comes back, changes pushed between daemons, the
//! schema made once by daemons starting together, and a sled store copied with its hashes.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::Utc;
use jitca_pgtest::{Cluster, make_test_ca_and_server_cert};
mod common;
use common::request;
use jitca_store::{
    AuditRecord, EventKind, PgOptions, PgStore, SledStore, Store, StoreError, verify_audit,
};

fn requested(id: &str) -> AuditRecord {
    let mut event = AuditRecord::new(EventKind::Requested, "alice");
    event.request = Some(id.into());
    event
}

fn open(url: &str) -> PgStore {
    PgStore::open(&PgOptions::new(url)).unwrap()
}

#[test]
fn tls_verifies_the_server_against_the_named_ca_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_test_ca_and_server_cert(dir.path().join("good"));
    let (other_ca, _, _) = make_test_ca_and_server_cert(dir.path().join("other"));
    let cluster = Cluster::start_with_tls(&cert, &key);
    let db = cluster.fresh_database();
    let with = |query: &str| format!("{db}?{query}");

    let store = open(&with(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca.display()
    )));
    store
        .create_request(&request("a"), &[requested("a")])
        .unwrap();
    let ssl: String = cluster.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE ssl AND application_name = 'jitca'",
    );
    assert_ne!(ssl.trim(), "0", "jitca's connections use TLS");

    // `require` verifies too: against the system's roots, which do not know the test CA.
    let refused = PgStore::open(&PgOptions {
        timeout: Duration::from_secs(5),
        ..PgOptions::new(with("sslmode=require"))
    })
    .err()
    .expect("an unverified server is refused");
    assert!(refused.to_string().contains("certificate"), "{refused}");

    let refused = PgStore::open(&PgOptions {
        timeout: Duration::from_secs(5),
        ..PgOptions::new(with(&format!(
            "sslmode=verify-full&sslrootcert={}",
            other_ca.display()
        )))
    })
    .err()
    .expect("a server certified by another CA is refused");
    assert!(refused.to_string().contains("certificate"), "{refused}");
}

#[test]
fn a_database_that_goes_away_fails_operations_in_time_and_is_used_again_when_back() {
    let cluster = Cluster::start();
    let url = cluster.fresh_database();
    let store = PgStore::open(&PgOptions {
        timeout: Duration::from_secs(2),
        ..PgOptions::new(url)
    })
    .unwrap();
    store
        .create_request(&request("a"), &[requested("a")])
        .unwrap();
    let head = store.audit_head().unwrap();

    cluster.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let failed = store
            .create_request(&request("b"), &[requested("b")])
            .unwrap_err();
        assert!(matches!(failed, StoreError::Unavailable(_)), "{failed:?}");
        assert!(
            failed
                .to_string()
                .starts_with("the database is unavailable"),
            "{failed}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    cluster.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.create_request(&request("b"), &[requested("b")]) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("the store did not come back: {e}"),
        }
    }
    // Nothing the failed attempts tried was kept; the chain goes on from where it was.
    assert_eq!(store.requests().unwrap().len(), 2);
    let now = verify_audit(&store).unwrap().unwrap();
    assert_eq!(now.seq, head.seq + 1);
}

#[test]
fn changes_made_through_one_store_are_pushed_to_another_even_across_a_reconnection() {
    let cluster = Cluster::start();
    let url = cluster.fresh_database();
    let here = open(&url);
    let there = open(&url);
    let (tx, rx) = mpsc::channel::<String>();
    let tx = std::sync::Mutex::new(tx);
    here.follow(Box::new(move |id| {
        let _ = tx.lock().unwrap().send(id.to_string());
    }));
    let next = |rx: &mpsc::Receiver<String>| rx.recv_timeout(Duration::from_secs(15)).unwrap();
    // The listener connects in the background: announce until it hears.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    loop {
        n += 1;
        let id = format!("warm{n}");
        there.create_request(&request(&id), &[]).unwrap();
        if let Ok(heard) = rx.recv_timeout(Duration::from_millis(300)) {
            assert!(heard.starts_with("warm"), "{heard}");
            break;
        }
        assert!(Instant::now() < deadline, "no change was pushed");
    }
    while rx.try_recv().is_ok() {}

    let a = there.request("warm1").unwrap().unwrap();
    let mut approved = a.request.clone();
    approved.approvals.push(jitca_store::Approval {
        by: "bob".into(),
        at: Utc::now(),
        mfa: false,
    });
    there.replace_request(&a, &approved, &[]).unwrap();
    assert_eq!(next(&rx), "warm1");

    // The listening connection is cut (the server restarts): what changed meanwhile is
    // passed on once it listens again.
    cluster.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while there.create_request(&request("while-away"), &[]).is_err() {
        assert!(Instant::now() < deadline, "the database did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut heard = Vec::new();
    while let Ok(id) = rx.recv_timeout(Duration::from_secs(15)) {
        heard.push(id);
        if heard.iter().any(|id| id == "while-away") {
            break;
        }
    }
    assert!(heard.iter().any(|id| id == "while-away"), "{heard:?}");
}

#[test]
fn daemons_starting_together_make_the_schema_once() {
    let url = jitca_pgtest::shared().fresh_database();
    let opened: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| PgStore::open(&PgOptions::new(url.clone()))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for store in &opened {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let db = url.rsplit('/').next().unwrap();
    let versions = jitca_pgtest::shared().psql(db, "SELECT version FROM jitca_schema");
    assert_eq!(versions.trim(), "1");
}

#[test]
fn a_schema_newer_than_this_binary_is_refused() {
    let url = jitca_pgtest::shared().fresh_database();
    drop(open(&url));
    let db = url.rsplit('/').next().unwrap();
    jitca_pgtest::shared().psql(
        db,
        "INSERT INTO jitca_schema (version, description) VALUES (99, 'from the future')",
    );
    let refused = PgStore::open(&PgOptions::new(url.clone()))
        .err()
        .expect("refused");
    assert!(
        refused
            .to_string()
            .contains("version 99, newer than this jitca knows"),
        "{refused}"
    );
    assert_eq!(
        PgStore::probe(&PgOptions::new(jitca_pgtest::shared().url(db))).unwrap(),
        99
    );
}

#[test]
fn a_sled_store_is_copied_with_every_hash_and_the_serial_counter() {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(&dir.path().join("data")).unwrap();
    for i in 0..50 {
        let id = format!("r{i}");
        sled.create_request(&request(&id), &[requested(&id)])
            .unwrap();
    }
    let mut serials = Vec::new();
    for _ in 0..5 {
        serials.push(sled.next_serial().unwrap());
    }
    sled.bump_krl(Utc::now()).unwrap();
    sled.set_mark("audit_file", 42).unwrap();
    sled.flush().unwrap();
    let head = verify_audit(&sled).unwrap().unwrap();

    let url = jitca_pgtest::shared().fresh_database();
    let pg = open(&url);
    let mut seen = 0;
    let report = pg
        .copy_from(&sled, &mut |done, total| {
            assert!(done <= total);
            seen = done;
        })
        .unwrap();
    assert_eq!(seen, head.seq);
    assert_eq!(report.requests, 50);
    assert_eq!(report.audit_records, head.seq);
    assert_eq!(verify_audit(&pg).unwrap().unwrap(), head);
    assert_eq!(pg.audit_head().unwrap(), head);
    assert_eq!(pg.requests().unwrap(), sled.requests().unwrap());
    assert_eq!(pg.krl_state().unwrap(), sled.krl_state().unwrap());
    assert_eq!(pg.mark("audit_file").unwrap(), 42);
    let next = pg.next_serial().unwrap();
    assert!(
        serials.iter().all(|s| next > *s),
        "{next} after {serials:?}"
    );

    // A second copy into the same database is refused and changes nothing.
    let refused = pg.copy_from(&sled, &mut |_, _| {}).unwrap_err();
    assert!(refused.to_string().contains("not empty"), "{refused}");
    assert_eq!(pg.requests().unwrap().len(), 50);
    assert_eq!(verify_audit(&pg).unwrap().unwrap(), head);
}

#[test]
fn a_database_that_does_not_wait_for_its_disk_is_refused() {
    let url = jitca_pgtest::shared().fresh_database();
    let db = url.rsplit('/').next().unwrap();
    jitca_pgtest::shared().psql(
        "postgres",
        &format!("ALTER DATABASE {db} SET synchronous_commit = off"),
    );
    let refused = PgStore::open(&PgOptions::new(url.clone()))
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("synchronous_commit is off"),
        "{refused}"
    );
    jitca_pgtest::shared().psql(
        "postgres",
        &format!("ALTER DATABASE {db} SET synchronous_commit = on"),
    );
    open(&url);
}

#[test]
fn offline_commands_open_only_a_database_of_their_own_schema_and_change_nothing() {
    let url = jitca_pgtest::shared().fresh_database();
    let refused = PgStore::open_existing(&PgOptions::new(url.clone()))
        .err()
        .expect("an empty database is not migrated by a reader");
    assert!(
        refused.to_string().contains("schema is version 0"),
        "{refused}"
    );
    assert_eq!(PgStore::probe(&PgOptions::new(url.clone())).unwrap(), 0);
    drop(open(&url));
    let reader = PgStore::open_existing(&PgOptions::new(url)).unwrap();
    assert_eq!(reader.audit_head().unwrap().seq, 0);
}
