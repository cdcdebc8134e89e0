//! The conformance suite of the feature registry port: versioned definitions and applies as
//! compare-and-sets, materialization state, training datasets and their lineage.
//!
//! An adapter's tests invoke `features_conformance!(factory)` with the same factory as
//! `tracking_conformance!`: an async fn returning a `Harness` over a fresh, empty, migrated store.
//! The bodies panic on failure.

use std::collections::BTreeSet;
use std::sync::Arc;

use plinth_core::{ErrorCode, HasErrorCode};

use crate::conformance::{Harness, rec};
use crate::features::{
    DefinitionChange, FeatureApply, FeatureDefinition, FeatureKind, MaterializationRun, TrainingDataset, TrainingDatasetRun, ViewState,
};
use crate::tracking::PageRequest;
use crate::{Error, FeatureRegistryStore};

/// Generates one `#[tokio::test]` per conformance body, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! features_conformance {
    ($factory:path) => {
        $crate::features_conformance!(@each $factory;
            features_apply_and_versions, features_apply_conflict_writes_nothing, features_concurrent_applies,
            features_materialization_state, features_training_datasets, features_training_dataset_runs,
            features_training_datasets_reading, features_training_dataset_malformed_definitions);
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(harness) = $factory().await {
                    $crate::conformance_features::$name(&harness).await;
                    drop(harness);
                }
            }
        )*
    };
}

fn spec(text: &str) -> String {
    format!("{{\"spec\":\"{text}\"}}")
}

fn digest(text: &str) -> String {
    format!("{:0>64}", text.len())
}

fn change(kind: FeatureKind, name: &str, expected_version: i64, text: Option<&str>) -> DefinitionChange {
    DefinitionChange { kind, name: name.to_owned(), expected_version, spec: text.map(spec), digest: text.map(digest) }
}

fn page(offset: i64, limit: i64) -> PageRequest {
    PageRequest { offset, limit }
}

fn versions(definitions: &[FeatureDefinition]) -> Vec<(FeatureKind, &str, i64)> {
    definitions.iter().map(|d| (d.kind, d.name.as_str(), d.version)).collect()
}

async fn all_applies(features: &Arc<dyn FeatureRegistryStore>) -> Vec<FeatureApply> {
    let rows = features.feature_applies(page(0, 1000)).await.expect("applies");
    assert!(!rows.has_more);
    rows.items
}

fn assert_conflict<T: std::fmt::Debug>(res: crate::Result<T>, names: &[&str]) {
    match res {
        Err(e @ Error::Conflict { .. }) => {
            assert_eq!(e.error_code(), ErrorCode::ResourceConflict);
            assert_eq!(e.error_code().name(), "RESOURCE_CONFLICT");
            let message = e.to_string();
            for name in names {
                assert!(message.contains(name), "the message names {name}: {message}");
            }
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}

pub async fn features_apply_and_versions(h: &Harness) {
    let features = &h.features;
    assert!(features.feature_heads().await.expect("heads").is_empty());
    assert!(all_applies(features).await.is_empty());
    assert!(features.feature_history(FeatureKind::Entity, "driver").await.expect("history").is_empty());

    // An empty apply records nothing.
    let empty = features.apply_feature_changes(&[], "alice", 50, rec()).await.expect("empty apply");
    assert_eq!(empty, FeatureApply { id: 0, actor: "alice".into(), created_at: 50, written: vec![] });
    assert!(all_applies(features).await.is_empty(), "an empty apply is not recorded");

    // Created: version 1 each, written in (kind, name) order whatever the order of the changes.
    let first = features
        .apply_feature_changes(
            &[
                change(FeatureKind::FeatureService, "driver_service", 0, Some("svc1")),
                change(FeatureKind::FeatureView, "driver_stats", 0, Some("view1")),
                change(FeatureKind::Source, "trips", 0, Some("src1")),
                change(FeatureKind::Entity, "driver", 0, Some("ent1")),
                change(FeatureKind::Entity, "customer", 0, Some("cust1")),
            ],
            "alice",
            100,
            rec(),
        )
        .await
        .expect("first apply");
    assert!(first.id > 0);
    assert_eq!((first.actor.as_str(), first.created_at), ("alice", 100));
    assert_eq!(
        versions(&first.written),
        [
            (FeatureKind::Entity, "customer", 1),
            (FeatureKind::Entity, "driver", 1),
            (FeatureKind::Source, "trips", 1),
            (FeatureKind::FeatureView, "driver_stats", 1),
            (FeatureKind::FeatureService, "driver_service", 1),
        ]
    );
    assert_eq!(
        first.written[1],
        FeatureDefinition {
            kind: FeatureKind::Entity,
            name: "driver".into(),
            version: 1,
            spec: Some(spec("ent1")),
            digest: Some(digest("ent1")),
            apply_id: first.id,
            created_at: 100,
            created_by: "alice".into(),
        }
    );

    // Updated: the version grows by one per change.
    let second = features
        .apply_feature_changes(&[change(FeatureKind::FeatureView, "driver_stats", 1, Some("view2"))], "bob", 200, rec())
        .await
        .expect("update");
    assert!(second.id > first.id, "apply ids grow");
    assert_eq!(versions(&second.written), [(FeatureKind::FeatureView, "driver_stats", 2)]);

    // Deleted: a version without a spec (a tombstone), alongside an update of another object.
    let third = features
        .apply_feature_changes(
            &[change(FeatureKind::FeatureView, "driver_stats", 2, None), change(FeatureKind::Entity, "driver", 1, Some("ent2"))],
            "carol",
            300,
            rec(),
        )
        .await
        .expect("delete and update");
    assert!(third.id > second.id);
    assert_eq!(versions(&third.written), [(FeatureKind::Entity, "driver", 2), (FeatureKind::FeatureView, "driver_stats", 3)]);
    let tombstone = &third.written[1];
    assert!(tombstone.is_deleted());
    assert_eq!((tombstone.spec.as_deref(), tombstone.digest.as_deref()), (None, None));
    assert_eq!((tombstone.apply_id, tombstone.created_at, tombstone.created_by.as_str()), (third.id, 300, "carol"));

    // One version: the newest (even a tombstone), or a given one.
    let newest = features.feature_definition(FeatureKind::FeatureView, "driver_stats", None).await.expect("newest");
    assert_eq!(&newest, tombstone);
    let old = features.feature_definition(FeatureKind::FeatureView, "driver_stats", Some(2)).await.expect("version 2");
    assert_eq!(old, second.written[0]);
    assert_eq!(old.spec.as_deref(), Some(spec("view2").as_str()));
    assert_eq!(features.feature_definition(FeatureKind::FeatureView, "driver_stats", Some(1)).await.expect("version 1"), first.written[3]);
    match features.feature_definition(FeatureKind::FeatureView, "driver_stats", Some(4)).await {
        Err(e @ Error::Features(crate::FeaturesError::FeatureDefinitionNotFound { .. })) => {
            assert_eq!(e.error_code(), ErrorCode::ResourceDoesNotExist);
            assert!(
                matches!(&e, Error::Features(crate::FeaturesError::FeatureDefinitionNotFound { kind: "feature_view", name, version: Some(4) }) if name == "driver_stats"),
                "{e:?}"
            );
        }
        other => panic!("expected FeatureDefinitionNotFound, got {other:?}"),
    }
    for version in [Some(0), Some(-1), Some(i64::MAX)] {
        assert!(matches!(
            features.feature_definition(FeatureKind::FeatureView, "driver_stats", version).await,
            Err(Error::Features(crate::FeaturesError::FeatureDefinitionNotFound { .. }))
        ));
    }
    // Kinds are separate name spaces.
    match features.feature_definition(FeatureKind::Source, "driver", None).await {
        Err(Error::Features(crate::FeaturesError::FeatureDefinitionNotFound { kind, name, version })) => {
            assert_eq!((kind, name.as_str(), version), ("source", "driver", None));
        }
        other => panic!("expected FeatureDefinitionNotFound, got {other:?}"),
    }
    assert!(matches!(
        features.feature_definition(FeatureKind::Entity, "Driver", None).await,
        Err(Error::Features(crate::FeaturesError::FeatureDefinitionNotFound { .. }))
    ));

    // History: every version, oldest first.
    let history = features.feature_history(FeatureKind::FeatureView, "driver_stats").await.expect("history");
    assert_eq!(history, [first.written[3].clone(), second.written[0].clone(), third.written[1].clone()]);
    let apply_ids: Vec<i64> = history.iter().map(|d| d.apply_id).collect();
    assert_eq!(apply_ids, [first.id, second.id, third.id]);
    assert!(features.feature_history(FeatureKind::Source, "driver_stats").await.expect("history").is_empty());

    // Heads: the newest version of everything, tombstones included.
    let heads = features.feature_heads().await.expect("heads");
    assert_eq!(
        heads,
        [first.written[0].clone(), third.written[0].clone(), first.written[2].clone(), third.written[1].clone(), first.written[4].clone(),]
    );

    // A deleted object can be defined again: the next version.
    let fourth = features
        .apply_feature_changes(&[change(FeatureKind::FeatureView, "driver_stats", 3, Some("view4"))], "alice", 400, rec())
        .await
        .expect("recreate");
    assert_eq!(versions(&fourth.written), [(FeatureKind::FeatureView, "driver_stats", 4)]);
    assert!(!features.feature_definition(FeatureKind::FeatureView, "driver_stats", None).await.expect("newest").is_deleted());

    // Applies: newest first, each with the versions it wrote, paged.
    let applies = all_applies(features).await;
    assert_eq!(applies, [fourth.clone(), third.clone(), second.clone(), first.clone()]);
    let rows = features.feature_applies(page(0, 2)).await.expect("page");
    assert_eq!((rows.items, rows.has_more), (vec![fourth.clone(), third.clone()], true));
    let rows = features.feature_applies(page(2, 2)).await.expect("page");
    assert_eq!((rows.items, rows.has_more), (vec![second.clone(), first.clone()], false));
    let rows = features.feature_applies(page(1, 2)).await.expect("page");
    assert_eq!((rows.items, rows.has_more), (vec![third, second], true));
    let rows = features.feature_applies(page(4, 2)).await.expect("page");
    assert_eq!((rows.items.len(), rows.has_more), (0, false));
    let rows = features.feature_applies(page(0, 0)).await.expect("page");
    assert_eq!((rows.items.len(), rows.has_more), (0, true));

    // Odd names are an error or nothing, never a crash.
    for odd in ["", "a\0b", "ü\u{10ffff}", &"x".repeat(5000)] {
        match features.feature_definition(FeatureKind::Entity, odd, None).await {
            Err(Error::Features(crate::FeaturesError::FeatureDefinitionNotFound { .. }) | Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
        match features.feature_history(FeatureKind::Entity, odd).await {
            Ok(history) if history.is_empty() => {}
            Err(Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
    }
}

pub async fn features_apply_conflict_writes_nothing(h: &Harness) {
    let features = &h.features;
    let first = features
        .apply_feature_changes(
            &[change(FeatureKind::Entity, "driver", 0, Some("ent1")), change(FeatureKind::Source, "trips", 0, Some("src1"))],
            "alice",
            100,
            rec(),
        )
        .await
        .expect("first apply");
    let heads = features.feature_heads().await.expect("heads");

    // The second change (in (kind, name) order) is stale: the first, a valid creation, is not written either.
    let stale_batch = [change(FeatureKind::Source, "trips", 0, Some("src2")), change(FeatureKind::Entity, "customer", 0, Some("cust1"))];
    assert_conflict(features.apply_feature_changes(&stale_batch, "bob", 200, rec()).await, &["trips"]);
    // Ahead of the head is as stale as behind it; so is an update of an object that does not exist.
    assert_conflict(
        features
            .apply_feature_changes(
                &[change(FeatureKind::Entity, "customer", 0, Some("cust1")), change(FeatureKind::Entity, "driver", 5, Some("ent2"))],
                "bob",
                210,
                rec(),
            )
            .await,
        &["driver"],
    );
    assert_conflict(
        features.apply_feature_changes(&[change(FeatureKind::FeatureView, "ghost", 1, None)], "bob", 220, rec()).await,
        &["ghost"],
    );
    // Creating what exists is a conflict too.
    assert_conflict(
        features.apply_feature_changes(&[change(FeatureKind::Entity, "driver", 0, Some("ent2"))], "bob", 230, rec()).await,
        &["driver"],
    );

    assert!(matches!(
        features.feature_definition(FeatureKind::Entity, "customer", None).await,
        Err(Error::Features(crate::FeaturesError::FeatureDefinitionNotFound { .. }))
    ));
    assert!(features.feature_history(FeatureKind::Entity, "customer").await.expect("history").is_empty());
    assert!(features.feature_history(FeatureKind::FeatureView, "ghost").await.expect("history").is_empty());
    assert_eq!(features.feature_history(FeatureKind::Source, "trips").await.expect("history"), [first.written[1].clone()]);
    assert_eq!(features.feature_heads().await.expect("heads"), heads, "a refused apply changes no head");
    assert_eq!(all_applies(features).await, std::slice::from_ref(&first), "a refused apply is not recorded");

    // Two changes of one object in one apply are refused, and write nothing.
    let twice = [change(FeatureKind::Entity, "customer", 0, Some("a")), change(FeatureKind::Entity, "customer", 0, Some("b"))];
    match features.apply_feature_changes(&twice, "bob", 240, rec()).await {
        Err(e) => assert!(matches!(e.error_code(), ErrorCode::InvalidParameterValue | ErrorCode::ResourceConflict), "{e:?}"),
        Ok(apply) => panic!("expected a refusal, got {apply:?}"),
    }
    assert!(features.feature_history(FeatureKind::Entity, "customer").await.expect("history").is_empty());

    // Re-planned against the current heads, the batch goes through.
    let retried = features
        .apply_feature_changes(
            &[change(FeatureKind::Source, "trips", 1, Some("src2")), change(FeatureKind::Entity, "customer", 0, Some("cust1"))],
            "bob",
            300,
            rec(),
        )
        .await
        .expect("re-planned apply");
    assert!(retried.id > first.id);
    assert_eq!(versions(&retried.written), [(FeatureKind::Entity, "customer", 1), (FeatureKind::Source, "trips", 2)]);
    assert_eq!(all_applies(features).await, [retried, first]);
}

/// Concurrent creations of one object: exactly one wins. Then concurrent read-modify-apply loops:
/// every writer lands exactly one version, none is lost.
pub async fn features_concurrent_applies(h: &Harness) {
    const WORKERS: i64 = 16;
    let features = &h.features;
    let kind = FeatureKind::FeatureView;
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let features = features.clone();
        tasks.push(tokio::spawn(async move {
            let text = format!("create-{worker}");
            features.apply_feature_changes(&[change(kind, "contended", 0, Some(&text))], &format!("w{worker}"), 100 + worker, rec()).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            Ok(apply) => winners.push(apply),
            Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("a losing creation must be a Conflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent creation wins");
    let history = features.feature_history(kind, "contended").await.expect("history");
    assert_eq!(history, winners[0].written);

    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let features = features.clone();
        tasks.push(tokio::spawn(async move {
            let text = format!("update-{worker}");
            for _ in 0..1000 {
                let head = features.feature_definition(kind, "contended", None).await.expect("head");
                match features
                    .apply_feature_changes(&[change(kind, "contended", head.version, Some(&text))], "w", 200 + worker, rec())
                    .await
                {
                    Ok(apply) => return apply,
                    Err(Error::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(other) => panic!("unexpected error: {other:?}"),
                }
            }
            panic!("worker {worker} never won the compare-and-set");
        }));
    }
    for task in tasks {
        task.await.expect("join");
    }
    let newest = features.feature_definition(kind, "contended", None).await.expect("newest");
    assert_eq!(newest.version, 1 + WORKERS);
    let history = features.feature_history(kind, "contended").await.expect("history");
    let numbers: Vec<i64> = history.iter().map(|d| d.version).collect();
    assert_eq!(numbers, (1..=1 + WORKERS).collect::<Vec<_>>());
    let apply_ids: Vec<i64> = history.iter().map(|d| d.apply_id).collect();
    assert_eq!(apply_ids.iter().collect::<BTreeSet<_>>().len(), history.len(), "one apply per version: {apply_ids:?}");
    assert!(apply_ids.windows(2).all(|it| it[0] < it[1]), "apply ids grow with commit order: {apply_ids:?}");
    let updates: BTreeSet<String> = history[1..].iter().map(|d| d.spec.clone().expect("not deleted")).collect();
    assert_eq!(updates, (0..WORKERS).map(|worker| spec(&format!("update-{worker}"))).collect::<BTreeSet<_>>(), "no update is lost");
    assert_eq!(all_applies(features).await.len(), history.len(), "refused applies are not recorded");
}

fn run(view: &str, start_ns: Option<i64>, end_ns: i64, newest_event_ns: Option<i64>, finished_at: i64) -> MaterializationRun {
    MaterializationRun {
        id: 0,
        view: view.to_owned(),
        view_version: 1,
        start_ns,
        end_ns,
        rows: end_ns / 100,
        newest_event_ns,
        started_at: finished_at - 5,
        finished_at,
        actor: "scheduler".to_owned(),
    }
}

async fn state(features: &Arc<dyn FeatureRegistryStore>, view: &str) -> ViewState {
    let states = features.view_states().await.expect("view states");
    states.into_iter().find(|s| s.view == view).expect("the view has a state")
}

pub async fn features_materialization_state(h: &Harness) {
    let features = &h.features;
    assert!(features.view_states().await.expect("states").is_empty());
    assert!(features.materialization_runs("driver_stats", page(0, 10)).await.expect("runs").items.is_empty());

    // A first (full) run sets the watermark and the newest event time.
    let mut runs = Vec::new();
    let record = |it: MaterializationRun| {
        let features = features.clone();
        async move {
            let id = features.record_materialization(&it, rec()).await.expect("record");
            MaterializationRun { id, ..it }
        }
    };
    runs.push(record(run("driver_stats", None, 1_000, Some(900), 60)).await);
    assert!(runs[0].id > 0);
    assert_eq!(
        state(features, "driver_stats").await,
        ViewState {
            view: "driver_stats".into(),
            watermark_ns: Some(1_000),
            newest_event_ns: Some(900),
            last_run_at: Some(60),
            updated_at: 60
        }
    );

    // A run that found no events leaves the newest event time as it is.
    runs.push(record(run("driver_stats", Some(1_001), 2_000, None, 70)).await);
    assert_eq!(
        state(features, "driver_stats").await,
        ViewState {
            view: "driver_stats".into(),
            watermark_ns: Some(2_000),
            newest_event_ns: Some(900),
            last_run_at: Some(70),
            updated_at: 70
        }
    );

    // A backfill behind the watermark does not move it back, but may raise the newest event time.
    runs.push(record(run("driver_stats", Some(0), 1_500, Some(1_400), 80)).await);
    let s = state(features, "driver_stats").await;
    assert_eq!((s.watermark_ns, s.newest_event_ns, s.last_run_at), (Some(2_000), Some(1_400), Some(80)));

    // Pushes raise the newest event time, never lower it, and leave the watermark alone.
    features.raise_newest_event("driver_stats", 1_300, 90, rec()).await.expect("raise");
    assert_eq!(state(features, "driver_stats").await.newest_event_ns, Some(1_400), "never lowered");
    features.raise_newest_event("driver_stats", 5_000, 100, rec()).await.expect("raise");
    let s = state(features, "driver_stats").await;
    assert_eq!((s.watermark_ns, s.newest_event_ns, s.last_run_at, s.updated_at), (Some(2_000), Some(5_000), Some(80), 100));
    features.raise_newest_event("driver_stats", 4_999, 110, rec()).await.expect("raise");
    assert_eq!(state(features, "driver_stats").await.newest_event_ns, Some(5_000));

    // A run older than a push keeps the pushed time; the watermark moves to its end.
    runs.push(record(run("driver_stats", Some(2_001), 3_000, Some(2_500), 120)).await);
    let s = state(features, "driver_stats").await;
    assert_eq!((s.watermark_ns, s.newest_event_ns, s.last_run_at, s.updated_at), (Some(3_000), Some(5_000), Some(120), 120));

    // A push to a view never materialized starts its state.
    features.raise_newest_event("pushed_only", 700, 130, rec()).await.expect("raise");
    assert_eq!(
        state(features, "pushed_only").await,
        ViewState { view: "pushed_only".into(), watermark_ns: None, newest_event_ns: Some(700), last_run_at: None, updated_at: 130 }
    );
    features.raise_newest_event("pushed_only", i64::MAX, 140, rec()).await.expect("extreme time");
    features.raise_newest_event("pushed_only", i64::MIN, 150, rec()).await.expect("extreme time");
    assert_eq!(state(features, "pushed_only").await.newest_event_ns, Some(i64::MAX));
    let other = record(run("customer_stats", None, 10_000, Some(9_000), 160)).await;

    // States by view name.
    let views: Vec<String> = features.view_states().await.expect("states").into_iter().map(|s| s.view).collect();
    assert_eq!(views, ["customer_stats", "driver_stats", "pushed_only"]);

    // Runs of one view, newest first, paged.
    runs.reverse();
    let rows = features.materialization_runs("driver_stats", page(0, 2)).await.expect("runs");
    assert_eq!((rows.items, rows.has_more), (runs[..2].to_vec(), true));
    let rows = features.materialization_runs("driver_stats", page(2, 2)).await.expect("runs");
    assert_eq!((rows.items, rows.has_more), (runs[2..].to_vec(), false));
    let rows = features.materialization_runs("driver_stats", page(0, 100)).await.expect("runs");
    assert_eq!((rows.items, rows.has_more), (runs.clone(), false));
    let rows = features.materialization_runs("driver_stats", page(4, 2)).await.expect("runs");
    assert_eq!((rows.items.len(), rows.has_more), (0, false));
    assert_eq!(features.materialization_runs("customer_stats", page(0, 10)).await.expect("runs").items, [other]);
    assert!(features.materialization_runs("pushed_only", page(0, 10)).await.expect("runs").items.is_empty());
    assert!(features.materialization_runs("nothing", page(0, 10)).await.expect("runs").items.is_empty());
}

/// A training dataset's `definitions` JSON.
fn definitions(read: &[(FeatureKind, &str, i64)]) -> String {
    let entries: Vec<String> =
        read.iter().map(|(kind, name, version)| format!(r#"{{"kind":"{}","name":"{name}","version":{version}}}"#, kind.as_str())).collect();
    format!("[{}]", entries.join(","))
}

fn dataset(id: &str, name: Option<&str>, created_at: i64) -> TrainingDataset {
    TrainingDataset {
        id: id.to_owned(),
        name: name.map(str::to_owned),
        features: vec!["driver_stats:conv_rate".to_owned(), "driver_stats:acc_rate".to_owned()],
        feature_service: None,
        full_feature_names: false,
        definitions: definitions(&[(FeatureKind::FeatureView, "driver_stats", 3), (FeatureKind::Entity, "driver", 1)]),
        entity_digest: format!("{created_at:0>64}"),
        entity_rows: 1_000 + created_at,
        output_uri: Some(format!("file:///data/{id}.parquet")),
        created_at,
        created_by: "alice".to_owned(),
    }
}

pub async fn features_training_datasets(h: &Harness) {
    let features = &h.features;
    let rows = features.training_datasets(page(0, 10)).await.expect("list");
    assert!(rows.items.is_empty() && !rows.has_more);

    let named = TrainingDataset {
        feature_service: Some("driver_service".to_owned()),
        full_feature_names: true,
        ..dataset("6f1c0b6e-0000-4000-8000-000000000001", Some("churn-train"), 100)
    };
    features.create_training_dataset(&named, rec()).await.expect("create named");
    let unnamed_a = TrainingDataset { output_uri: None, features: vec![], ..dataset("6f1c0b6e-0000-4000-8000-000000000002", None, 200) };
    features.create_training_dataset(&unnamed_a, rec()).await.expect("create unnamed");
    let unnamed_b = dataset("6f1c0b6e-0000-4000-8000-000000000003", None, 200);
    features.create_training_dataset(&unnamed_b, rec()).await.expect("unnamed datasets can be many");
    let other = dataset("6f1c0b6e-0000-4000-8000-000000000004", Some("other"), 150);
    features.create_training_dataset(&other, rec()).await.expect("create");

    // By id or by name, every field as stored.
    assert_eq!(features.training_dataset(&named.id).await.expect("by id"), named);
    assert_eq!(features.training_dataset("churn-train").await.expect("by name"), named);
    assert_eq!(features.training_dataset(&unnamed_a.id).await.expect("by id"), unnamed_a);
    assert_eq!(features.training_dataset(&unnamed_b.id).await.expect("by id"), unnamed_b);
    match features.training_dataset("Churn-Train").await {
        Err(e @ Error::Features(crate::FeaturesError::TrainingDatasetNotFound { .. })) => {
            assert_eq!(e.error_code(), ErrorCode::ResourceDoesNotExist);
            assert!(
                matches!(e, Error::Features(crate::FeaturesError::TrainingDatasetNotFound { id }) if id == "Churn-Train"),
                "names are case-sensitive"
            );
        }
        other => panic!("expected TrainingDatasetNotFound, got {other:?}"),
    }

    // Names are unique.
    let duplicate = dataset("6f1c0b6e-0000-4000-8000-000000000005", Some("churn-train"), 300);
    match features.create_training_dataset(&duplicate, rec()).await {
        Err(e @ Error::Features(crate::FeaturesError::TrainingDatasetExists { .. })) => {
            assert_eq!(e.error_code(), ErrorCode::ResourceAlreadyExists);
            assert!(matches!(e, Error::Features(crate::FeaturesError::TrainingDatasetExists { name }) if name == "churn-train"));
        }
        other => panic!("expected TrainingDatasetExists, got {other:?}"),
    }
    assert!(matches!(
        features.training_dataset(&duplicate.id).await,
        Err(Error::Features(crate::FeaturesError::TrainingDatasetNotFound { .. }))
    ));
    assert_eq!(features.training_dataset("churn-train").await.expect("by name"), named, "a refused create changes nothing");
    // Ids are unique too.
    assert!(features.create_training_dataset(&dataset(&named.id, Some("fresh-name"), 300), rec()).await.is_err());
    assert!(matches!(
        features.training_dataset("fresh-name").await,
        Err(Error::Features(crate::FeaturesError::TrainingDatasetNotFound { .. }))
    ));

    // An id match wins over a name match.
    let lookalike = dataset("6f1c0b6e-0000-4000-8000-000000000006", Some(&unnamed_a.id), 50);
    features.create_training_dataset(&lookalike, rec()).await.expect("a name that is another dataset's id");
    assert_eq!(features.training_dataset(&unnamed_a.id).await.expect("by id"), unnamed_a);
    assert_eq!(features.training_dataset(&lookalike.id).await.expect("by id"), lookalike);

    // Newest first: by creation time, then id, both descending; paged.
    let expected = [unnamed_b.clone(), unnamed_a.clone(), other.clone(), named.clone(), lookalike.clone()];
    let rows = features.training_datasets(page(0, 10)).await.expect("list");
    assert_eq!((rows.items, rows.has_more), (expected.to_vec(), false));
    let rows = features.training_datasets(page(0, 2)).await.expect("list");
    assert_eq!((rows.items, rows.has_more), (expected[..2].to_vec(), true));
    let rows = features.training_datasets(page(2, 2)).await.expect("list");
    assert_eq!((rows.items, rows.has_more), (expected[2..4].to_vec(), true));
    let rows = features.training_datasets(page(4, 2)).await.expect("list");
    assert_eq!((rows.items, rows.has_more), (expected[4..].to_vec(), false));

    // Odd input is an error or nothing, never a crash.
    for odd in ["", "a\0b", "ü\u{10ffff}", &"x".repeat(5000)] {
        match features.training_dataset(odd).await {
            Err(Error::Features(crate::FeaturesError::TrainingDatasetNotFound { .. }) | Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
    }
}

fn link(dataset_id: &str, run_id: &str, context: &str, logged_at: i64) -> TrainingDatasetRun {
    TrainingDatasetRun {
        dataset_id: dataset_id.to_owned(),
        run_id: run_id.to_owned(),
        context: context.to_owned(),
        logged_at,
        logged_by: "alice".to_owned(),
    }
}

fn assert_dataset_not_found<T: std::fmt::Debug>(res: crate::Result<T>, id: &str) {
    match res {
        Err(e @ Error::Features(crate::FeaturesError::TrainingDatasetNotFound { .. })) => {
            assert_eq!(e.error_code(), ErrorCode::ResourceDoesNotExist);
            assert!(matches!(&e, Error::Features(crate::FeaturesError::TrainingDatasetNotFound { id: it }) if it == id), "{e:?}");
        }
        other => panic!("expected TrainingDatasetNotFound, got {other:?}"),
    }
}

pub async fn features_training_dataset_runs(h: &Harness) {
    let features = &h.features;
    let train = dataset("6f1c0b6e-0000-4000-8000-000000000001", Some("churn-train"), 100);
    features.create_training_dataset(&train, rec()).await.expect("create");
    let other = dataset("6f1c0b6e-0000-4000-8000-000000000002", None, 110);
    features.create_training_dataset(&other, rec()).await.expect("create");
    assert!(features.training_dataset_runs(&train.id).await.expect("runs").is_empty());

    // Oldest first, ties by run id, whatever the order of logging.
    let run_z = link(&train.id, "run-z", "training", 300);
    let run_b = link(&train.id, "run-b", "training", 200);
    let run_a = link(&train.id, "run-a", "validation", 200);
    for it in [&run_z, &run_b, &run_a] {
        features.link_training_dataset_run(it, rec()).await.expect("link");
    }
    assert_eq!(features.training_dataset_runs(&train.id).await.expect("runs"), [run_a.clone(), run_b.clone(), run_z.clone()]);
    // By name too, answered with the dataset's id.
    assert_eq!(features.training_dataset_runs("churn-train").await.expect("runs by name"), [run_a.clone(), run_b.clone(), run_z.clone()]);

    // Logging the same pair again replaces context, time and actor: still one row.
    features.link_training_dataset_run(&run_a, rec()).await.expect("idempotent");
    assert_eq!(features.training_dataset_runs(&train.id).await.expect("runs"), [run_a.clone(), run_b.clone(), run_z.clone()]);
    let relinked = TrainingDatasetRun { context: "testing".to_owned(), logged_at: 400, logged_by: "bob".to_owned(), ..run_b.clone() };
    features.link_training_dataset_run(&relinked, rec()).await.expect("relink");
    assert_eq!(features.training_dataset_runs(&train.id).await.expect("runs"), [run_a.clone(), run_z.clone(), relinked.clone()]);

    // A run may have several datasets; each dataset lists only its own runs.
    let other_a = link(&other.id, "run-a", "training", 150);
    features.link_training_dataset_run(&other_a, rec()).await.expect("link");
    assert_eq!(features.training_dataset_runs(&other.id).await.expect("runs"), [other_a]);
    assert_eq!(features.training_dataset_runs(&train.id).await.expect("runs"), [run_a.clone(), run_z.clone(), relinked.clone()]);

    // An id match wins over a name match.
    let lookalike = dataset("6f1c0b6e-0000-4000-8000-000000000003", Some(&train.id), 120);
    features.create_training_dataset(&lookalike, rec()).await.expect("a name that is another dataset's id");
    assert_eq!(features.training_dataset_runs(&train.id).await.expect("runs").len(), 3);
    assert!(features.training_dataset_runs(&lookalike.id).await.expect("runs").is_empty());

    // Unknown datasets: nothing is linked, nothing is listed.
    let ghost = "6f1c0b6e-0000-4000-8000-00000000ffff";
    assert_dataset_not_found(features.link_training_dataset_run(&link(ghost, "run-a", "training", 500), rec()).await, ghost);
    assert_dataset_not_found(features.training_dataset_runs(ghost).await, ghost);
    assert_dataset_not_found(features.training_dataset_runs("Churn-Train").await, "Churn-Train");
    // Links name the dataset by id, not by name.
    assert_dataset_not_found(
        features.link_training_dataset_run(&link("churn-train", "run-q", "training", 500), rec()).await,
        "churn-train",
    );
    assert_eq!(features.training_dataset_runs(&train.id).await.expect("runs"), [run_a, run_z, relinked]);

    // Odd input is an error or nothing, never a crash.
    for odd in ["", "a\0b", "ü\u{10ffff}", &"x".repeat(5000)] {
        match features.training_dataset_runs(odd).await {
            Err(Error::Features(crate::FeaturesError::TrainingDatasetNotFound { .. }) | Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
        match features.link_training_dataset_run(&link(odd, "run-a", "training", 600), rec()).await {
            Err(Error::Features(crate::FeaturesError::TrainingDatasetNotFound { .. }) | Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
    }
}

pub async fn features_training_datasets_reading(h: &Harness) {
    let features = &h.features;
    let all = page(0, 100);
    assert!(features.training_datasets_reading(FeatureKind::FeatureView, "driver_stats", all).await.expect("none yet").items.is_empty());

    let a = dataset("6f1c0b6e-0000-4000-8000-00000000000a", None, 100);
    // Two versions of one view: listed once.
    let b = TrainingDataset {
        definitions: definitions(&[
            (FeatureKind::FeatureView, "driver_stats", 4),
            (FeatureKind::FeatureView, "driver_stats", 3),
            (FeatureKind::Entity, "driver", 1),
        ]),
        ..dataset("6f1c0b6e-0000-4000-8000-00000000000b", None, 200)
    };
    // Created at the same time as `b`: the larger id is newer.
    let c = TrainingDataset {
        definitions: definitions(&[
            (FeatureKind::Entity, "customer", 1),
            (FeatureKind::Entity, "driver", 1),
            (FeatureKind::FeatureView, "customer_stats", 1),
        ]),
        ..dataset("6f1c0b6e-0000-4000-8000-00000000000c", Some("customers"), 200)
    };
    let d = TrainingDataset {
        feature_service: Some("driver_service".to_owned()),
        definitions: definitions(&[
            (FeatureKind::Entity, "driver", 2),
            (FeatureKind::Source, "trips", 1),
            (FeatureKind::FeatureView, "driver_stats", 4),
            (FeatureKind::FeatureService, "driver_service", 1),
        ]),
        ..dataset("6f1c0b6e-0000-4000-8000-00000000000d", Some("with-service"), 300)
    };
    // Read nothing: listed by `training_datasets` only.
    let e = TrainingDataset { definitions: "[]".to_owned(), ..dataset("6f1c0b6e-0000-4000-8000-00000000000e", None, 400) };
    for it in [&c, &a, &e, &d, &b] {
        features.create_training_dataset(it, rec()).await.expect("create");
    }

    let reading = |kind: FeatureKind, name: &'static str, page: PageRequest| {
        let features = features.clone();
        async move {
            let rows = features.training_datasets_reading(kind, name, page).await.expect("datasets reading");
            (rows.items, rows.has_more)
        }
    };
    // By view and by entity, newest first (creation time, then id, descending), at any version.
    assert_eq!(reading(FeatureKind::FeatureView, "driver_stats", all).await, (vec![d.clone(), b.clone(), a.clone()], false));
    assert_eq!(reading(FeatureKind::Entity, "driver", all).await, (vec![d.clone(), c.clone(), b.clone(), a.clone()], false));
    assert_eq!(reading(FeatureKind::Entity, "customer", all).await, (vec![c.clone()], false));
    assert_eq!(reading(FeatureKind::FeatureView, "customer_stats", all).await, (vec![c.clone()], false));
    assert_eq!(reading(FeatureKind::Source, "trips", all).await, (vec![d.clone()], false));
    assert_eq!(reading(FeatureKind::FeatureService, "driver_service", all).await, (vec![d.clone()], false));

    // Paged.
    assert_eq!(reading(FeatureKind::Entity, "driver", page(0, 2)).await, (vec![d.clone(), c.clone()], true));
    assert_eq!(reading(FeatureKind::Entity, "driver", page(2, 2)).await, (vec![b.clone(), a.clone()], false));
    assert_eq!(reading(FeatureKind::Entity, "driver", page(1, 2)).await, (vec![c.clone(), b.clone()], true));
    assert_eq!(reading(FeatureKind::Entity, "driver", page(4, 2)).await, (vec![], false));
    assert_eq!(reading(FeatureKind::Entity, "driver", page(0, 0)).await, (vec![], true));
    assert_eq!(reading(FeatureKind::FeatureView, "driver_stats", page(0, 3)).await, (vec![d.clone(), b.clone(), a.clone()], false));

    // Nothing for an unread name, another kind of the same name, or another case.
    assert_eq!(reading(FeatureKind::FeatureView, "nothing", all).await, (vec![], false));
    assert_eq!(reading(FeatureKind::Source, "driver_stats", all).await, (vec![], false));
    assert_eq!(reading(FeatureKind::FeatureView, "driver", all).await, (vec![], false));
    assert_eq!(reading(FeatureKind::FeatureView, "Driver_Stats", all).await, (vec![], false));

    let rows = features.training_datasets(all).await.expect("list");
    assert_eq!(rows.items, [e, d, c, b, a]);

    // Odd names are an error or nothing, never a crash.
    for odd in ["", "a\0b", "ü\u{10ffff}", &"x".repeat(5000)] {
        match features.training_datasets_reading(FeatureKind::Entity, odd, all).await {
            Ok(rows) if rows.items.is_empty() && !rows.has_more => {}
            Err(Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
    }
}

pub async fn features_training_dataset_malformed_definitions(h: &Harness) {
    let features = &h.features;
    let valid = dataset("6f1c0b6e-0000-4000-8000-000000000001", Some("churn-train"), 100);
    let malformed = [
        "",
        "not json",
        "{}",
        r#"{"kind":"feature_view","name":"driver_stats","version":3}"#,
        // The shape before the objects: arrays of (kind, name, version).
        r#"[["feature_view","driver_stats",3]]"#,
        r#"[{"kind":"view","name":"driver_stats","version":3}]"#,
        r#"[{"kind":"feature_view","name":"driver_stats"}]"#,
        r#"[{"kind":"feature_view","name":"driver_stats","version":"3"}]"#,
        r#"[{"kind":"feature_view","name":null,"version":3}]"#,
        // A well-formed entry before a malformed one: neither is recorded.
        r#"[{"kind":"entity","name":"driver","version":1},{"kind":"feature_view","version":3}]"#,
    ];
    for definitions in malformed {
        let bad = TrainingDataset { definitions: definitions.to_owned(), ..valid.clone() };
        match features.create_training_dataset(&bad, rec()).await {
            Err(e @ Error::InvalidArgument { .. }) => assert_eq!(e.error_code(), ErrorCode::InvalidParameterValue),
            other => panic!("expected InvalidArgument for {definitions:?}, got {other:?}"),
        }
        assert_dataset_not_found(features.training_dataset(&valid.id).await, &valid.id);
        assert_dataset_not_found(features.training_dataset("churn-train").await, "churn-train");
        assert_dataset_not_found(features.training_dataset_runs(&valid.id).await, &valid.id);
    }
    let rows = features.training_datasets(page(0, 10)).await.expect("list");
    assert!(rows.items.is_empty() && !rows.has_more, "a refused create writes nothing: {rows:?}");
    for (kind, name) in [(FeatureKind::Entity, "driver"), (FeatureKind::FeatureView, "driver_stats")] {
        let rows = features.training_datasets_reading(kind, name, page(0, 10)).await.expect("reading");
        assert!(rows.items.is_empty(), "a refused create records no reads: {rows:?}");
    }

    // The same id and name are still free.
    features.create_training_dataset(&valid, rec()).await.expect("create");
    assert_eq!(features.training_dataset("churn-train").await.expect("by name"), valid);
    let rows = features.training_datasets_reading(FeatureKind::Entity, "driver", page(0, 10)).await.expect("reading");
    assert_eq!((rows.items, rows.has_more), (vec![valid], false));
}
