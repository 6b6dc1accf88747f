//! A throwaway PostgreSQL cluster for jitca's tests.
//!
//! [`Cluster::start`] makes a cluster of its own: `initdb` into a new folder under the system
//! temp dir, a free loopback port, `--auth=trust`, superuser `postgres`, `fsync=off`,
//! `max_connections=200`, the server's log in `postgres.log` in that folder. Tests that each
//! want a fresh database share one cluster per test process ([`shared`]) and take
//! [`Cluster::fresh_database`]; tests that stop, restart or reconfigure the server start
//! their own.
//!
//! The PostgreSQL server binaries are looked up in the newest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql` package; `scripts/test` installs it), or in `$JITCA_PGTEST_BIN`
//! when set. `initdb` refuses to run as root, so when the tests run as root the server's
//! binaries run as the `postgres` user (`runuser -u postgres --`) on a folder that user owns;
//! otherwise they run as the current user. Client binaries (`psql`, `createdb`,
//! `pg_isready`) run as the current user and connect over TCP to `127.0.0.1`.
//!
//! Nothing outlives the tests: dropping a [`Cluster`] stops the server and removes its
//! folder, and since the [`shared`] one is a `static` (never dropped) and a test process can
//! be killed, each cluster has a watchdog, a detached `sh` in its own process group that
//! waits for the test process to end and then runs `pg_ctl stop -m immediate` and removes the
//! folder. The watchdog notices the end at once (the pipe to it closes) and acts within a
//! fraction of a second, so a `postgres` process can still be seen for that moment after a
//! test binary exits.

#![warn(missing_docs)]

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a start may take before the server is declared dead (the brief's 30 s).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many free ports are tried when another process takes the one found first.
const PORT_TRIES: usize = 5;
/// How many lines of the server's log a failure message quotes.
const LOG_TAIL_LINES: usize = 40;

/// The environment variables libpq reads: cleared for every command run here, so that the
/// caller's environment cannot point the tests at another server or change how they connect.
const LIBPQ_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCRL",
    "PGTARGETSESSIONATTRS",
    "PGCLIENTENCODING",
    "PGSYSCONFDIR",
    "PGDATA",
    "PGTZ",
    "PGCONNECT_TIMEOUT",
];

/// Numbers the folders and databases made by this process (with its pid, they are unique).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// One throwaway PostgreSQL cluster: its folder, its port and its server.
///
/// Made by [`Cluster::start`] or [`Cluster::start_with_tls`]; dropping it stops the server
/// and removes the folder. The folder holds `data/` (the cluster), `postgres.log` (the
/// server's log, also its Unix socket directory) and, with TLS, `tls/`.
pub struct Cluster {
    /// The PostgreSQL binaries' folder.
    bin: PathBuf,
    /// The cluster's own folder under the system temp dir.
    dir: PathBuf,
    /// The loopback port the server listens on (the same across restarts).
    port: u16,
    /// Server binaries run through `runuser -u postgres --` (the tests run as root).
    as_postgres: bool,
    /// The watchdog that cleans up if the test process ends without dropping this.
    watchdog: Option<Watchdog>,
}

impl Cluster {
    /// Starts a new cluster and waits until it accepts connections.
    ///
    /// Panics, saying what is missing, when the PostgreSQL binaries (or, as root, `runuser`
    /// and the `postgres` user) are absent, and with the tail of the server's log when it does
    /// not accept connections within 30 s.
    pub fn start() -> Cluster {
        Cluster::launch(None)
    }

    /// Starts a new cluster like [`Cluster::start`] with `ssl=on`, serving the certificate
    /// (chain) in `cert_pem_path` with the key in `key_pem_path`.
    ///
    /// Both files are copied into the cluster's folder (`tls/server.crt`, `tls/server.key`,
    /// owned by the server's user, mode 0600). Plain connections are still accepted; a client
    /// asks for TLS with its `sslmode`. [`make_test_ca_and_server_cert`] makes a matching set.
    pub fn start_with_tls(
        cert_pem_path: impl AsRef<Path>,
        key_pem_path: impl AsRef<Path>,
    ) -> Cluster {
        Cluster::launch(Some((cert_pem_path.as_ref(), key_pem_path.as_ref())))
    }

    fn launch(tls: Option<(&Path, &Path)>) -> Cluster {
        let bin = find_bin();
        let as_postgres = running_as_root();
        let owner = if as_postgres {
            Some(postgres_ids())
        } else {
            None
        };
        let dir = make_folder();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap_or_else(|e| {
                panic!("jitca-pgtest: chown {} to postgres: {e}", dir.display())
            });
        }
        // The watchdog first: from here on, whatever happens to this process, the folder goes.
        let watchdog = Watchdog::spawn(&bin, &dir, as_postgres);
        // From here on a panic drops `cluster`, which stops whatever runs and removes the folder.
        let mut cluster = Cluster {
            bin,
            dir,
            port: 0,
            as_postgres,
            watchdog: Some(watchdog),
        };
        if as_postgres {
            let reach = cluster
                .server_command("/usr/bin/test")
                .arg("-w")
                .arg(&cluster.dir)
                .status();
            if !reach.is_ok_and(|s| s.success()) {
                panic!(
                    "jitca-pgtest: the postgres user cannot write to {} (a folder on the way is \
                     closed to it?): point TMPDIR at a folder every user can reach, such as /tmp",
                    cluster.dir.display()
                );
            }
        }
        cluster.initdb();
        let mut settings = String::new();
        if let Some((cert, key)) = tls {
            let tls_dir = cluster.dir.join("tls");
            fs::create_dir(&tls_dir)
                .unwrap_or_else(|e| panic!("jitca-pgtest: mkdir {}: {e}", tls_dir.display()));
            fs::set_permissions(&tls_dir, fs::Permissions::from_mode(0o700))
                .expect("jitca-pgtest: chmod tls/");
            let server_crt = tls_dir.join("server.crt");
            let server_key = tls_dir.join("server.key");
            for (from, to) in [(cert, &server_crt), (key, &server_key)] {
                let pem = fs::read(from)
                    .unwrap_or_else(|e| panic!("jitca-pgtest: read {}: {e}", from.display()));
                write_private(to, &pem, owner);
            }
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&tls_dir, Some(uid), Some(gid))
                    .expect("jitca-pgtest: chown tls/");
            }
            settings.push_str(&format!(
                "ssl = on\nssl_cert_file = {}\nssl_key_file = {}\n",
                conf_quote(&server_crt),
                conf_quote(&server_key)
            ));
        }
        // The settings live in their own file, included from postgresql.conf; only the port
        // changes between the attempts below.
        let conf = cluster.data().join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .unwrap_or_else(|e| panic!("jitca-pgtest: open {}: {e}", conf.display()));
        writeln!(file, "\n# jitca-pgtest\ninclude 'jitca-pgtest.conf'")
            .unwrap_or_else(|e| panic!("jitca-pgtest: write {}: {e}", conf.display()));
        drop(file);
        for attempt in 1..=PORT_TRIES {
            cluster.port = free_port();
            let ours = format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = {}\n\
                 max_connections = 200\nfsync = off\nfull_page_writes = off\n{settings}",
                cluster.port,
                conf_quote(&cluster.dir)
            );
            write_private(
                &cluster.data().join("jitca-pgtest.conf"),
                ours.as_bytes(),
                owner,
            );
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(Failure::PortTaken(_)) if attempt < PORT_TRIES => continue,
                Err(Failure::PortTaken(why) | Failure::Other(why)) => panic!("{why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The one cluster of this test process, started on first use and stopped (by its
    /// watchdog) when the process ends; for tests that each take a fresh database.
    /// Same as [`shared`].
    pub fn shared() -> &'static Cluster {
        shared()
    }

    /// Creates a new empty database owned by `postgres`, with a name unique to this test
    /// process (`t_<pid>_<counter>`), and returns its URL,
    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut createdb = self.client_command("createdb");
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-O",
            "postgres",
            &name,
        ]);
        let out = run(&mut createdb, None);
        if !out.status.success() {
            panic!(
                "jitca-pgtest: createdb {name} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.url(&name)
    }

    /// The URL of database `db` on this cluster: `postgres://postgres@127.0.0.1:PORT/db`
    /// (no password: the cluster trusts loopback connections).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The loopback port the server listens on (kept across [`Cluster::stop`] and
    /// [`Cluster::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's own folder (the data directory is `data/` in it, the log
    /// `postgres.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The folder of the PostgreSQL binaries in use (`psql`, `pg_ctl`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Stops the server (`pg_ctl stop -m fast`) and waits until it is gone; the folder and its
    /// data stay, for [`Cluster::start_again`]. Does nothing when the server is not running.
    pub fn stop(&self) {
        if !self.data().join("postmaster.pid").exists() {
            return;
        }
        let mut pg_ctl = self.server_command(self.bin.join("pg_ctl"));
        pg_ctl
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60", "-s"]);
        let out = run(&mut pg_ctl, None);
        if !out.status.success() {
            panic!(
                "jitca-pgtest: pg_ctl stop failed ({}): {}\n--- tail of {} ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_path().display(),
                self.log_tail()
            );
        }
    }

    /// Starts the server again after [`Cluster::stop`], on the same folder (so with the same
    /// data) and the same port, and waits until it accepts connections. Panics with the tail
    /// of the log if it does not (for example when another process took the port meanwhile).
    pub fn start_again(&self) {
        if let Err(Failure::PortTaken(why) | Failure::Other(why)) = self.try_start() {
            panic!("{why}");
        }
    }

    /// Stops the server and starts it again on the same folder and port
    /// ([`Cluster::stop`], then [`Cluster::start_again`]).
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Whether the server accepts connections right now (`pg_isready`).
    pub fn accepts_connections(&self) -> bool {
        let mut isready = self.client_command("pg_isready");
        isready.args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ]);
        isready.args(["-t", "2"]);
        run(&mut isready, None).status.success()
    }

    /// Runs `sql` (one or more statements, or psql meta-commands) in database `db` as
    /// `postgres` and returns what psql printed: rows unaligned, without headers or footers,
    /// one a line, columns separated by `|` (`select 1, 'a'` gives `"1|a\n"`). Stops at the
    /// first error and panics with psql's stderr.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut psql = self.psql_command();
        psql.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ]);
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
        let out = run(&mut psql, Some(sql.as_bytes()));
        if !out.status.success() {
            panic!(
                "jitca-pgtest: psql in {db} failed ({}): {}\n--- SQL ---\n{sql}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A `psql` command with a clean environment (none of the caller's `PG*` variables) and
    /// nothing else set: for tests that connect their own way, such as
    /// `psql "sslmode=verify-full sslrootcert=... host=127.0.0.1 port=..."`.
    pub fn psql_command(&self) -> Command {
        self.client_command("psql")
    }

    /// The data directory.
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `initdb` into `data/`: superuser `postgres`, trust authentication, UTF-8, C locale.
    fn initdb(&self) {
        let mut initdb = self.server_command(self.bin.join("initdb"));
        initdb.arg("-D").arg(self.data());
        initdb.args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        let out = run(&mut initdb, None);
        if !out.status.success() {
            panic!(
                "jitca-pgtest: initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// `pg_ctl start`, then waits (30 s in all) until the server accepts connections.
    fn try_start(&self) -> Result<(), Failure> {
        let started = Instant::now();
        let log = self.log_path();
        let log_before = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut pg_ctl = self.server_command(self.bin.join("pg_ctl"));
        pg_ctl
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log);
        pg_ctl.args(["-w", "-t", &READY_TIMEOUT.as_secs().to_string(), "-s"]);
        let out = run(&mut pg_ctl, None);
        if out.status.success() {
            // pg_ctl waited for the server's own "ready"; check from the outside too.
            loop {
                if self.accepts_connections() {
                    return Ok(());
                }
                if started.elapsed() > READY_TIMEOUT {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        let this_start = read_from(&log, log_before);
        let why = format!(
            "jitca-pgtest: the PostgreSQL server in {} did not accept connections on \
             127.0.0.1:{} within {} s (pg_ctl: {}, {})\n--- tail of {} ---\n{}",
            self.dir.display(),
            self.port,
            READY_TIMEOUT.as_secs(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            log.display(),
            self.log_tail()
        );
        if this_start.contains("Address already in use") {
            Err(Failure::PortTaken(why))
        } else {
            Err(Failure::Other(why))
        }
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("(no log: {e})"));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// A command running one of the server's binaries as the server's user.
    fn server_command(&self, program: impl AsRef<Path>) -> Command {
        let mut command = if self.as_postgres {
            let mut runuser = Command::new(runuser());
            runuser.args(["-u", "postgres", "--"]).arg(program.as_ref());
            runuser
        } else {
            Command::new(program.as_ref())
        };
        // The test's working directory may be closed to the postgres user.
        command.current_dir(&self.dir);
        clean_env(&mut command);
        command
    }

    /// A command running one of the client binaries as the current user.
    fn client_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        clean_env(&mut command);
        command.env("PGCONNECT_TIMEOUT", "10");
        command
    }
}

impl Drop for Cluster {
    /// Stops the server at once (`pg_ctl stop -m immediate`: the data is thrown away anyway),
    /// removes the folder and dismisses the watchdog. Errors are ignored: a drop never panics.
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let mut pg_ctl = self.server_command(self.bin.join("pg_ctl"));
            pg_ctl.arg("stop").arg("-D").arg(self.data()).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "60",
                "-s",
            ]);
            let _ = pg_ctl
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.dismiss();
        }
    }
}

/// The one cluster of this test process, started on first use ([`Cluster::start`]) and
/// stopped by its watchdog when the process ends: for tests that each take a
/// [`Cluster::fresh_database`]. Tests that stop or restart the server start their own.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(Cluster::start)
}

/// Makes a test CA and a server certificate it signed, with the `openssl` command line tool,
/// in `dir` (created if missing): returns the paths of the CA's certificate, the server's
/// certificate and the server's key, all PEM (`ca.pem`, `server.pem`, `server.key`).
///
/// The server certificate names `localhost` and `127.0.0.1` (subjectAltName DNS and IP) and is
/// for serverAuth; keys are ECDSA P-256, valid for a week from now. Calling it again with
/// another `dir` gives an unrelated CA (for the "wrong CA is refused" side of a test).
pub fn make_test_ca_and_server_cert(dir: impl AsRef<Path>) -> (PathBuf, PathBuf, PathBuf) {
    let dir = dir.as_ref();
    fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("jitca-pgtest: mkdir {}: {e}", dir.display()));
    let cnf = dir.join("openssl.cnf");
    fs::write(
        &cnf,
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = jitca-pgtest\n\
         [v3_ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [v3_server]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
    )
    .unwrap_or_else(|e| panic!("jitca-pgtest: write {}: {e}", cnf.display()));
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let p256 = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_name = format!("/CN=jitca-pgtest test CA {}", unique_suffix());
    openssl(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-new",
                "-days",
                "7",
                "-subj",
                &ca_name,
                "-extensions",
                "v3_ca",
            ])
            .args(p256)
            .arg("-config")
            .arg(&cnf)
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca),
    );
    openssl(
        Command::new("openssl")
            .args(["req", "-new", "-subj", "/CN=localhost"])
            .args(p256)
            .arg("-config")
            .arg(&cnf)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    openssl(
        Command::new("openssl")
            .args([
                "x509",
                "-req",
                "-days",
                "7",
                "-extensions",
                "v3_server",
                "-CAcreateserial",
            ])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-CAserial")
            .arg(dir.join("ca.srl"))
            .arg("-extfile")
            .arg(&cnf)
            .arg("-out")
            .arg(&cert),
    );
    (ca, cert, key)
}

/// Runs one openssl command; panics with its stderr when it fails.
fn openssl(command: &mut Command) {
    let out = command.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("jitca-pgtest: cannot run the openssl command line tool ({e}): install Debian's openssl package")
    });
    if !out.status.success() {
        panic!(
            "jitca-pgtest: {command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// Why a start failed: the port was taken by someone else (worth another port), or anything
/// else. Each carries the message to panic with.
enum Failure {
    PortTaken(String),
    Other(String),
}

/// The detached shell that cleans up after a test process that ends without dropping its
/// [`Cluster`] (the [`shared`] one, or a killed process).
struct Watchdog {
    child: Child,
    /// The write end of the watchdog's stdin: closed when this process ends, however it ends.
    stdin: ChildStdin,
}

/// `$1` the test process's pid, `$2` pg_ctl, `$3` the cluster's folder, `$4` runuser (empty
/// when not running as root). The first line on stdin is `done` when the cluster was dropped
/// (nothing left to do); end of file means the test process is ending (the kernel closes the
/// pipe as it exits, whether it returns, panics or is killed): then it waits while that pid
/// lives (a zombie, waiting for its parent, counts as gone), stops the server and removes
/// the folder.
const WATCHDOG_SCRIPT: &str = r#"
trap '' INT HUP
IFS= read -r line
[ "$line" = done ] && exit 0
while kill -0 "$1" 2>/dev/null; do
  case $(cat "/proc/$1/stat" 2>/dev/null) in *") Z "*) break ;; esac
  sleep 0.1
done
if [ -n "$4" ]; then
  "$4" -u postgres -- "$2" stop -D "$3/data" -m immediate -w -t 60 -s
else
  "$2" stop -D "$3/data" -m immediate -w -t 60 -s
fi
rm -rf -- "$3"
"#;

impl Watchdog {
    fn spawn(bin: &Path, dir: &Path, as_postgres: bool) -> Watchdog {
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("jitca-pgtest-watchdog");
        sh.arg(std::process::id().to_string())
            .arg(bin.join("pg_ctl"))
            .arg(dir);
        sh.arg(if as_postgres {
            runuser()
        } else {
            PathBuf::new()
        });
        // Its own process group: a Ctrl-C meant for the tests must not kill the cleaner.
        sh.process_group(0)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        clean_env(&mut sh);
        let mut child = sh
            .spawn()
            .unwrap_or_else(|e| panic!("jitca-pgtest: cannot start the watchdog (/bin/sh): {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        Watchdog { child, stdin }
    }

    /// Tells the watchdog the cluster is gone already and reaps it.
    fn dismiss(mut self) {
        let _ = self.stdin.write_all(b"done\n");
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// The PostgreSQL binaries: `$JITCA_PGTEST_BIN`, else the newest `/usr/lib/postgresql/*/bin`
/// that has `initdb`. Panics saying what is missing.
fn find_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let needed = [
            "initdb",
            "pg_ctl",
            "postgres",
            "psql",
            "createdb",
            "pg_isready",
        ];
        let missing_in = |bin: &Path| -> Vec<&str> {
            needed
                .iter()
                .copied()
                .filter(|b| !bin.join(b).is_file())
                .collect()
        };
        if let Some(bin) = std::env::var_os("JITCA_PGTEST_BIN") {
            let bin = PathBuf::from(bin);
            let missing = missing_in(&bin);
            return if missing.is_empty() {
                Ok(bin)
            } else {
                Err(format!(
                    "JITCA_PGTEST_BIN={} lacks {}",
                    bin.display(),
                    missing.join(", ")
                ))
            };
        }
        let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let version = name
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<Vec<u32>>>()?;
                Some((version, entry.path().join("bin")))
            })
            .filter(|(_, bin)| bin.join("initdb").is_file())
            .collect();
        versions.sort();
        let Some((_, bin)) = versions.pop() else {
            return Err("no /usr/lib/postgresql/*/bin/initdb".to_string());
        };
        let missing = missing_in(&bin);
        if missing.is_empty() {
            Ok(bin)
        } else {
            Err(format!("{} lacks {}", bin.display(), missing.join(", ")))
        }
    })
    .clone()
    .unwrap_or_else(|what| {
        panic!(
            "jitca-pgtest: the PostgreSQL server binaries are missing ({what}): these tests need \
             a real PostgreSQL server; install Debian's postgresql package (apt-get install \
             postgresql; scripts/test does this) or set JITCA_PGTEST_BIN to a folder with \
             initdb, pg_ctl, postgres, psql, createdb and pg_isready"
        )
    })
}

/// Whether this process runs as root (its effective uid, from /proc/self/status).
fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        match status.lines().find_map(|l| l.strip_prefix("Uid:")) {
            Some(uids) => uids.split_whitespace().nth(1) == Some("0"),
            None => Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout.trim_ascii() == b"0"),
        }
    })
}

/// The `postgres` user's uid and gid (as root the server runs as that user). Panics when
/// there is no such user or no `runuser`.
fn postgres_ids() -> (u32, u32) {
    static IDS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    let ids = *IDS.get_or_init(|| {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
            if !out.status.success() {
                return None;
            }
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        Some((id("-u")?, id("-g")?))
    });
    let Some(ids) = ids else {
        panic!(
            "jitca-pgtest: the tests run as root and initdb refuses root, but there is no \
             postgres user to run the server as: install Debian's postgresql package (it makes \
             the user), or run the tests as another user"
        );
    };
    if !runuser().is_file()
        && !Command::new("runuser")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        panic!(
            "jitca-pgtest: the tests run as root and need runuser (util-linux) to run the \
             PostgreSQL server as the postgres user"
        );
    }
    ids
}

/// `runuser`'s path (Debian's /usr/sbin/runuser, else whatever PATH finds).
fn runuser() -> PathBuf {
    let sbin = Path::new("/usr/sbin/runuser");
    if sbin.is_file() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("runuser")
    }
}

/// A new, empty folder of this cluster's own under the system temp dir.
fn make_folder() -> PathBuf {
    let tmp = std::env::temp_dir();
    for _ in 0..100 {
        let dir = tmp.join(format!(
            "jitca-pgtest-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("jitca-pgtest: mkdir {}: {e}", dir.display()),
        }
    }
    panic!("jitca-pgtest: no free folder name under {}", tmp.display())
}

/// This process's counter and the clock's nanoseconds: distinct names within and across
/// processes.
fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos:09}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A loopback port nobody listens on right now (the kernel picks it; it is free again once
/// the listener is closed, and a start that loses a race for it tries another).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .expect("jitca-pgtest: bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("jitca-pgtest: the listener's address")
        .port()
}

/// Writes `contents` to `path` with mode 0600, owned by `owner` when given.
fn write_private(path: &Path, contents: &[u8], owner: Option<(u32, u32)>) {
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(contents)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        Ok(())
    };
    write().unwrap_or_else(|e| panic!("jitca-pgtest: write {}: {e}", path.display()));
}

/// A path as a postgresql.conf string literal.
fn conf_quote(path: &Path) -> String {
    format!(
        "'{}'",
        path.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('\'', "''")
    )
}

/// Clears libpq's environment variables.
fn clean_env(command: &mut Command) {
    for var in LIBPQ_ENV {
        command.env_remove(var);
    }
}

/// Runs `command` with `input` on stdin (or none) and collects its output; panics when it
/// cannot be started at all.
fn run(command: &mut Command, input: Option<&[u8]>) -> Output {
    command.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("jitca-pgtest: cannot run {command:?}: {e}"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A writer thread: psql may fill its stdout before it has read all of its input.
        let input = input.to_vec();
        let writer = thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output();
        let _ = writer.join();
        return out.unwrap_or_else(|e| panic!("jitca-pgtest: waiting for {command:?}: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("jitca-pgtest: waiting for {command:?}: {e}"))
}

/// What `path` holds past byte `offset` (empty when unreadable).
fn read_from(path: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = fs::File::open(path)
        && file.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = file.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_told_apart_from_other_failures() {
        let cluster = Cluster::start();
        cluster.stop();
        let squatter = TcpListener::bind(("127.0.0.1", cluster.port())).unwrap();
        match cluster.try_start() {
            Err(Failure::PortTaken(why)) => {
                assert!(why.contains("Address already in use"), "{why}")
            }
            Err(Failure::Other(why)) => panic!("not seen as a taken port: {why}"),
            Ok(()) => panic!("started on a taken port"),
        }
        drop(squatter);
        cluster.start_again();
        assert!(cluster.accepts_connections());
    }

    #[test]
    fn config_strings_are_quoted() {
        assert_eq!(conf_quote(Path::new("/tmp/it's")), "'/tmp/it''s'");
    }
}
