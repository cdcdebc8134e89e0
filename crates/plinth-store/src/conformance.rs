//! The conformance suite: test bodies every `TrackingStore` adapter must pass.
//!
//! An adapter's tests invoke `tracking_conformance!(factory)` where `factory()` is an async fn
//! returning a `Harness` over a fresh, empty, migrated store. The bodies panic on failure.

use std::sync::Arc;

use plinth_core::ids::{ExperimentId, LoggedModelId, RunId};
use plinth_core::tracking::{Dataset, DatasetInput, KeyValue, LifecycleStage, LoggedModelStatus, Metric, RunStatus, ViewType};
use plinth_filter::{Grammar, parse_filter, parse_order_by};

use crate::tracking::{
    ArtifactLocation, ExperimentQuery, LoggedModelQuery, NewExperiment, NewLoggedModel, NewRun, PageRequest, RunQuery, RunUpdate, StepRange,
};
use crate::{AuditLog, AuthStore, Error, FeatureRegistryStore, RegistryStore, TrackingStore, WebhookStore};

/// A fresh store and whatever keeps it alive (a temporary directory, a scratch database).
/// The port fields are views of the same store (`registry_conformance!` uses `registry`, `audit`
/// and `webhooks`; `auth_conformance!` uses `auth`; `features_conformance!` uses `features`;
/// `serving_conformance!` uses `serving`; `jobs_conformance!` uses `jobs`; `sweeps_conformance!` uses
/// `sweeps`, and both use `audit` for the records).
pub struct Harness {
    pub store: Arc<dyn TrackingStore>,
    pub registry: Arc<dyn RegistryStore>,
    pub audit: Arc<dyn AuditLog>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub auth: Arc<dyn AuthStore>,
    pub features: Arc<dyn FeatureRegistryStore>,
    pub serving: Arc<dyn crate::DeploymentStore>,
    pub jobs: Arc<dyn crate::JobStore>,
    pub sweeps: Arc<dyn crate::SweepStore>,
    pub keep: Box<dyn std::any::Any + Send + Sync>,
}

/// Generates one `#[tokio::test]` per conformance body, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! tracking_conformance {
    ($factory:path) => {
        $crate::tracking_conformance!(@each $factory;
            experiments_lifecycle, experiment_search, runs_lifecycle, log_batch_semantics, run_search,
            metric_history, concurrent_experiment_creation, concurrent_logging, concurrent_param_conflict,
            logged_models, dataset_summaries);
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn tracking_records_commit_with_changes() {
            if let Some(harness) = $factory().await {
                $crate::conformance_audit::tracking_records_commit_with_changes(&harness).await;
                drop(harness);
            }
        }
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(harness) = $factory().await {
                    $crate::conformance::$name(harness.store.clone()).await;
                    drop(harness);
                }
            }
        )*
    };
}

/// The record the suites pass to every change: an event of its own, so every body also runs the
/// adapter's insert of the record inside the change's transaction.
pub(crate) fn rec<'a, T: ?Sized>() -> crate::audit::Record<'a, T> {
    crate::audit::Record::of(|_| {
        plinth_core::audit::AuditEvent::new(&plinth_core::audit::Actor::new("conformance"), "conformance.change", "conformance", "-")
    })
}

pub(crate) fn exp(name: &str) -> NewExperiment {
    NewExperiment {
        name: name.to_owned(),
        artifact_location: ArtifactLocation::UnderRoot("mlflow-artifacts:".into()),
        tags: vec![],
        now: 1000,
    }
}

pub(crate) fn new_run(experiment_id: &ExperimentId, name: &str, start_time: i64) -> NewRun {
    NewRun {
        run_id: RunId::generate(),
        experiment_id: experiment_id.clone(),
        user_id: "alice".into(),
        run_name: name.into(),
        start_time,
        tags: vec![KeyValue::new("mlflow.runName", name)],
    }
}

fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric { key: key.into(), value, timestamp, step, dataset_name: None, dataset_digest: None, model_id: None }
}

fn page(limit: i64) -> PageRequest {
    PageRequest { offset: 0, limit }
}

fn dataset_input(name: &str, digest: &str, context: Option<&str>) -> DatasetInput {
    DatasetInput {
        tags: context.map(|c| KeyValue::new(crate::tracking::DATASET_CONTEXT_TAG, c)).into_iter().collect(),
        dataset: Dataset {
            name: name.into(),
            digest: digest.into(),
            source_type: "local".into(),
            source: "{}".into(),
            schema: None,
            profile: None,
        },
    }
}

/// MLflow's `search-datasets`: the distinct (experiment, name, digest, context) of run inputs.
pub async fn dataset_summaries(store: Arc<dyn TrackingStore>) {
    let e1 = store.create_experiment(exp("ds-1"), rec()).await.expect("create");
    let e2 = store.create_experiment(exp("ds-2"), rec()).await.expect("create");
    let e3 = store.create_experiment(exp("ds-3"), rec()).await.expect("create");
    let r1 = store.create_run(new_run(&e1, "a", 1), rec()).await.expect("run").info.run_id;
    let r2 = store.create_run(new_run(&e1, "b", 2), rec()).await.expect("run").info.run_id;
    let r3 = store.create_run(new_run(&e2, "c", 3), rec()).await.expect("run").info.run_id;
    let r4 = store.create_run(new_run(&e3, "d", 4), rec()).await.expect("run").info.run_id;
    store
        .log_inputs(&r1, &[dataset_input("train", "d1", Some("training")), dataset_input("eval", "d2", None)], &[], rec())
        .await
        .expect("inputs");
    // The same dataset and context from a second run of the experiment is one summary; another context is another.
    store
        .log_inputs(&r2, &[dataset_input("train", "d1", Some("training")), dataset_input("train", "d1b", Some("tuning"))], &[], rec())
        .await
        .expect("inputs");
    store.log_inputs(&r3, &[dataset_input("train", "d1", Some("validation"))], &[], rec()).await.expect("inputs");
    store.log_inputs(&r4, &[dataset_input("other", "d9", Some("training"))], &[], rec()).await.expect("inputs");
    let summary = |e: &ExperimentId, name: &str, digest: &str, context: Option<&str>| crate::tracking::DatasetSummary {
        experiment_id: e.clone(),
        name: name.into(),
        digest: digest.into(),
        context: context.map(str::to_owned),
    };
    let got = store.search_dataset_summaries(&[e2.clone(), e1.clone()], 1000).await.expect("search");
    assert_eq!(
        got,
        vec![
            summary(&e1, "eval", "d2", None),
            summary(&e1, "train", "d1", Some("training")),
            summary(&e1, "train", "d1b", Some("tuning")),
            summary(&e2, "train", "d1", Some("validation")),
        ]
    );
    assert_eq!(store.search_dataset_summaries(&[e1.clone(), e2.clone()], 2).await.expect("search").len(), 2);
    assert!(store.search_dataset_summaries(&[], 1000).await.expect("search").is_empty());
    assert!(store.search_dataset_summaries(&[ExperimentId::parse("987654").expect("id")], 1000).await.expect("search").is_empty());
}

pub async fn experiments_lifecycle(store: Arc<dyn TrackingStore>) {
    store.ensure_default_experiment("mlflow-artifacts:/0", 1).await.expect("default");
    store.ensure_default_experiment("mlflow-artifacts:/0", 2).await.expect("default is idempotent");
    let default = store.get_experiment(&ExperimentId::parse("0").expect("id")).await.expect("default exists");
    assert_eq!(default.name, "Default");

    let id = store.create_experiment(exp("first"), rec()).await.expect("create");
    let got = store.get_experiment(&id).await.expect("get");
    assert_eq!(got.name, "first");
    assert_eq!(got.artifact_location, format!("mlflow-artifacts:/{id}"));
    assert_eq!(got.lifecycle_stage, LifecycleStage::Active);
    assert!(matches!(
        store.create_experiment(exp("first"), rec()).await,
        Err(Error::Tracking(crate::TrackingError::ExperimentNameExists { .. }))
    ));
    assert!(store.find_experiment_by_name("nope").await.expect("find").is_none());
    assert!(matches!(
        store.get_experiment(&ExperimentId::parse("999999").expect("id")).await,
        Err(Error::Tracking(crate::TrackingError::ExperimentNotFound { .. }))
    ));
    assert!(matches!(store.get_experiment(&ExperimentId::parse("abc").expect("id")).await, Err(Error::InvalidArgument { .. })));

    let other = store.create_experiment(exp("second"), rec()).await.expect("create");
    assert!(matches!(
        store.rename_experiment(&other, "first", 5, rec()).await,
        Err(Error::Tracking(crate::TrackingError::ExperimentNameExists { .. }))
    ));
    store.rename_experiment(&other, "renamed", 5, rec()).await.expect("rename");
    assert_eq!(store.get_experiment(&other).await.expect("get").name, "renamed");

    store.set_experiment_tag(&id, &KeyValue::new("team", "a"), rec()).await.expect("tag");
    store.set_experiment_tag(&id, &KeyValue::new("team", "b"), rec()).await.expect("tag upsert");
    assert_eq!(store.get_experiment(&id).await.expect("get").tags, vec![KeyValue::new("team", "b")]);
    store.delete_experiment_tag(&id, "team", rec()).await.expect("delete tag");
    assert!(matches!(
        store.delete_experiment_tag(&id, "team", rec()).await,
        Err(Error::Tracking(crate::TrackingError::ExperimentTagNotFound { .. }))
    ));

    // Deleting an experiment deletes its runs; restoring brings back the runs deleted with it only.
    let kept_deleted = store.create_run(new_run(&id, "gone-before", 10), rec()).await.expect("run");
    store.set_run_lifecycle(&kept_deleted.info.run_id, LifecycleStage::Deleted, 20, rec()).await.expect("delete run");
    let run = store.create_run(new_run(&id, "r", 10), rec()).await.expect("run");
    store.set_experiment_lifecycle(&id, LifecycleStage::Deleted, 30, rec()).await.expect("delete");
    assert_eq!(store.get_run(&run.info.run_id).await.expect("run").info.lifecycle_stage, LifecycleStage::Deleted);
    assert!(matches!(
        store.create_run(new_run(&id, "x", 1), rec()).await,
        Err(Error::Tracking(crate::TrackingError::ExperimentNotActive { .. }))
    ));
    assert!(matches!(
        store.rename_experiment(&id, "zzz", 5, rec()).await,
        Err(Error::Tracking(crate::TrackingError::ExperimentNotActiveForRename { .. }))
    ));
    assert!(matches!(
        store.create_experiment(exp("first"), rec()).await,
        Err(Error::Tracking(crate::TrackingError::ExperimentNameExists { .. }))
    ));
    store.set_experiment_lifecycle(&id, LifecycleStage::Active, 40, rec()).await.expect("restore");
    assert_eq!(store.get_run(&run.info.run_id).await.expect("run").info.lifecycle_stage, LifecycleStage::Active);
    assert_eq!(store.get_run(&kept_deleted.info.run_id).await.expect("run").info.lifecycle_stage, LifecycleStage::Deleted);
    // Restoring an active experiment or deleting a deleted one is refused, and cannot disturb the runs.
    assert!(matches!(
        store.set_experiment_lifecycle(&id, LifecycleStage::Active, 45, rec()).await,
        Err(Error::Tracking(crate::TrackingError::ExperimentNotFound { .. }))
    ));
    store.set_experiment_lifecycle(&id, LifecycleStage::Deleted, 50, rec()).await.expect("delete");
    assert!(matches!(
        store.set_experiment_lifecycle(&id, LifecycleStage::Deleted, 60, rec()).await,
        Err(Error::Tracking(crate::TrackingError::ExperimentNotFound { .. }))
    ));
    store.set_experiment_lifecycle(&id, LifecycleStage::Active, 70, rec()).await.expect("restore");
    assert_eq!(store.get_run(&run.info.run_id).await.expect("run").info.lifecycle_stage, LifecycleStage::Active);
}

pub async fn experiment_search(store: Arc<dyn TrackingStore>) {
    let mut ids = Vec::new();
    for idx in 0..7 {
        let mut new = exp(&format!("exp-{idx}"));
        new.now = 100 + idx;
        new.tags = vec![KeyValue::new("parity", if idx % 2 == 0 { "even" } else { "odd" })];
        ids.push(store.create_experiment(new, rec()).await.expect("create"));
    }
    store.set_experiment_lifecycle(&ids[6], LifecycleStage::Deleted, 500, rec()).await.expect("delete");
    let query = |filter: &str, order: &[&str], view, offset, limit| ExperimentQuery {
        restrict_to: None,
        view_type: view,
        filter: parse_filter(Grammar::Experiments, filter).expect("filter"),
        order_by: order.iter().map(|it| parse_order_by(Grammar::Experiments, it).expect("order")).collect(),
        page: PageRequest { offset, limit },
    };
    let res = store.search_experiments(&query("", &[], ViewType::ActiveOnly, 0, 100)).await.expect("search");
    let names: Vec<_> = res.items.iter().map(|it| it.name.as_str()).collect();
    assert_eq!(names, ["exp-5", "exp-4", "exp-3", "exp-2", "exp-1", "exp-0"], "default order is creation_time DESC");
    let res = store.search_experiments(&query("tags.parity = 'even'", &["name ASC"], ViewType::All, 0, 100)).await.expect("search");
    let names: Vec<_> = res.items.iter().map(|it| it.name.as_str()).collect();
    assert_eq!(names, ["exp-0", "exp-2", "exp-4", "exp-6"]);
    let res = store.search_experiments(&query("", &[], ViewType::DeletedOnly, 0, 100)).await.expect("search");
    assert_eq!(res.items.len(), 1);
    let res = store
        .search_experiments(&query("name LIKE 'exp-%' AND creation_time >= 103", &["name DESC"], ViewType::ActiveOnly, 0, 100))
        .await
        .expect("search");
    let names: Vec<_> = res.items.iter().map(|it| it.name.as_str()).collect();
    assert_eq!(names, ["exp-5", "exp-4", "exp-3"]);
    let res = store.search_experiments(&query("name ILIKE 'EXP-1'", &[], ViewType::ActiveOnly, 0, 100)).await.expect("search");
    assert_eq!(res.items.len(), 1);
    let res = store.search_experiments(&query("name LIKE 'EXP-%'", &[], ViewType::ActiveOnly, 0, 100)).await.expect("search");
    assert!(res.items.is_empty(), "LIKE is case-sensitive");
    // Pagination visits every experiment exactly once.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let res = store.search_experiments(&query("", &[], ViewType::All, offset, 3)).await.expect("search");
        seen.extend(res.items.iter().map(|it| it.experiment_id.clone()));
        if !res.has_more {
            break;
        }
        offset += 3;
    }
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want);
}

pub async fn runs_lifecycle(store: Arc<dyn TrackingStore>) {
    let id = store.create_experiment(exp("runs"), rec()).await.expect("create");
    let run = store.create_run(new_run(&id, "first", 42), rec()).await.expect("create run");
    assert_eq!(run.info.status, RunStatus::Running);
    assert_eq!(run.info.run_name, "first");
    assert_eq!(run.info.start_time, 42);
    assert_eq!(run.info.artifact_uri, format!("mlflow-artifacts:/{id}/{}/artifacts", run.info.run_id));
    let run_id = run.info.run_id.clone();
    let info = store
        .update_run(&run_id, &RunUpdate { status: Some(RunStatus::Finished), end_time: Some(99), run_name: Some("renamed".into()) }, rec())
        .await
        .expect("update");
    assert_eq!((info.status, info.end_time, info.run_name.as_str()), (RunStatus::Finished, Some(99), "renamed"));
    let run = store.get_run(&run_id).await.expect("get");
    assert!(run.data.tags.contains(&KeyValue::new("mlflow.runName", "renamed")));
    store.log_batch(&run_id, &[], &[], &[KeyValue::new("mlflow.runName", "via-tag")], rec()).await.expect("tag");
    assert_eq!(store.get_run(&run_id).await.expect("get").info.run_name, "via-tag");
    store.delete_run_tag(&run_id, "mlflow.runName", rec()).await.expect("delete tag");
    assert!(matches!(
        store.delete_run_tag(&run_id, "missing", rec()).await,
        Err(Error::Tracking(crate::TrackingError::RunTagNotFound { .. }))
    ));
    store.set_run_lifecycle(&run_id, LifecycleStage::Deleted, 5, rec()).await.expect("delete");
    assert!(matches!(
        store.log_batch(&run_id, &[metric("m", 1.0, 1, 0)], &[], &[], rec()).await,
        Err(Error::Tracking(crate::TrackingError::RunNotActive { .. }))
    ));
    assert!(matches!(
        store.update_run(&run_id, &RunUpdate::default(), rec()).await,
        Err(Error::Tracking(crate::TrackingError::RunNotActive { .. }))
    ));
    store.set_run_lifecycle(&run_id, LifecycleStage::Active, 6, rec()).await.expect("restore");
    store.log_batch(&run_id, &[metric("m", 1.0, 1, 0)], &[], &[], rec()).await.expect("log after restore");
    let missing = RunId::generate();
    assert!(matches!(store.get_run(&missing).await, Err(Error::Tracking(crate::TrackingError::RunNotFound { .. }))));
    assert!(matches!(
        store.log_batch(&missing, &[], &[], &[], rec()).await,
        Err(Error::Tracking(crate::TrackingError::RunNotFound { .. }))
    ));
    assert!(matches!(
        store.set_run_lifecycle(&missing, LifecycleStage::Deleted, 1, rec()).await,
        Err(Error::Tracking(crate::TrackingError::RunNotFound { .. }))
    ));
}

pub async fn log_batch_semantics(store: Arc<dyn TrackingStore>) {
    let id = store.create_experiment(exp("batch"), rec()).await.expect("create");
    let run_id = store.create_run(new_run(&id, "r", 1), rec()).await.expect("run").info.run_id;
    let metrics = vec![
        metric("loss", 3.0, 10, 0),
        metric("loss", 2.0, 11, 1),
        metric("loss", 9.0, 5, 1),
        metric("acc", f64::NAN, 1, 0),
        metric("big", f64::INFINITY, 1, 0),
        metric("small", f64::NEG_INFINITY, 1, 0),
    ];
    let params = vec![KeyValue::new("lr", "0.1"), KeyValue::new("empty", "")];
    store.log_batch(&run_id, &metrics, &params, &[KeyValue::new("t", "1")], rec()).await.expect("log");
    // Re-logging identical params is fine; a changed value fails and writes nothing of the batch.
    store.log_batch(&run_id, &[], &[KeyValue::new("lr", "0.1")], &[], rec()).await.expect("same param");
    let err =
        store.log_batch(&run_id, &[metric("other", 1.0, 1, 0)], &[KeyValue::new("lr", "0.2")], &[KeyValue::new("t", "2")], rec()).await;
    assert!(matches!(err, Err(Error::Tracking(crate::TrackingError::ParamChanged { .. }))), "{err:?}");
    let run = store.get_run(&run_id).await.expect("get");
    assert!(run.data.metrics.iter().all(|m| m.key != "other"), "a refused batch writes nothing");
    assert!(run.data.tags.contains(&KeyValue::new("t", "1")));
    let latest = |key: &str| run.data.metrics.iter().find(|m| m.key == key).expect("metric").clone();
    assert_eq!((latest("loss").value, latest("loss").step, latest("loss").timestamp), (2.0, 1, 11), "max by (step, timestamp)");
    assert!(latest("acc").value.is_nan());
    assert_eq!(latest("big").value, f64::MAX);
    assert_eq!(latest("small").value, -f64::MAX);
    // An older point does not replace the latest value.
    store.log_batch(&run_id, &[metric("loss", 0.5, 1, 0)], &[], &[], rec()).await.expect("log");
    let run = store.get_run(&run_id).await.expect("get");
    assert_eq!(run.data.metrics.iter().find(|m| m.key == "loss").expect("loss").value, 2.0);
    let mut params = run.data.params.clone();
    params.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(params, vec![KeyValue::new("empty", ""), KeyValue::new("lr", "0.1")]);
}

pub async fn run_search(store: Arc<dyn TrackingStore>) {
    let id = store.create_experiment(exp("search"), rec()).await.expect("create");
    let other = store.create_experiment(exp("search-other"), rec()).await.expect("create");
    let mut run_ids = Vec::new();
    for idx in 0..10i64 {
        let experiment = if idx == 9 { &other } else { &id };
        let run_id = store.create_run(new_run(experiment, &format!("run-{idx}"), 100 + idx % 3), rec()).await.expect("run").info.run_id;
        let mut metrics = vec![metric("acc", idx as f64 / 10.0, 1, 0)];
        if idx == 4 {
            metrics = vec![metric("acc", f64::NAN, 1, 0)];
        }
        let params = vec![KeyValue::new("model", if idx % 2 == 0 { "cnn" } else { "rnn" })];
        let tags = if idx < 5 { vec![KeyValue::new("team", "Vision")] } else { vec![] };
        store.log_batch(&run_id, &metrics, &params, &tags, rec()).await.expect("log");
        run_ids.push(run_id);
    }
    store.set_run_lifecycle(&run_ids[8], LifecycleStage::Deleted, 1, rec()).await.expect("delete");
    let search = |filter: &str, order: &[&str], view, ids: Vec<ExperimentId>| {
        let store = store.clone();
        let query = RunQuery {
            experiment_ids: ids,
            view_type: view,
            filter: parse_filter(Grammar::Runs, filter).expect("filter"),
            order_by: order.iter().map(|it| parse_order_by(Grammar::Runs, it).expect("order")).collect(),
            page: page(100),
        };
        async move { store.search_runs(&query).await.expect("search").items.into_iter().map(|r| r.info.run_name).collect::<Vec<_>>() }
    };
    let all = vec![id.clone(), other.clone()];
    assert_eq!(search("metrics.acc > 0.5", &["metrics.acc DESC"], ViewType::ActiveOnly, all.clone()).await, ["run-9", "run-7", "run-6"]);
    assert_eq!(
        search("params.model = 'cnn' and metrics.acc >= 0", &["metrics.acc ASC"], ViewType::All, vec![id.clone()]).await,
        ["run-0", "run-2", "run-6", "run-8"]
    );
    assert_eq!(
        search("tags.team ILIKE 'vision' and metrics.acc < 0.3", &["attributes.run_name ASC"], ViewType::ActiveOnly, all.clone()).await,
        ["run-0", "run-1", "run-2"]
    );
    assert_eq!(search("tags.team LIKE 'vision'", &[], ViewType::ActiveOnly, all.clone()).await.len(), 0);
    assert_eq!(search("tags.team IS NULL", &["run_name ASC"], ViewType::ActiveOnly, vec![id.clone()]).await, ["run-5", "run-6", "run-7"]);
    assert_eq!(
        search("params.model != 'cnn'", &["run_name DESC"], ViewType::ActiveOnly, vec![id.clone()]).await,
        ["run-7", "run-5", "run-3", "run-1"]
    );
    assert_eq!(search("", &[], ViewType::DeletedOnly, all.clone()).await, ["run-8"]);
    let by_id = format!("attributes.run_id IN ('{}', '{}')", run_ids[1], run_ids[2]);
    let mut got = search(&by_id, &[], ViewType::ActiveOnly, all.clone()).await;
    got.sort();
    assert_eq!(got, ["run-1", "run-2"]);
    // NaN and missing metric values sort last in both directions.
    let desc = search("", &["metrics.acc DESC"], ViewType::ActiveOnly, vec![id.clone()]).await;
    assert_eq!(desc.last().map(String::as_str), Some("run-4"));
    let asc = search("", &["metrics.acc ASC"], ViewType::ActiveOnly, vec![id.clone()]).await;
    assert_eq!(asc.last().map(String::as_str), Some("run-4"));
    // Default order: start_time DESC, then run_id ASC.
    let runs = store
        .search_runs(&RunQuery {
            experiment_ids: vec![id.clone()],
            view_type: ViewType::ActiveOnly,
            filter: vec![],
            order_by: vec![],
            page: page(100),
        })
        .await
        .expect("search");
    let keys: Vec<_> = runs.items.iter().map(|r| (-r.info.start_time, r.info.run_id.clone())).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // Pages cover every run exactly once.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let res = store
            .search_runs(&RunQuery {
                experiment_ids: all.clone(),
                view_type: ViewType::All,
                filter: vec![],
                order_by: vec![parse_order_by(Grammar::Runs, "params.model").expect("order")],
                page: PageRequest { offset, limit: 3 },
            })
            .await
            .expect("search");
        seen.extend(res.items.into_iter().map(|r| r.info.run_id));
        if !res.has_more {
            break;
        }
        offset += 3;
    }
    seen.sort();
    run_ids.sort();
    assert_eq!(seen, run_ids);
}

pub async fn metric_history(store: Arc<dyn TrackingStore>) {
    let id = store.create_experiment(exp("history"), rec()).await.expect("create");
    let run_id = store.create_run(new_run(&id, "r", 1), rec()).await.expect("run").info.run_id;
    let points: Vec<Metric> = (0..2500).map(|i| metric("loss", 1.0 / (i + 1) as f64, 1000 + i, i)).collect();
    for chunk in points.chunks(1000) {
        store.log_batch(&run_id, chunk, &[], &[], rec()).await.expect("log");
    }
    store.log_batch(&run_id, &points[..10], &[], &[], rec()).await.expect("identical points are de-duplicated");
    // History is ordered by (timestamp, step, value), as MLflow orders it.
    let skew = [metric("skew", 1.0, 200, 0), metric("skew", 2.0, 100, 1)];
    store.log_batch(&run_id, &skew, &[], &[], rec()).await.expect("log");
    let steps: Vec<i64> =
        store.get_metric_history(&run_id, "skew", page(10)).await.expect("history").items.iter().map(|m| m.step).collect();
    assert_eq!(steps, [1, 0]);
    let all = store.get_metric_history(&run_id, "loss", page(100_000)).await.expect("history");
    assert_eq!(all.items.len(), 2500);
    assert!(!all.has_more);
    assert!(all.items.windows(2).all(|w| w[0].step < w[1].step));
    let first = store.get_metric_history(&run_id, "loss", page(1000)).await.expect("history");
    assert!(first.has_more);
    assert_eq!(first.items.len(), 1000);
    let steps = store.list_metric_steps(&run_id, "loss", Some(StepRange { start: 10, end: 19 })).await.expect("steps");
    assert_eq!(steps, (10..20).collect::<Vec<_>>());
    let at = store.get_metric_points_at_steps(&run_id, "loss", &[0, 5, 2499]).await.expect("points");
    assert_eq!(at.iter().map(|m| m.step).collect::<Vec<_>>(), [0, 5, 2499]);
    assert!(store.get_metric_history(&run_id, "missing", page(10)).await.expect("history").items.is_empty());
    // Values and optional fields come back exactly, whatever their digits or characters.
    let tricky = [0.1, 1.0 / 3.0, 1e-300, 5e-324, -2.5, 123_456_789.123_456_79, f64::MAX / 3.0, -0.0, f64::NAN, f64::MAX];
    let points: Vec<Metric> = tricky
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut m = metric("exact", *v, 7, i as i64);
            if i % 2 == 0 {
                m.dataset_name = Some(format!("set,;'\"{i}é"));
                m.dataset_digest = Some(String::new());
                m.model_id = Some("m-1".into());
            }
            m
        })
        .collect();
    store.log_batch(&run_id, &points, &[], &[], rec()).await.expect("log");
    let latest: Vec<Metric> = tricky.iter().enumerate().map(|(i, v)| metric(&format!("t{i}"), *v, 1, 0)).collect();
    store.log_batch(&run_id, &latest, &[], &[], rec()).await.expect("log");
    let run = store.get_run(&run_id).await.expect("run");
    for (i, v) in tricky.iter().enumerate() {
        let got = run.data.metrics.iter().find(|m| m.key == format!("t{i}")).expect("latest").value;
        assert!(got.to_bits() == v.to_bits() || (got.is_nan() && v.is_nan()), "latest {got} != {v}");
    }
    let back = store.get_metric_history(&run_id, "exact", page(100)).await.expect("history").items;
    assert_eq!(back.len(), tricky.len());
    for (got, want) in back.iter().zip(&points) {
        assert!(
            got.value.to_bits() == want.value.to_bits()
                || (got.value.is_nan() && want.value.is_nan())
                || (got.value == 0.0 && want.value == 0.0),
            "{} != {}",
            got.value,
            want.value
        );
        assert_eq!((&got.dataset_name, &got.dataset_digest, &got.model_id), (&want.dataset_name, &want.dataset_digest, &want.model_id));
    }
    assert!(matches!(
        store.get_metric_history(&RunId::generate(), "loss", page(10)).await,
        Err(Error::Tracking(crate::TrackingError::RunNotFound { .. }))
    ));
}

pub async fn concurrent_experiment_creation(store: Arc<dyn TrackingStore>) {
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.create_experiment(exp("contended"), rec()).await }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(_) => created += 1,
            Err(Error::Tracking(crate::TrackingError::ExperimentNameExists { .. })) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(created, 1);
}

pub async fn concurrent_logging(store: Arc<dyn TrackingStore>) {
    let id = store.create_experiment(exp("concurrent"), rec()).await.expect("create");
    let run_id = store.create_run(new_run(&id, "r", 1), rec()).await.expect("run").info.run_id;
    let mut tasks = Vec::new();
    for worker in 0..16i64 {
        let store = store.clone();
        let run_id = run_id.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..5i64 {
                let metrics: Vec<Metric> =
                    (0..50).map(|i| metric("shared", (worker * 1000 + batch * 50 + i) as f64, worker, batch * 50 + i)).collect();
                let own = vec![metric(&format!("w{worker}"), batch as f64, batch, batch)];
                let params = vec![KeyValue::new("same", "value"), KeyValue::new(format!("p{worker}"), "v")];
                store
                    .log_batch(&run_id, &[metrics, own].concat(), &params, &[KeyValue::new("last", worker.to_string())], rec())
                    .await
                    .expect("log");
                let _ = store.get_run(&run_id).await.expect("read while writing");
            }
        }));
    }
    for task in tasks {
        task.await.expect("join");
    }
    let history = store.get_metric_history(&run_id, "shared", page(100_000)).await.expect("history");
    assert_eq!(history.items.len(), 16 * 5 * 50, "no lost writes");
    let run = store.get_run(&run_id).await.expect("get");
    assert_eq!(run.data.params.len(), 17);
    let latest = run.data.metrics.iter().find(|m| m.key == "shared").expect("latest");
    assert_eq!((latest.step, latest.timestamp), (249, 15));
}

pub async fn concurrent_param_conflict(store: Arc<dyn TrackingStore>) {
    let id = store.create_experiment(exp("conflict"), rec()).await.expect("create");
    let run_id = store.create_run(new_run(&id, "r", 1), rec()).await.expect("run").info.run_id;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let store = store.clone();
        let run_id = run_id.clone();
        tasks.push(tokio::spawn(
            async move { store.log_batch(&run_id, &[], &[KeyValue::new("lr", format!("{worker}"))], &[], rec()).await },
        ));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(()) => ok += 1,
            Err(Error::Tracking(crate::TrackingError::ParamChanged { .. })) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(ok, 1, "exactly one value of a param wins");
}

pub async fn logged_models(store: Arc<dyn TrackingStore>) {
    let id = store.create_experiment(exp("models"), rec()).await.expect("create");
    let run_id = store.create_run(new_run(&id, "r", 1), rec()).await.expect("run").info.run_id;
    let mut model_ids = Vec::new();
    for idx in 0..3i64 {
        let model = store
            .create_logged_model(
                NewLoggedModel {
                    model_id: LoggedModelId::generate(),
                    experiment_id: id.clone(),
                    name: format!("model-{idx}"),
                    model_type: Some("classifier".into()),
                    source_run_id: Some(run_id.clone()),
                    params: vec![KeyValue::new("depth", idx.to_string())],
                    tags: vec![KeyValue::new("stage", "dev")],
                    now: 100 + idx,
                },
                rec(),
            )
            .await
            .expect("create model");
        assert_eq!(model.status, LoggedModelStatus::Pending);
        assert_eq!(model.artifact_location, format!("mlflow-artifacts:/{id}/models/{}/artifacts", model.model_id));
        let mut m = metric("auc", 0.5 + idx as f64 / 10.0, 5, 0);
        m.model_id = Some(model.model_id.to_string());
        store.log_batch(&run_id, &[m], &[], &[], rec()).await.expect("log model metric");
        model_ids.push(model.model_id);
    }
    let ready = store.update_logged_model_status(&model_ids[0], LoggedModelStatus::Ready, None, 200, rec()).await.expect("finalize");
    assert_eq!(ready.status, LoggedModelStatus::Ready);
    assert_eq!(ready.last_updated_timestamp, 200);
    assert_eq!(ready.metrics.len(), 1);
    store.set_logged_model_tags(&model_ids[1], &[KeyValue::new("stage", "prod")], 201, rec()).await.expect("tags");
    store.delete_logged_model_tag(&model_ids[2], "stage", 202, rec()).await.expect("delete tag");
    assert!(matches!(
        store.delete_logged_model_tag(&model_ids[2], "stage", 203, rec()).await,
        Err(Error::Tracking(crate::TrackingError::LoggedModelTagNotFound { .. }))
    ));
    store.log_logged_model_params(&model_ids[2], &[KeyValue::new("extra", "1")], 204, rec()).await.expect("params");
    let query = |filter: &str, order: &[&str]| LoggedModelQuery {
        experiment_ids: vec![id.clone()],
        filter: parse_filter(Grammar::LoggedModels, filter).expect("filter"),
        order_by: order.iter().map(|it| parse_order_by(Grammar::LoggedModels, it).expect("order")).collect(),
        page: page(100),
    };
    let names =
        |rows: crate::tracking::Rows<plinth_core::tracking::LoggedModel>| rows.items.into_iter().map(|m| m.name).collect::<Vec<_>>();
    assert_eq!(names(store.search_logged_models(&query("", &[])).await.expect("search")), ["model-2", "model-1", "model-0"]);
    assert_eq!(names(store.search_logged_models(&query("tags.stage = 'prod'", &[])).await.expect("search")), ["model-1"]);
    assert_eq!(
        names(store.search_logged_models(&query("metrics.auc > 0.55", &["metrics.auc DESC"])).await.expect("search")),
        ["model-2", "model-1"]
    );
    assert_eq!(names(store.search_logged_models(&query("params.depth = '0'", &[])).await.expect("search")), ["model-0"]);
    store.delete_logged_model(&model_ids[0], 300, rec()).await.expect("delete");
    assert!(matches!(
        store.get_logged_model(&model_ids[0], false).await,
        Err(Error::Tracking(crate::TrackingError::LoggedModelNotFound { .. }))
    ));
    assert!(store.get_logged_model(&model_ids[0], true).await.is_ok());
    assert_eq!(store.search_logged_models(&query("", &[])).await.expect("search").items.len(), 2);
}

/// Runs `n` calls of `call` (given the store and the call's index) at once, answers in index
/// order. Each of the adapter's connections is opened first by `warm` (a read), and the calls
/// start together, so they meet in the database rather than one after another in a connection pool.
pub(crate) async fn race<S, T, W, WFut, Fut>(
    store: &Arc<S>,
    n: usize,
    warm: W,
    call: impl Fn(Arc<S>, usize) -> Fut,
) -> Vec<crate::Result<T>>
where
    S: ?Sized + Send + Sync + 'static,
    T: Send + 'static,
    W: Fn(Arc<S>) -> WFut,
    WFut: std::future::Future<Output = crate::Result<()>> + Send + 'static,
    Fut: std::future::Future<Output = crate::Result<T>> + Send + 'static,
{
    let warmed: Vec<_> = (0..n).map(|_| tokio::spawn(warm(store.clone()))).collect();
    for t in warmed {
        t.await.expect("task").expect("warm-up read");
    }
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|idx| {
            let (start, call) = (start.clone(), call(store.clone(), idx));
            tokio::spawn(async move {
                start.wait().await;
                call.await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    answers
}
