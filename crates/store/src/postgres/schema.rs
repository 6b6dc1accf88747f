//! The schema, made and migrated by the daemon itself: versioned migrations embedded in the
//! binary, applied in order, each once, never destructive.
//!
//! Daemons that start together take a transaction-scoped advisory lock first, so one applies
//! what is missing and the others find it done. A database whose schema is newer than this
//! binary knows is refused: an older daemon must not write into a layout it does not know.

use tokio_postgres::Client;

use crate::StoreError;

/// Every migration: its version, what it does, and its SQL.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "requests, the audit chain, serials, the KRL's version, marks, second factors",
    include_str!("migrations/0001_initial.sql"),
)];

/// The schema version this binary writes.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The advisory lock that makes one daemon at a time migrate ("jitc" in ASCII).
const MIGRATION_LOCK: i64 = 0x6a69_7463;

/// The schema version of the database (0: no jitca schema).
pub async fn version(client: &Client) -> Result<i32, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('jitca_schema') IS NOT NULL", &[])
        .await
        .map_err(super::db)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one("SELECT coalesce(max(version), 0) FROM jitca_schema", &[])
        .await
        .map_err(super::db)?;
    Ok(row.get(0))
}

/// Brings the schema to [`LATEST`]; returns the versions applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    let tx = client.transaction().await.map_err(super::db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(super::db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS jitca_schema (
             version     integer PRIMARY KEY,
             description text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(super::db)?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM jitca_schema", &[])
        .await
        .map_err(super::db)?
        .get(0);
    if current > LATEST {
        return Err(StoreError::Open {
            path: "the database".into(),
            reason: format!(
                "its jitca schema is version {current}, newer than this jitca knows ({LATEST}): \
                 run the newer jitca"
            ),
        });
    }
    let mut applied = Vec::new();
    for (version, description, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        tx.batch_execute(sql).await.map_err(super::db)?;
        tx.execute(
            "INSERT INTO jitca_schema (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await
        .map_err(super::db)?;
        applied.push(*version);
    }
    tx.commit().await.map_err(super::db)?;
    Ok(applied)
}
