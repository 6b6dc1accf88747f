//! The request lifecycle at the authority's facade, against the in-memory store: no data
//! folder, no sshd, no root. Every transition (submit, approve, deny, lapse, issue, done,
//! revoke), every refusal with what it means and proof that it changed nothing, and the races
//! the lifecycle must win: approvers against each other, the sweeper's lapse against an
//! approval, a reload against an approval or an issuance.
//!
//! The cases are in `lifecycle/cases.rs`; `lifecycle_postgres.rs` runs the same ones against
//! a PostgreSQL database.

/// A new, empty store for one world.
fn fresh_store() -> std::sync::Arc<dyn jitca_store::Store> {
    std::sync::Arc::new(jitca_store::MemoryStore::new())
}

include!("lifecycle/cases.rs");
