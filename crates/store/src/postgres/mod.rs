//! The PostgreSQL backend: several daemons on one database serve as one CA.
//!
//! Every guarantee of the [`Store`] trait holds across daemons, by the database's own means:
//!
//! - **State changes once.** A request or second factor carries a version from a sequence; a
//!   swap is `UPDATE ... WHERE version = read`, so of two daemons racing on one read, one
//!   changes it and the other gets [`Swap::Conflict`] (PostgreSQL re-checks the condition on
//!   the row the winner wrote).
//! - **One audit chain.** An append locks the chain's head row, seals the records after it
//!   ([`audit::seal`], exactly as the other backends do) and stores them with the new head, in
//!   the transaction of the change they record: every daemon appends in one order, and the
//!   chain verifies the same from any of them.
//! - **Serials** come from a sequence: never 0, never twice, never rolled back by a crash.
//! - **Durable at commit** (`synchronous_commit` on, PostgreSQL's default): an issuance that
//!   committed is there for every daemon; [`Store::flush`] has nothing left to do.
//! - **Changes pushed**, not polled: each change notifies channel `jitca_changes` with the
//!   request's id in its transaction (delivered at commit). [`Store::follow`] listens on a
//!   connection of its own and passes every id on; after a reconnection it passes on every
//!   request changed while it was away.
//!
//! The trait is synchronous (the authority runs it on blocking threads); this store runs the
//! async client on a small runtime of its own and waits for each answer at most `timeout`
//! ([`PgOptions::timeout`]): a database that is gone fails the operation with
//! [`StoreError::Unavailable`], and the pool connects again by itself when it is back.

mod connect;
pub mod schema;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, GenericClient, Transaction};

use crate::audit::{self, AuditQuery, AuditRecord, Head};
use crate::{
    ChangeHook, KrlState, Request, SecondFactor, SledStore, Store, StoreError, Swap, Versioned,
    VersionedFactor,
};

/// The channel every change is announced on.
const CHANNEL: &str = "jitca_changes";
/// Audit lines read per round trip when scanning the chain.
const PAGE: i64 = 4096;
/// Rows written per statement by [`PgStore::copy_from`].
const COPY_BATCH: usize = 4096;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://USER@HOST:PORT/DB`, with `?sslmode=verify-full` (and `&sslrootcert=FILE`)
    /// for TLS.
    pub url: String,
    /// The password (from `store_password_file`), if the server asks for one.
    pub password: Option<String>,
    /// The longest any operation waits for the database (`limits.store_timeout`).
    pub timeout: Duration,
    /// This daemon's name among those sharing the database: its marks are its own.
    pub node: String,
    /// Connections kept open at most.
    pub pool_size: usize,
}

impl PgOptions {
    /// Options with the defaults: 10 s, a pool of 8, node `jitca`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            timeout: Duration::from_secs(10),
            node: "jitca".into(),
            pool_size: 8,
        }
    }
}

impl PgOptions {
    /// Whether jitca accepts the URL (and can read the CA file it names), without connecting:
    /// the reason when not.
    pub fn check(&self) -> Result<(), String> {
        match connect::target(&self.url, None, self.timeout) {
            Ok(_) => Ok(()),
            Err(StoreError::Open { reason, .. }) => Err(reason),
            Err(other) => Err(other.to_string()),
        }
    }
}

/// A store in a PostgreSQL database.
pub struct PgStore {
    /// Runs the client; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    target: connect::Target,
    timeout: Duration,
    node: String,
}

/// What went wrong talking to the database. Every failure of this backend is one of "the
/// database could not be reached (in time)" and "it answered with an error".
pub(crate) fn db(e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() {
        StoreError::Unavailable(with_sources(&e))
    } else {
        StoreError::Io(format!("the database refused: {}", with_sources(&e)))
    }
}

/// An error and what caused it, in one line ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer").
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db(e),
        deadpool_postgres::PoolError::Timeout(_) => StoreError::Unavailable(
            "the database did not answer in time (no connection could be made or had)".into(),
        ),
        other => StoreError::Unavailable(with_sources(&other)),
    }
}

fn corrupt(key: impl Into<String>, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: key.into(),
        reason: e.to_string(),
    }
}

fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn token(version: i64) -> Vec<u8> {
    version.to_be_bytes().to_vec()
}

fn version_of(token: &[u8]) -> Option<i64> {
    <[u8; 8]>::try_from(token).ok().map(i64::from_be_bytes)
}

fn body(request: &Request) -> Vec<u8> {
    serde_json::to_vec(request).expect("a request always serialises")
}

fn decode_request(id: &str, bytes: &[u8]) -> Result<Request, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(format!("request {id}"), e))
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(what, format!("negative value {v}")))
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(what, format!("{v} is out of the database's range")))
}

impl PgStore {
    /// Connects, creates or migrates the schema, and checks the database answers; fails within
    /// the time-out when it does not. For the daemon.
    pub fn open(options: &PgOptions) -> Result<Self, StoreError> {
        Self::connect(options, true)
    }

    /// Connects to a database whose schema is exactly the one this binary writes, changing
    /// nothing: for offline commands (`report`, `usage`), which must not migrate a database
    /// older daemons still use.
    pub fn open_existing(options: &PgOptions) -> Result<Self, StoreError> {
        Self::connect(options, false)
    }

    fn connect(options: &PgOptions, migrate: bool) -> Result<Self, StoreError> {
        let target = connect::target(&options.url, options.password.as_deref(), options.timeout)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("jitca-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("cannot start the database client: {e}")))?;
        let manager = {
            let config = ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            };
            match target.tls.clone() {
                Some(tls) => Manager::from_config(target.config.clone(), tls, config),
                None => Manager::from_config(target.config.clone(), tokio_postgres::NoTls, config),
            }
        };
        let pool = {
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(options.pool_size.max(1))
                .wait_timeout(Some(options.timeout))
                .create_timeout(Some(options.timeout))
                .recycle_timeout(Some(options.timeout))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Io(format!("cannot make the connection pool: {e}")))?
        };
        let store = Self {
            runtime: Some(runtime),
            pool,
            target,
            timeout: options.timeout,
            node: options.node.clone(),
        };
        let shown = store.target.shown.clone();
        let applied = store
            .run(move |pool| async move {
                let mut client = pool.get().await.map_err(pool_error)?;
                // A commit must be durable before a certificate leaves: refuse a server (or
                // role) that does not wait for its WAL to reach the disk.
                let durability: String = client
                    .query_one("SHOW synchronous_commit", &[])
                    .await
                    .map_err(db)?
                    .get(0);
                if durability == "off" {
                    return Err(StoreError::Io(
                        "synchronous_commit is off for jitca's role or database: a crash of the \
                         database could lose issuances whose certificates have left; set it on"
                            .into(),
                    ));
                }
                if migrate {
                    return schema::migrate(&mut client).await;
                }
                match schema::version(&client).await? {
                    schema::LATEST => Ok(Vec::new()),
                    found => Err(StoreError::Io(format!(
                        "its jitca schema is version {found}, this jitca's is {}: start a \
                         daemon of this version on it first",
                        schema::LATEST
                    ))),
                }
            })
            .map_err(|e| StoreError::Open {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        if !applied.is_empty() {
            tracing::info!(database = %shown, versions = ?applied, "database schema migrated");
        }
        Ok(store)
    }

    /// Where the store is, without secrets.
    pub fn shown(&self) -> &str {
        &self.target.shown
    }

    /// For `jitca check`: connects and reads the schema version (0: none yet) without
    /// changing anything.
    pub fn probe(options: &PgOptions) -> Result<i32, StoreError> {
        let target = connect::target(&options.url, options.password.as_deref(), options.timeout)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("cannot start the database client: {e}")))?;
        let timeout = options.timeout;
        runtime.block_on(async move {
            let fut = async {
                let client = match target.tls {
                    Some(tls) => {
                        let (client, connection) = target.config.connect(tls).await.map_err(db)?;
                        tokio::spawn(connection);
                        client
                    }
                    None => {
                        let (client, connection) = target
                            .config
                            .connect(tokio_postgres::NoTls)
                            .await
                            .map_err(db)?;
                        tokio::spawn(connection);
                        client
                    }
                };
                schema::version(&client).await
            };
            tokio::time::timeout(timeout, fut)
                .await
                .unwrap_or_else(|_| Err(too_slow(timeout)))
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("runtime until drop").handle()
    }

    /// Runs `op` on the client's runtime and waits for it, at most the time-out.
    fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let timeout = self.timeout;
        let fut = op(self.pool.clone());
        self.handle().spawn(async move {
            let result = tokio::time::timeout(timeout, fut)
                .await
                .unwrap_or_else(|_| Err(too_slow(timeout)));
            let _ = tx.send(result);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Io("the database client stopped".into())))
    }

    /// Runs `op` in one transaction that commits only if `op` says so (`Ok((value, true))`).
    fn in_transaction<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: for<'a> FnOnce(
                &'a Transaction<'a>,
            ) -> std::pin::Pin<
                Box<dyn Future<Output = Result<(T, bool), StoreError>> + Send + 'a>,
            > + Send
            + 'static,
        T: Send + 'static,
    {
        self.run(|pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(db)?;
            let (value, commit) = op(&tx).await?;
            if commit {
                tx.commit().await.map_err(db)?;
            } else {
                tx.rollback().await.map_err(db)?;
            }
            Ok(value)
        })
    }

    fn mark_key(&self, name: &str) -> String {
        format!("{}/{name}", self.node)
    }

    /// Copies a stopped daemon's sled store into this (empty) database in one transaction:
    /// every request, the serial counter, the audit chain line for line (so every hash and the
    /// head are the same), the KRL's version, second factors and the marks (as this node's).
    /// `progress` is told each audit record's seq as it is copied, out of the head's.
    pub fn copy_from(
        &self,
        from: &SledStore,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CopyReport, StoreError> {
        let head = from.audit_head()?;
        let requests = from.requests()?;
        let serial = from.serial_counter()?;
        let krl = from.krl_state()?;
        let factors = from.second_factors()?;
        let marks = from.marks()?;
        // The chain is read in batches on this thread and sent to the transaction as it goes,
        // so a long chain is never held in memory whole.
        let (lines_tx, lines_rx) = std::sync::mpsc::sync_channel::<Vec<(i64, Vec<u8>)>>(4);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let copy = CopyJob {
            requests,
            serial,
            krl,
            factors: factors.clone(),
            marks: marks
                .into_iter()
                .map(|(name, value)| (self.mark_key(&name), value))
                .collect(),
            head: head.clone(),
        };
        let report = CopyReport {
            requests: copy.requests.len() as u64,
            audit_records: head.seq,
            serial,
            second_factors: factors.len() as u64,
        };
        let pool = self.pool.clone();
        self.handle().spawn(async move {
            let _ = done_tx.send(copy.run(pool, lines_rx).await);
        });
        let mut batch = Vec::with_capacity(COPY_BATCH);
        let mut sent = Ok(());
        from.raw_audit(&mut |seq, line| {
            batch.push((seq as i64, line.to_vec()));
            if batch.len() == COPY_BATCH {
                progress(seq, head.seq);
                if lines_tx.send(std::mem::take(&mut batch)).is_err() {
                    sent = Err(());
                    return false;
                }
            }
            seq < head.seq
        })?;
        if !batch.is_empty() && sent.is_ok() {
            let _ = lines_tx.send(batch);
        }
        drop(lines_tx);
        done_rx
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Io("the database client stopped".into())))?;
        progress(head.seq, head.seq);
        Ok(report)
    }
}

/// What [`PgStore::copy_from`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub requests: u64,
    pub audit_records: u64,
    /// The serial counter: the next certificate gets a serial above it.
    pub serial: u64,
    pub second_factors: u64,
}

/// Everything but the chain's lines, which arrive through a channel.
struct CopyJob {
    requests: Vec<Request>,
    serial: u64,
    krl: KrlState,
    factors: Vec<(String, SecondFactor)>,
    marks: Vec<(String, u64)>,
    head: Head,
}

impl CopyJob {
    async fn run(
        self,
        pool: Pool,
        lines: std::sync::mpsc::Receiver<Vec<(i64, Vec<u8>)>>,
    ) -> Result<(), StoreError> {
        let mut client = pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db)?;
        let row = tx
            .query_one(
                "SELECT (SELECT count(*) FROM jitca_requests),
                        (SELECT count(*) FROM jitca_audit),
                        (SELECT is_called FROM jitca_serials)",
                &[],
            )
            .await
            .map_err(db)?;
        let (requests, records, serials_used): (i64, i64, bool) =
            (row.get(0), row.get(1), row.get(2));
        if requests > 0 || records > 0 || serials_used {
            return Err(StoreError::Open {
                path: "the database".into(),
                reason: format!(
                    "it is not empty ({requests} requests, {records} audit records{}): copy only \
                     into a new database",
                    if serials_used {
                        ", serials handed out"
                    } else {
                        ""
                    }
                ),
            });
        }
        for chunk in self.requests.chunks(COPY_BATCH) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.id.as_str()).collect();
            let created: Vec<i64> = chunk.iter().map(|r| nanos(r.created_at)).collect();
            let deadlines: Vec<Option<i64>> =
                chunk.iter().map(|r| r.deadline().map(nanos)).collect();
            let bodies: Vec<Vec<u8>> = chunk.iter().map(body).collect();
            tx.execute(
                "INSERT INTO jitca_requests (id, version, created_ns, deadline_ns, body)
                 SELECT id, nextval('jitca_versions'), created, deadline, body
                 FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[])
                      AS t(id, created, deadline, body)",
                &[&ids, &created, &deadlines, &bodies],
            )
            .await
            .map_err(db)?;
        }
        // The receiver is a blocking channel: take each batch off the runtime's threads.
        let mut lines = Some(lines);
        loop {
            let rx = lines.take().expect("kept between batches");
            let (batch, rx) = tokio::task::spawn_blocking(move || (rx.recv().ok(), rx))
                .await
                .map_err(|e| StoreError::Io(e.to_string()))?;
            lines = Some(rx);
            let Some(batch) = batch else { break };
            let (seqs, bodies): (Vec<i64>, Vec<Vec<u8>>) = batch.into_iter().unzip();
            tx.execute(
                "INSERT INTO jitca_audit (seq, line) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                &[&seqs, &bodies],
            )
            .await
            .map_err(db)?;
        }
        let copied: i64 = tx
            .query_one("SELECT count(*) FROM jitca_audit", &[])
            .await
            .map_err(db)?
            .get(0);
        if copied != to_i64(self.head.seq, "audit head")? {
            return Err(StoreError::Io(format!(
                "read {copied} audit records but the chain's head is at {}: nothing copied",
                self.head.seq
            )));
        }
        if self.head.seq > 0 {
            let head = serde_json::to_string(&self.head).expect("a head serialises");
            tx.execute("UPDATE jitca_audit_head SET head = $1", &[&head])
                .await
                .map_err(db)?;
        }
        if self.serial > 0 {
            tx.execute(
                "SELECT setval('jitca_serials', $1, true)",
                &[&to_i64(self.serial, "serial counter")?],
            )
            .await
            .map_err(db)?;
        }
        if self.krl.version > 0 {
            let state = serde_json::to_string(&self.krl).expect("a krl state serialises");
            tx.execute("UPDATE jitca_krl SET state = $1", &[&state])
                .await
                .map_err(db)?;
        }
        for (user, factor) in &self.factors {
            let body = serde_json::to_vec(factor).expect("a factor serialises");
            tx.execute(
                "INSERT INTO jitca_second_factors (username, version, body)
                 VALUES ($1, nextval('jitca_versions'), $2)",
                &[user, &body],
            )
            .await
            .map_err(db)?;
        }
        for (name, value) in &self.marks {
            tx.execute(
                "INSERT INTO jitca_marks (name, value) VALUES ($1, $2)",
                &[name, &to_i64(*value, "mark")?],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}

fn too_slow(timeout: Duration) -> StoreError {
    StoreError::Unavailable(format!(
        "the database did not answer within {}s",
        timeout.as_secs_f64()
    ))
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which a caller on an async thread may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Seals `events` after the chain's head (locked until the transaction ends) and stores them
/// with the new head; returns it.
async fn append(tx: &Transaction<'_>, events: &[AuditRecord]) -> Result<Head, StoreError> {
    let row = tx
        .query_one("SELECT head FROM jitca_audit_head FOR UPDATE", &[])
        .await
        .map_err(db)?;
    let mut head = decode_head(row.get(0))?;
    if events.is_empty() {
        return Ok(head);
    }
    let now = Utc::now();
    let mut seqs = Vec::with_capacity(events.len());
    let mut lines = Vec::with_capacity(events.len());
    for event in events {
        let (line, next) = audit::seal(&head, event.clone(), now);
        seqs.push(to_i64(next.seq, "audit seq")?);
        lines.push(line);
        head = next;
    }
    tx.execute(
        "INSERT INTO jitca_audit (seq, line) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
        &[&seqs, &lines],
    )
    .await
    .map_err(db)?;
    let stored = serde_json::to_string(&head).expect("a head serialises");
    tx.execute("UPDATE jitca_audit_head SET head = $1", &[&stored])
        .await
        .map_err(db)?;
    Ok(head)
}

fn decode_head(stored: Option<String>) -> Result<Head, StoreError> {
    match stored {
        None => Ok(Head::genesis()),
        Some(text) => serde_json::from_str(&text).map_err(|e| corrupt("audit head", e)),
    }
}

async fn announce(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &id])
        .await
        .map_err(db)?;
    Ok(())
}

async fn read_requests(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Request>, StoreError> {
    let rows = client.query(sql, params).await.map_err(db)?;
    rows.iter()
        .map(|row| decode_request(row.get(0), row.get(1)))
        .collect()
}

impl Store for PgStore {
    fn create_request(&self, request: &Request, events: &[AuditRecord]) -> Result<(), StoreError> {
        let request = request.clone();
        let events = events.to_vec();
        self.in_transaction(move |tx| {
            Box::pin(async move {
                let inserted = tx
                    .execute(
                        "INSERT INTO jitca_requests (id, version, created_ns, deadline_ns, body)
                         VALUES ($1, nextval('jitca_versions'), $2, $3, $4)
                         ON CONFLICT (id) DO NOTHING",
                        &[
                            &request.id,
                            &nanos(request.created_at),
                            &request.deadline().map(nanos),
                            &body(&request),
                        ],
                    )
                    .await
                    .map_err(db)?;
                if inserted == 0 {
                    return Err(StoreError::Exists(request.id.clone()));
                }
                append(tx, &events).await?;
                announce(tx, &request.id).await?;
                Ok(((), true))
            })
        })
    }

    fn request(&self, id: &str) -> Result<Option<Versioned>, StoreError> {
        let id = id.to_string();
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_opt(
                    "SELECT version, body FROM jitca_requests WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(db)?;
            row.map(|row| {
                let request = decode_request(&id, row.get(1))?;
                Ok(Versioned::new(request, token(row.get(0))))
            })
            .transpose()
        })
    }

    fn requests(&self) -> Result<Vec<Request>, StoreError> {
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            read_requests(
                &**client,
                "SELECT id, body FROM jitca_requests ORDER BY created_ns DESC, id DESC",
                &[],
            )
            .await
        })
    }

    fn due(&self, now: DateTime<Utc>) -> Result<Vec<Request>, StoreError> {
        let now = nanos(now);
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            read_requests(
                &**client,
                "SELECT id, body FROM jitca_requests WHERE deadline_ns <= $1",
                &[&now],
            )
            .await
        })
    }

    fn replace_request(
        &self,
        current: &Versioned,
        next: &Request,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError> {
        let id = current.request.id.clone();
        let read = version_of(current.token());
        let next = next.clone();
        let events = events.to_vec();
        self.in_transaction(move |tx| {
            Box::pin(async move {
                let changed = match read {
                    Some(read) => tx
                        .execute(
                            "UPDATE jitca_requests
                             SET version = nextval('jitca_versions'), deadline_ns = $3,
                                 changed_at = now(), body = $4
                             WHERE id = $1 AND version = $2",
                            &[&id, &read, &next.deadline().map(nanos), &body(&next)],
                        )
                        .await
                        .map_err(db)?,
                    None => 0,
                };
                if changed == 0 {
                    let stored = tx
                        .query_opt("SELECT 1 FROM jitca_requests WHERE id = $1", &[&id])
                        .await
                        .map_err(db)?;
                    return match stored {
                        None => Err(StoreError::Missing(id.clone())),
                        Some(_) => Ok((Swap::Conflict, false)),
                    };
                }
                append(tx, &events).await?;
                announce(tx, &id).await?;
                Ok((Swap::Done, true))
            })
        })
    }

    fn next_serial(&self) -> Result<u64, StoreError> {
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            match client
                .query_one("SELECT nextval('jitca_serials')", &[])
                .await
            {
                Ok(row) => to_u64(row.get(0), "serial"),
                Err(e)
                    if e.code()
                        == Some(
                            &tokio_postgres::error::SqlState::SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                        ) =>
                {
                    Err(StoreError::SerialsExhausted)
                }
                Err(e) => Err(db(e)),
            }
        })
    }

    fn append_audit(&self, events: &[AuditRecord]) -> Result<Head, StoreError> {
        let events = events.to_vec();
        self.in_transaction(move |tx| {
            Box::pin(async move {
                let commit = !events.is_empty();
                Ok((append(tx, &events).await?, commit))
            })
        })
    }

    fn audit_head(&self) -> Result<Head, StoreError> {
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_one("SELECT head FROM jitca_audit_head", &[])
                .await
                .map_err(db)?;
            decode_head(row.get(0))
        })
    }

    fn scan_audit(
        &self,
        query: &AuditQuery,
        visit: &mut dyn FnMut(&AuditRecord, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let mut wanted = true;
        self.pages(query.after_seq.unwrap_or(0), &mut |seq, line| {
            let record: AuditRecord = serde_json::from_slice(line)
                .map_err(|e| corrupt(format!("audit record {seq}"), e))?;
            if query.matches(&record) {
                wanted = visit(&record, line);
            }
            Ok(wanted)
        })
    }

    fn raw_audit(&self, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        self.pages(0, &mut |seq, line| Ok(visit(seq, line)))
    }

    fn krl_state(&self) -> Result<KrlState, StoreError> {
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_one("SELECT state FROM jitca_krl", &[])
                .await
                .map_err(db)?;
            decode_krl(row.get(0))
        })
    }

    fn bump_krl(&self, now: DateTime<Utc>) -> Result<KrlState, StoreError> {
        self.in_transaction(move |tx| {
            Box::pin(async move {
                let row = tx
                    .query_one("SELECT state FROM jitca_krl FOR UPDATE", &[])
                    .await
                    .map_err(db)?;
                let next = KrlState {
                    version: decode_krl(row.get(0))?.version + 1,
                    generated_at: now,
                };
                let stored = serde_json::to_string(&next).expect("a krl state serialises");
                tx.execute("UPDATE jitca_krl SET state = $1", &[&stored])
                    .await
                    .map_err(db)?;
                Ok((next, true))
            })
        })
    }

    fn mark(&self, name: &str) -> Result<u64, StoreError> {
        let key = self.mark_key(name);
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_opt("SELECT value FROM jitca_marks WHERE name = $1", &[&key])
                .await
                .map_err(db)?;
            row.map_or(Ok(0), |row| to_u64(row.get(0), "mark"))
        })
    }

    fn set_mark(&self, name: &str, value: u64) -> Result<(), StoreError> {
        let key = self.mark_key(name);
        let value = to_i64(value, "mark")?;
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute(
                    "INSERT INTO jitca_marks (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[&key, &value],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every change committed with synchronous_commit on: durable already.
        Ok(())
    }

    fn second_factor(&self, user: &str) -> Result<Option<VersionedFactor>, StoreError> {
        let user = user.to_string();
        self.run(|pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_opt(
                    "SELECT version, body FROM jitca_second_factors WHERE username = $1",
                    &[&user],
                )
                .await
                .map_err(db)?;
            row.map(|row| {
                let factor: SecondFactor = serde_json::from_slice(row.get(1))
                    .map_err(|e| corrupt(format!("second factor of {user}"), e))?;
                Ok(VersionedFactor::new(factor, token(row.get(0))))
            })
            .transpose()
        })
    }

    fn swap_second_factor(
        &self,
        user: &str,
        current: Option<&VersionedFactor>,
        next: Option<&SecondFactor>,
        events: &[AuditRecord],
    ) -> Result<Swap, StoreError> {
        let user = user.to_string();
        // A token that is no version of ours can match nothing.
        let read = match current.map(|c| version_of(c.token())) {
            Some(None) => return Ok(Swap::Conflict),
            Some(Some(v)) => Some(v),
            None => None,
        };
        let next = next.map(|f| serde_json::to_vec(f).expect("a factor serialises"));
        let events = events.to_vec();
        self.in_transaction(move |tx| {
            Box::pin(async move {
                let changed = match (read, &next) {
                    (None, Some(body)) => tx
                        .execute(
                            "INSERT INTO jitca_second_factors (username, version, body)
                             VALUES ($1, nextval('jitca_versions'), $2)
                             ON CONFLICT (username) DO NOTHING",
                            &[&user, body],
                        )
                        .await
                        .map_err(db)?,
                    (Some(read), Some(body)) => tx
                        .execute(
                            "UPDATE jitca_second_factors
                             SET version = nextval('jitca_versions'), body = $3
                             WHERE username = $1 AND version = $2",
                            &[&user, &read, body],
                        )
                        .await
                        .map_err(db)?,
                    (Some(read), None) => tx
                        .execute(
                            "DELETE FROM jitca_second_factors WHERE username = $1 AND version = $2",
                            &[&user, &read],
                        )
                        .await
                        .map_err(db)?,
                    (None, None) => {
                        let stored = tx
                            .query_opt(
                                "SELECT 1 FROM jitca_second_factors WHERE username = $1 FOR UPDATE",
                                &[&user],
                            )
                            .await
                            .map_err(db)?;
                        u64::from(stored.is_none())
                    }
                };
                if changed == 0 {
                    return Ok((Swap::Conflict, false));
                }
                append(tx, &events).await?;
                Ok((Swap::Done, true))
            })
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn follow(&self, on_change: ChangeHook) {
        let target = self.target.clone();
        self.handle().spawn(listen(target, Arc::from(on_change)));
    }
}

/// What [`PgStore::pages`] calls with each line: whether to go on.
type PageVisit<'a> = dyn FnMut(u64, &[u8]) -> Result<bool, StoreError> + 'a;

impl PgStore {
    /// Calls `visit` with each stored audit line after `after`, in seq order, a page per
    /// round trip, until it returns false.
    fn pages(&self, after: u64, visit: &mut PageVisit<'_>) -> Result<(), StoreError> {
        // No record is stored past i64::MAX: nothing comes after such a seq.
        let Ok(mut after) = i64::try_from(after) else {
            return Ok(());
        };
        loop {
            let page = self.run(|pool| async move {
                let client = pool.get().await.map_err(pool_error)?;
                let rows = client
                    .query(
                        "SELECT seq, line FROM jitca_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                        &[&after, &PAGE],
                    )
                    .await
                    .map_err(db)?;
                Ok(rows
                    .into_iter()
                    .map(|row| (row.get::<_, i64>(0), row.get::<_, Vec<u8>>(1)))
                    .collect::<Vec<_>>())
            })?;
            let full = page.len() as i64 == PAGE;
            for (seq, line) in &page {
                if !visit(to_u64(*seq, "audit seq")?, line)? {
                    return Ok(());
                }
                after = *seq;
            }
            if !full {
                return Ok(());
            }
        }
    }
}

fn decode_krl(stored: Option<String>) -> Result<KrlState, StoreError> {
    match stored {
        None => Ok(KrlState {
            version: 0,
            generated_at: DateTime::UNIX_EPOCH,
        }),
        Some(text) => serde_json::from_str(&text).map_err(|e| corrupt("krl state", e)),
    }
}

/// Listens for changes on a connection of its own, for as long as the store lives: passes
/// every announced id to `on_change`; connects again after a second when the connection
/// drops, and then passes on every request changed since the previous connection began to
/// listen (what it may have missed).
async fn listen(target: connect::Target, on_change: Arc<ChangeHook>) {
    let mut listening_since: Option<DateTime<Utc>> = None;
    let mut down = false;
    loop {
        let e = listen_once(&target, &on_change, &mut listening_since, &mut down).await;
        if !down {
            tracing::warn!(database = %target.shown, error = %e,
                "not following the database's changes; connecting again every second");
            down = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_once(
    target: &connect::Target,
    on_change: &Arc<ChangeHook>,
    listening_since: &mut Option<DateTime<Utc>>,
    down: &mut bool,
) -> StoreError {
    match follow_once(target, on_change, listening_since, down).await {
        Ok(()) => StoreError::Unavailable("the listening connection closed".into()),
        Err(e) => e,
    }
}

/// One listening connection, until it drops.
async fn follow_once(
    target: &connect::Target,
    on_change: &Arc<ChangeHook>,
    listening_since: &mut Option<DateTime<Utc>>,
    down: &mut bool,
) -> Result<(), StoreError> {
    let (ids_tx, mut ids_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (client, driver) = match target.tls.clone() {
        Some(tls) => {
            let (client, connection) = target.config.connect(tls).await.map_err(db)?;
            (client, tokio::spawn(drive(connection, ids_tx)))
        }
        None => {
            let (client, connection) = target
                .config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(db)?;
            (client, tokio::spawn(drive(connection, ids_tx)))
        }
    };
    let started: DateTime<Utc> = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok::<_, tokio_postgres::Error>(client.query_one("SELECT now()", &[]).await?.get(0))
    }
    .await
    .map_err(db)?;
    if let Some(since) = listening_since.replace(started) {
        let missed = client
            .query(
                "SELECT id FROM jitca_requests WHERE changed_at >= $1",
                &[&since],
            )
            .await
            .map_err(db)?;
        if *down {
            tracing::info!(database = %target.shown, changed = missed.len(),
                "following the database's changes again");
        }
        for row in missed {
            on_change(row.get(0));
        }
    }
    *down = false;
    while let Some(id) = ids_rx.recv().await {
        on_change(&id);
    }
    driver.abort();
    Ok(())
}

/// Drives a listening connection, passing each notification's payload on.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    ids: tokio::sync::mpsc::UnboundedSender<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                if ids.send(n.payload().to_string()).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
