//! The conformance suite on a fresh SQLite file per test.

use std::sync::Arc;

use plinth_store::conformance::Harness;
use plinth_store_sql::SqlStore;

async fn fresh() -> Option<Harness> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("plinth.db").display());
    let store = Arc::new(SqlStore::connect(&super::config(url)).await.expect("connect"));
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
        keep: Box::new(dir),
    })
}

plinth_store::tracking_conformance!(fresh);
plinth_store::registry_conformance!(fresh);
plinth_store::auth_conformance!(fresh);
plinth_store::features_conformance!(fresh);
plinth_store::serving_conformance!(fresh);
plinth_store::jobs_conformance!(fresh);
plinth_store::sweeps_conformance!(fresh);

#[tokio::test]
async fn reopening_keeps_data_and_skips_applied_migrations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("plinth.db").display());
    let store = SqlStore::connect(&super::config(url.clone())).await.expect("connect");
    use plinth_store::TrackingStore;
    store.ensure_default_experiment("mlflow-artifacts:/0", 1).await.expect("default");
    store.close().await;
    let store = SqlStore::connect(&super::config(url)).await.expect("reconnect");
    let exp = store.get_experiment(&plinth_core::ids::ExperimentId::parse("0").expect("id")).await.expect("default survives");
    assert_eq!(exp.name, "Default");
}
