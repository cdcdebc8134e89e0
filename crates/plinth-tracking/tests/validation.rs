//! The tracking service's validation, table-driven at the service level on a real SQLite store:
//! each batch is either accepted whole or refused whole with `INVALID_PARAMETER_VALUE` and a
//! message naming the problem, and a refused batch writes nothing (MLflow's rules,
//! docs/tracking.md "Semantics kept exactly").

use std::sync::Arc;
use std::time::Duration;

use plinth_core::ErrorCode;
use plinth_core::HasErrorCode;
use plinth_core::audit::Actor;
use plinth_core::tracking::{KeyValue, Metric};
use plinth_store_sql::{SqlConfig, SqlStore};
use plinth_tracking::{ArtifactRoot, CreateRun, LogBatch, TrackingConfig, TrackingService};

async fn service(truncate_long_values: bool) -> (TrackingService, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("plinth.db").display());
    let config = SqlConfig { url, max_connections: 4, acquire_timeout: Duration::from_secs(10), sqlite_synchronous_full: false };
    let store = Arc::new(SqlStore::connect(&config).await.expect("open the store"));
    let blobs = Arc::new(plinth_blob::LocalBlobStore::new(dir.path().join("artifacts")).expect("artifacts"));
    let tracking =
        TrackingService::new(store.clone(), blobs, store, TrackingConfig { artifact_root: ArtifactRoot::Proxied, truncate_long_values });
    tracking.init().await.expect("init");
    (tracking, dir)
}

fn metric(key: &str, value: f64) -> Metric {
    Metric { key: key.into(), value, timestamp: 1, step: 0, dataset_name: None, dataset_digest: None, model_id: None }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue::new(key, value)
}

fn batch(metrics: Vec<Metric>, params: Vec<KeyValue>, tags: Vec<KeyValue>) -> LogBatch {
    LogBatch { metrics, params, tags }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_accepted_or_refused_whole() {
    let long_key = "k".repeat(251);
    let long_param = "v".repeat(6001);
    let cases: Vec<(&str, LogBatch, Result<(), &str>)> = vec![
        ("keys with letters, digits and _ - . / : and spaces", batch(vec![metric("a_b-c.d/e:f g", 1.0)], vec![], vec![]), Ok(())),
        ("NaN and infinities are values", batch(vec![metric("nan", f64::NAN), metric("inf", f64::INFINITY)], vec![], vec![]), Ok(())),
        ("a key of 250 characters", batch(vec![], vec![kv(&"k".repeat(250), "1")], vec![]), Ok(())),
        ("a key of 251 characters", batch(vec![], vec![kv(&long_key, "1")], vec![]), Err("250")),
        ("a key that leaves its path", batch(vec![metric("../escape", 1.0)], vec![], vec![]), Err("../escape")),
        ("an absolute key", batch(vec![], vec![], vec![kv("/abs", "x")]), Err("/abs")),
        ("a key with a doubled slash", batch(vec![metric("a//b", 1.0)], vec![], vec![]), Err("a//b")),
        ("a key with a character outside the rule", batch(vec![metric("bad$key", 1.0)], vec![], vec![]), Err("bad$key")),
        ("a param value over 6,000 characters (truncation off)", batch(vec![], vec![kv("p", &long_param)], vec![]), Err("6000")),
        ("1,001 metrics", batch((0..1001).map(|i| metric(&format!("m{i}"), 1.0)).collect(), vec![], vec![]), Err("1000")),
        ("101 params", batch(vec![], (0..101).map(|i| kv(&format!("p{i}"), "1")).collect(), vec![]), Err("100")),
        ("101 tags", batch(vec![], vec![], (0..101).map(|i| kv(&format!("t{i}"), "1")).collect()), Err("100")),
    ];
    let (tracking, _dir) = service(false).await;
    let actor = Actor::new("alice");
    let mut failures = Vec::new();
    for (what, b, want) in cases {
        let run = tracking.acting(&actor).create_run(CreateRun::default()).await.expect("run");
        let id = run.info.run_id.as_str().to_owned();
        let got = tracking.acting(&actor).log_batch(&id, b).await;
        let ok = match (&got, &want) {
            (Ok(()), Ok(())) => true,
            (Err(e), Err(text)) => e.error_code() == ErrorCode::InvalidParameterValue && e.to_string().contains(text),
            _ => false,
        };
        if !ok {
            failures.push(format!("{what}: want {want:?}, got {:?}", got.map_err(|e| (e.error_code(), e.to_string()))));
        }
        if want.is_err() {
            let data = tracking.get_run(&id).await.expect("run").data;
            if !(data.metrics.is_empty() && data.params.is_empty() && data.tags.iter().all(|t| t.key.starts_with("mlflow."))) {
                failures.push(format!("{what}: a refused batch wrote {data:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_are_immutable_and_a_conflict_writes_nothing() {
    let (tracking, _dir) = service(false).await;
    let actor = Actor::new("alice");
    let id = tracking.acting(&actor).create_run(CreateRun::default()).await.expect("run").info.run_id.as_str().to_owned();
    tracking.acting(&actor).log_batch(&id, batch(vec![], vec![kv("lr", "0.1")], vec![])).await.expect("first");
    tracking.acting(&actor).log_batch(&id, batch(vec![], vec![kv("lr", "0.1")], vec![])).await.expect("the same value again");
    let err = tracking
        .acting(&actor)
        .log_batch(&id, batch(vec![metric("loss", 0.5)], vec![kv("lr", "0.2")], vec![]))
        .await
        .expect_err("a changed param");
    assert_eq!(err.error_code(), ErrorCode::InvalidParameterValue, "{err}");
    assert!(tracking.get_run(&id).await.expect("run").data.metrics.is_empty(), "nothing of the refused batch is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_values_are_truncated_when_configured() {
    let (tracking, _dir) = service(true).await;
    let actor = Actor::new("alice");
    let id = tracking.acting(&actor).create_run(CreateRun::default()).await.expect("run").info.run_id.as_str().to_owned();
    tracking.acting(&actor).log_batch(&id, batch(vec![], vec![kv("p", &"v".repeat(7000))], vec![])).await.expect("truncated");
    let params = tracking.get_run(&id).await.expect("run").data.params;
    assert_eq!(params.iter().find(|p| p.key == "p").map(|p| p.value.len()), Some(6000));
}
