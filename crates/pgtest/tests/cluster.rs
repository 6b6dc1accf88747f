//! The throwaway cluster itself: it starts, hands out separate databases, keeps its data
//! across a stop and a start, serves TLS that verify-full accepts against its CA only, and
//! leaves no server and no folder behind, whether dropped or killed.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jitca_pgtest::{Cluster, make_test_ca_and_server_cert, shared};

/// The database name at the end of a URL.
fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// Waits up to `limit` for `done`.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn it_starts_with_the_settings_and_two_fresh_databases_are_separate() {
    let cluster = Cluster::start();
    assert!(cluster.accepts_connections());
    assert_eq!(cluster.psql("postgres", "select 1, 'a'"), "1|a\n");
    assert_eq!(cluster.psql("postgres", "show fsync").trim(), "off");
    assert_eq!(
        cluster.psql("postgres", "show max_connections").trim(),
        "200"
    );
    assert_eq!(
        cluster.psql("postgres", "show listen_addresses").trim(),
        "127.0.0.1"
    );
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "select rolsuper from pg_roles where rolname = current_user"
            )
            .trim(),
        "t"
    );
    assert!(cluster.dir().starts_with(std::env::temp_dir()));
    assert!(cluster.log_path().starts_with(cluster.dir()));
    assert!(cluster.log_path().is_file());

    let a = cluster.fresh_database();
    let b = cluster.fresh_database();
    assert_ne!(a, b);
    let prefix = format!("postgres://postgres@127.0.0.1:{}/", cluster.port());
    assert!(a.starts_with(&prefix) && b.starts_with(&prefix), "{a} {b}");
    assert_eq!(cluster.url(db_name(&a)), a);
    for db in [db_name(&a), db_name(&b)] {
        let owner =
            format!("select pg_get_userbyid(datdba) from pg_database where datname = '{db}'");
        assert_eq!(cluster.psql("postgres", &owner).trim(), "postgres");
        assert_eq!(
            cluster
                .psql(
                    db,
                    "select count(*) from pg_tables where schemaname = 'public'"
                )
                .trim(),
            "0"
        );
    }
    cluster.psql(
        db_name(&a),
        "create table t (x int); insert into t values (42);",
    );
    assert_eq!(cluster.psql(db_name(&a), "select x from t"), "42\n");
    assert_eq!(
        cluster
            .psql(db_name(&b), "select to_regclass('t') is null")
            .trim(),
        "t"
    );
}

#[test]
fn psql_panics_with_the_error() {
    let cluster = shared();
    let db = cluster.fresh_database();
    let err =
        std::panic::catch_unwind(|| cluster.psql(db_name(&db), "select * from no_such_table"))
            .unwrap_err();
    let message = err.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("no_such_table") && message.contains("does not exist"),
        "{message}"
    );
}

#[test]
fn the_shared_cluster_is_one_per_process() {
    assert!(std::ptr::eq(shared(), shared()));
    assert!(std::ptr::eq(shared(), Cluster::shared()));
    let url = shared().fresh_database();
    assert_eq!(
        shared()
            .psql(db_name(&url), "select current_database()")
            .trim(),
        db_name(&url)
    );
}

#[test]
fn stop_then_start_again_keeps_the_data_on_the_same_port() {
    let cluster = Cluster::start();
    let url = cluster.fresh_database();
    let db = db_name(&url);
    cluster.psql(
        db,
        "create table kept (x text); insert into kept values ('still here');",
    );
    let port = cluster.port();

    cluster.stop();
    assert!(!cluster.accepts_connections());
    assert!(!port_open(port));
    cluster.stop(); // a second stop does nothing

    cluster.start_again();
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.url(db), url);
    assert_eq!(cluster.psql(db, "select x from kept"), "still here\n");

    cluster.psql(db, "insert into kept values ('and this')");
    cluster.restart();
    assert_eq!(cluster.psql(db, "select count(*) from kept").trim(), "2");
}

#[test]
fn dropping_it_stops_the_server_and_removes_its_folder() {
    let cluster = Cluster::start();
    let dir = cluster.dir().to_path_buf();
    let port = cluster.port();
    assert!(port_open(port));
    drop(cluster);
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(!port_open(port));
}

/// Runs psql with a libpq connection string; its stdout, or its stderr as the error.
fn psql_conninfo(cluster: &Cluster, conninfo: &str) -> Result<String, String> {
    let out = cluster
        .psql_command()
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ])
        .arg(conninfo)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn verify_full(host: &str, port: u16, ca: &Path) -> String {
    format!(
        "sslmode=verify-full sslrootcert='{}' host={host} port={port} user=postgres dbname=postgres",
        ca.display()
    )
}

#[test]
fn tls_is_verified_against_its_ca_and_refused_with_another() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_test_ca_and_server_cert(tmp.path().join("good"));
    let (wrong_ca, _, _) = make_test_ca_and_server_cert(tmp.path().join("wrong"));
    let cluster = Cluster::start_with_tls(&cert, &key);
    let port = cluster.port();

    // The copies in its folder: the server's user's, 0600.
    for file in ["tls/server.crt", "tls/server.key"] {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(cluster.dir().join(file)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600, "{file}");
        assert_eq!(
            meta.uid(),
            std::fs::metadata(cluster.dir().join("data")).unwrap().uid(),
            "{file}"
        );
    }
    assert_eq!(cluster.psql("postgres", "show ssl").trim(), "on");

    assert_eq!(
        psql_conninfo(&cluster, &verify_full("127.0.0.1", port, &ca)).unwrap(),
        "t"
    );
    assert_eq!(
        psql_conninfo(&cluster, &verify_full("localhost", port, &ca)).unwrap(),
        "t"
    );
    let refused = psql_conninfo(&cluster, &verify_full("127.0.0.1", port, &wrong_ca)).unwrap_err();
    assert!(refused.contains("certificate verify failed"), "{refused}");
    // Plain connections still work (sslmode is the client's choice).
    let plain = format!("sslmode=disable host=127.0.0.1 port={port} user=postgres dbname=postgres");
    assert_eq!(psql_conninfo(&cluster, &plain).unwrap(), "f");
}

/// Set in the child process of the test below: where to write the cluster's folder and port.
const CHILD_ENV: &str = "JITCA_PGTEST_KILLED_CHILD_REPORT";

#[test]
fn a_killed_test_process_leaves_no_server_and_no_folder() {
    if let Some(report) = std::env::var_os(CHILD_ENV) {
        // The child: start the shared cluster and a dropped-never one, say where they are,
        // then wait to be killed.
        let own = Box::leak(Box::new(Cluster::start()));
        let line = format!(
            "{} {}\n{} {}\n",
            shared().dir().display(),
            shared().port(),
            own.dir().display(),
            own.port()
        );
        std::fs::write(format!("{}.tmp", report.to_string_lossy()), line).unwrap();
        std::fs::rename(format!("{}.tmp", report.to_string_lossy()), &report).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_killed_test_process_leaves_no_server_and_no_folder",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = eventually(Duration::from_secs(120), || report.exists());
    if !started {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child never reported its clusters");
    }
    let clusters: Vec<(String, u16)> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|line| {
            let (dir, port) = line.rsplit_once(' ').unwrap();
            (dir.to_string(), port.parse().unwrap())
        })
        .collect();
    assert_eq!(clusters.len(), 2);
    for (dir, port) in &clusters {
        assert!(Path::new(dir).is_dir(), "{dir}");
        assert!(port_open(*port), "{port}");
    }

    child.kill().unwrap(); // SIGKILL: no unwinding, no drop
    child.wait().unwrap();
    // Nothing of either cluster is left: no folder, no listener, no process whose command
    // line names its folder (the server, pg_ctl, the watchdog).
    let leftovers = |dir: &str| {
        let out = Command::new("pgrep")
            .args(["-a", "-f", dir])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (dir, port) in &clusters {
        let gone = eventually(Duration::from_secs(10), || {
            !Path::new(dir).exists() && !port_open(*port) && leftovers(dir).is_empty()
        });
        assert!(
            gone,
            "{dir} (port {port}) outlived the killed process: {}",
            leftovers(dir)
        );
    }
}

/// Set in the child process of the test below: the child starts a cluster with this as
/// JITCA_PGTEST_BIN.
const MISSING_ENV: &str = "JITCA_PGTEST_MISSING_CHILD";

#[test]
fn missing_binaries_panic_saying_what_to_install() {
    if std::env::var_os(MISSING_ENV).is_some() {
        Cluster::start();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "missing_binaries_panic_saying_what_to_install",
            "--exact",
            "--test-threads=1",
        ])
        .env(MISSING_ENV, "1")
        .env("JITCA_PGTEST_BIN", "/nonexistent/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("PostgreSQL server binaries are missing")
            && said.contains("/nonexistent/bin lacks initdb")
            && said.contains("install Debian's postgresql package"),
        "{said}"
    );
}
