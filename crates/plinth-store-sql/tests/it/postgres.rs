//! The conformance suite on a scratch PostgreSQL database per test.

use std::sync::Arc;

use plinth_store::conformance::Harness;
use plinth_store_sql::SqlStore;
use sqlx::{AssertSqlSafe, Connection, Executor};

/// Drops the scratch database when the test is done.
struct Scratch {
    admin_url: String,
    name: String,
    store: SqlStore,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let store = self.store.clone();
        // Drop runs outside the test's runtime; a short-lived runtime does the async cleanup.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                store.close().await;
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin_url).await {
                    let _ = conn.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await;
                }
            });
        })
        .join();
    }
}

/// A new scratch database on `PLINTH_TEST_POSTGRES_URL`'s server: (admin URL, its name, its URL).
/// `None`, with a note, when the variable is unset (the README test command always sets it).
pub(super) async fn scratch_database(what: &str) -> Option<(String, String, String)> {
    let Ok(admin_url) = std::env::var("PLINTH_TEST_POSTGRES_URL") else {
        // Written past the test harness's output capture, so that a plain `cargo test` shows it skipped.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("PLINTH_TEST_POSTGRES_URL is not set: the PostgreSQL {what} is skipped (the README test command sets it)\n").as_bytes(),
        );
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!("plinth_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(&admin_url).await.expect("connect to PLINTH_TEST_POSTGRES_URL");
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create scratch database");
    conn.close().await.expect("close");
    let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
    let url = format!("{base}/{name}");
    Some((admin_url, name, url))
}

async fn fresh() -> Option<Harness> {
    let (admin_url, name, url) = scratch_database("conformance run").await?;
    let store = SqlStore::connect(&super::config(url)).await.expect("connect scratch database");
    let keep = Scratch { admin_url, name, store: store.clone() };
    let store = Arc::new(store);
    Some(Harness {
        store: store.clone(),
        registry: store.clone(),
        audit: store.clone(),
        webhooks: store.clone(),
        auth: store.clone(),
        features: store.clone(),
        serving: store.clone(),
        jobs: store.clone(),
        sweeps: store,
        keep: Box::new(keep),
    })
}

plinth_store::tracking_conformance!(fresh);
plinth_store::registry_conformance!(fresh);
plinth_store::auth_conformance!(fresh);
plinth_store::features_conformance!(fresh);
plinth_store::serving_conformance!(fresh);
plinth_store::jobs_conformance!(fresh);
plinth_store::sweeps_conformance!(fresh);
