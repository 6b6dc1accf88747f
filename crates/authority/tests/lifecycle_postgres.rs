//! The lifecycle cases of `lifecycle.rs` (every transition, refusal and race) against a
//! PostgreSQL database instead of memory: a throwaway cluster for this test process
//! (`jitca-pgtest`), a new database for each world.

/// A new, empty database for one world.
fn fresh_store() -> std::sync::Arc<dyn jitca_store::Store> {
    let url = jitca_pgtest::shared().fresh_database();
    std::sync::Arc::new(
        jitca_store::PgStore::open(&jitca_store::PgOptions::new(url))
            .expect("the test database opens"),
    )
}

include!("lifecycle/cases.rs");
