//! Conformance bodies for the serving port (`DeploymentStore`), run by `serving_conformance!` on
//! every adapter: lifecycle, names, the generation compare-and-set (races included), the lookup by
//! model, and records committed with their changes.

use std::sync::Arc;

use plinth_core::serving::{
    Batching, Deployment, DeploymentSpec, FeatureDefault, ModelRef, ModelTarget, Objective, Rollback, Runtime, Variant,
};

use crate::conformance::{Harness, rec};
use crate::conformance_audit::{recorded, trail};
use crate::serving::{DeploymentStore, NewDeployment};
use crate::tracking::PageRequest;
use crate::{Error, ServingError};

/// Generates one `#[tokio::test]` per conformance body, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! serving_conformance {
    ($factory:path) => {
        $crate::serving_conformance!(@each $factory;
            serving_deployment_lifecycle, serving_generation_compare_and_set, serving_concurrent_updates,
            serving_deployments_of_model, serving_records_commit_with_changes);
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(harness) = $factory().await {
                    $crate::conformance_serving::$name(&harness).await;
                    drop(harness);
                }
            }
        )*
    };
}

fn variant(name: &str, model: &str, weight: u32, shadow: Option<f64>) -> Variant {
    Variant { name: name.to_owned(), model: ModelRef::parse(model).expect("model reference"), weight, shadow }
}

/// A spec exercising every stored field.
fn full_spec() -> DeploymentSpec {
    DeploymentSpec {
        description: Some("churn scoring".to_owned()),
        variants: vec![
            variant("champion", "churn@champion", 90, None),
            variant("challenger", "churn@challenger", 10, None),
            variant("candidate", "churn/7", 0, Some(0.25)),
        ],
        runtime: Runtime::OnnxRuntime,
        batching: Batching {
            max_batch_size: 32,
            preferred_batch_sizes: vec![8, 16],
            max_queue_delay_micros: 250,
            max_queue_size: 1000,
            timeout_millis: Some(1500),
        },
        instances: 2,
        threads: 3,
        feature_service: Some("churn_v2".to_owned()),
        rollback: Some(Rollback { max_error_rate: Some(0.015), max_p99_ms: Some(40.5), window_secs: 30, min_requests: 50 }),
        log_inputs: Some(0.125),
        feature_defaults: vec![
            FeatureDefault { feature: "tenure".into(), value: 0.0 },
            FeatureDefault { feature: "spend".into(), value: -1.5 },
        ],
        objective: Some(Objective { latency_ms: Some(25.5), latency_percentile: 0.95, availability: Some(0.999), window_secs: 600 }),
    }
}

fn new(name: &str, spec: DeploymentSpec, now: i64) -> NewDeployment {
    NewDeployment { name: name.to_owned(), spec, created_by: "alice".to_owned(), now }
}

pub async fn serving_deployment_lifecycle(h: &Harness) {
    let store = &h.serving;
    let created = store.create_deployment(&new("churn", full_spec(), 10), rec()).await.expect("create");
    assert_eq!((created.name.as_str(), created.generation, created.created_at, created.updated_at), ("churn", 1, 10, 10));
    assert_eq!(created.created_by, "alice");
    assert_eq!(created.spec, full_spec(), "every field round-trips, variants in their order");
    assert_eq!(store.get_deployment("churn").await.expect("get"), created);
    assert!(matches!(
        store.create_deployment(&new("churn", DeploymentSpec::single(ModelRef::parse("x/1").expect("ref")), 11), rec()).await,
        Err(Error::Serving(ServingError::DeploymentExists { .. }))
    ));
    assert!(matches!(store.get_deployment("nope").await, Err(Error::Serving(ServingError::DeploymentNotFound { .. }))));
    // Names are exact: no case folding.
    assert!(matches!(store.get_deployment("CHURN").await, Err(Error::Serving(ServingError::DeploymentNotFound { .. }))));

    for name in ["b", "a", "c"] {
        store
            .create_deployment(&new(name, DeploymentSpec::single(ModelRef::parse("m@champion").expect("ref")), 20), rec())
            .await
            .expect("create");
    }
    let first = store.list_deployments(PageRequest { offset: 0, limit: 2 }).await.expect("list");
    assert_eq!(first.items.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(first.has_more);
    let rest = store.list_deployments(PageRequest { offset: 2, limit: 10 }).await.expect("list");
    assert_eq!(rest.items.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["c", "churn"]);
    assert!(!rest.has_more);
    assert_eq!(rest.items[1].spec.variants.len(), 3, "listed deployments carry their variants");

    let deleted = store.delete_deployment("churn", rec()).await.expect("delete");
    assert_eq!(deleted.spec, full_spec());
    assert!(matches!(store.get_deployment("churn").await, Err(Error::Serving(ServingError::DeploymentNotFound { .. }))));
    assert!(matches!(store.delete_deployment("churn", rec()).await, Err(Error::Serving(ServingError::DeploymentNotFound { .. }))));
    // The name is free again, with a fresh generation and no leftover variants.
    let again = store
        .create_deployment(&new("churn", DeploymentSpec::single(ModelRef::parse("m/2").expect("ref")), 30), rec())
        .await
        .expect("again");
    assert_eq!((again.generation, again.spec.variants.len()), (1, 1));
}

pub async fn serving_generation_compare_and_set(h: &Harness) {
    let store = &h.serving;
    let created = store.create_deployment(&new("d", full_spec(), 10), rec()).await.expect("create");
    let mut changed = full_spec();
    changed.variants = vec![variant("champion", "churn@champion", 100, None)];
    changed.batching.max_batch_size = 8;
    changed.batching.preferred_batch_sizes = vec![];
    changed.feature_service = None;
    changed.description = None;
    changed.rollback = Some(Rollback { max_error_rate: None, max_p99_ms: Some(20.0), ..Rollback::default() });
    changed.log_inputs = None;
    changed.feature_defaults = Vec::new();
    changed.objective = None;
    let updated = store.update_deployment("d", created.generation, &changed, 50, rec()).await.expect("update");
    assert_eq!((updated.generation, updated.updated_at, updated.created_at), (2, 50, 10));
    assert_eq!(updated.spec, changed, "variants replaced whole, options and clears stored");
    // A writer that read generation 1 loses, and writes nothing.
    let stale = store.update_deployment("d", 1, &full_spec(), 60, recorded("stale-update")).await;
    assert!(matches!(stale, Err(Error::Conflict { .. })), "{stale:?}");
    assert_eq!(store.get_deployment("d").await.expect("get"), updated);
    assert!(trail(&h.audit, "stale-update").await.is_empty());
    assert!(matches!(
        store.update_deployment("nope", 1, &changed, 60, rec()).await,
        Err(Error::Serving(ServingError::DeploymentNotFound { .. }))
    ));
}

pub async fn serving_concurrent_updates(h: &Harness) {
    let store: Arc<dyn DeploymentStore> = h.serving.clone();
    store.create_deployment(&new("race", full_spec(), 10), rec()).await.expect("create");
    // Eight writers all read generation 1: exactly one wins, the others conflict.
    let tasks: Vec<_> = (0..8u32)
        .map(|idx| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut spec = full_spec();
                spec.instances = idx + 1;
                store.update_deployment("race", 1, &spec, 100 + i64::from(idx), rec()).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(d) => winners.push(d),
            Err(Error::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "one writer per generation");
    let now = store.get_deployment("race").await.expect("get");
    assert_eq!((now.generation, now.spec.instances), (2, winners[0].spec.instances));
}

pub async fn serving_deployments_of_model(h: &Harness) {
    let store = &h.serving;
    store.create_deployment(&new("one", full_spec(), 10), rec()).await.expect("create");
    let mut other = DeploymentSpec::single(ModelRef::parse("fraud@champion").expect("ref"));
    other.variants.push(variant("shadow", "churn/3", 0, Some(1.0)));
    store.create_deployment(&new("two", other, 10), rec()).await.expect("create");
    store
        .create_deployment(&new("three", DeploymentSpec::single(ModelRef::parse("fraud/1").expect("ref")), 10), rec())
        .await
        .expect("create");
    let names = |ds: Vec<Deployment>| ds.into_iter().map(|d| d.name).collect::<Vec<_>>();
    assert_eq!(names(store.deployments_of_model("churn").await.expect("churn")), ["one", "two"], "a shadow counts too");
    assert_eq!(names(store.deployments_of_model("fraud").await.expect("fraud")), ["three", "two"]);
    assert!(store.deployments_of_model("nothing").await.expect("none").is_empty());
    // Exact model names: `churn` is not `Churn`, and LIKE wildcards mean nothing.
    assert!(store.deployments_of_model("Churn").await.expect("case").is_empty());
    assert!(store.deployments_of_model("ch%").await.expect("wildcard").is_empty());
    let one = store.get_deployment("one").await.expect("get");
    assert!(one.spec.variants.iter().any(|v| v.model.target == ModelTarget::Alias("challenger".into())));
}

pub async fn serving_records_commit_with_changes(h: &Harness) {
    let (store, audit) = (&h.serving, &h.audit);
    let created = store.create_deployment(&new("audited", full_spec(), 10), recorded("create")).await.expect("create");
    store.update_deployment("audited", created.generation, &full_spec(), 20, recorded("update")).await.expect("update");
    assert!(store.create_deployment(&new("audited", full_spec(), 30), recorded("taken")).await.is_err());
    assert!(store.update_deployment("audited", 1, &full_spec(), 40, recorded("stale")).await.is_err());
    store.delete_deployment("audited", recorded("delete")).await.expect("delete");
    assert!(store.delete_deployment("audited", recorded("gone")).await.is_err());
    for (id, want) in [("create", 1), ("update", 1), ("taken", 0), ("stale", 0), ("delete", 1), ("gone", 0)] {
        assert_eq!(trail(audit, id).await.len(), want, "{id}");
    }
}
