//! The conformance suite of the registry, audit and webhook ports.
//!
//! An adapter's tests invoke `registry_conformance!(factory)` with the same factory as
//! `tracking_conformance!`: an async fn returning a `Harness` over a fresh, empty, migrated store.
//! The bodies panic on failure.

use std::collections::BTreeSet;
use std::sync::Arc;

use plinth_core::registry::{Gate, GateSpec, ModelVersion, ModelVersionStatus, RegisteredModel, Stage};
use plinth_core::tracking::KeyValue;
use plinth_filter::{Grammar, parse_filter, parse_order_by};

use crate::conformance::{Harness, rec};
use crate::registry::{
    AliasMove, Expect, ModelVersionQuery, NewModelVersion, NewPromotion, NewRegisteredModel, RegisteredModelQuery, StageMove,
};
use crate::tracking::PageRequest;
use crate::{Error, RegistryStore};

pub use crate::conformance_audit::registry_records_commit_with_changes;
pub use crate::conformance_promotions::{
    registry_alias_applies_promotion, registry_gate_stamp_guards_moves, registry_gates, registry_promotions,
};
pub use crate::conformance_webhooks::{audit_append_and_query, webhooks_crud, webhooks_outbox};

/// Generates one `#[tokio::test]` per conformance body, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! registry_conformance {
    ($factory:path) => {
        $crate::registry_conformance!(@each $factory;
            registry_model_lifecycle, registry_rename_and_delete_cascade, registry_tags, registry_version_numbering,
            registry_concurrent_version_creation, registry_latest_versions, registry_stage_transitions,
            registry_concurrent_stage_transitions, registry_alias_compare_and_set, registry_concurrent_alias_moves,
            registry_alias_applies_promotion, registry_model_search, registry_version_search, registry_gates,
            registry_promotions, registry_gate_stamp_guards_moves, audit_append_and_query, webhooks_crud, webhooks_outbox,
            registry_records_commit_with_changes);
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(harness) = $factory().await {
                    $crate::conformance_registry::$name(&harness).await;
                    drop(harness);
                }
            }
        )*
    };
}

pub(crate) fn model(name: &str, now: i64) -> NewRegisteredModel {
    NewRegisteredModel { name: name.to_owned(), description: None, tags: vec![], now }
}

pub(crate) fn version(name: &str, now: i64) -> NewModelVersion {
    NewModelVersion {
        name: name.to_owned(),
        source: format!("models:/m-{name}-{now}"),
        storage_location: format!("mlflow-artifacts:/1/models/m-{name}-{now}/artifacts"),
        run_id: Some(format!("run-{now}")),
        run_link: None,
        model_id: Some(format!("m-{name}-{now}")),
        description: None,
        user_id: Some("alice".to_owned()),
        tags: vec![],
        now,
    }
}

pub(crate) fn page(offset: i64, limit: i64) -> PageRequest {
    PageRequest { offset, limit }
}

pub(crate) fn alias_move(name: &str, alias: &str, version: i64, expect: Expect) -> AliasMove {
    AliasMove { name: name.to_owned(), alias: alias.to_owned(), version, expect, gate_stamp: None, promotion_id: None, now: 500 }
}

pub(crate) fn stage_move(name: &str, version: i64, stage: Stage, archive_existing: bool, expect: Expect) -> StageMove {
    StageMove { name: name.to_owned(), version, stage, archive_existing, expect, gate_stamp: None, now: 600 }
}

pub(crate) async fn versions_of(registry: &Arc<dyn RegistryStore>, count: i64, name: &str) -> Vec<ModelVersion> {
    let mut out = Vec::new();
    for idx in 0..count {
        out.push(registry.create_model_version(version(name, 100 + idx), rec()).await.expect("create version"));
    }
    out
}

pub(crate) fn numbers(versions: &[ModelVersion]) -> Vec<i64> {
    versions.iter().map(|v| v.version).collect()
}

pub async fn registry_model_lifecycle(h: &Harness) {
    let registry = &h.registry;
    let mut new = model("churn", 10);
    new.description = Some("predicts churn".to_owned());
    new.tags = vec![KeyValue::new("team", "a"), KeyValue::new("domain", "cx"), KeyValue::new("team", "b")];
    let created = registry.create_registered_model(new, rec()).await.expect("create");
    assert_eq!((created.name.as_str(), created.creation_timestamp, created.last_updated_timestamp), ("churn", 10, 10));
    assert_eq!(created.description.as_deref(), Some("predicts churn"));
    assert_eq!(created.tags, vec![KeyValue::new("domain", "cx"), KeyValue::new("team", "b")], "sorted by key, the last duplicate wins");
    assert!(created.aliases.is_empty() && created.latest_versions.is_empty());
    assert!(matches!(
        registry.create_registered_model(model("churn", 11), rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelExists { .. }))
    ));
    assert_eq!(registry.get_registered_model("churn").await.expect("get"), created);
    assert!(matches!(
        registry.get_registered_model("nope").await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));

    let updated = registry.update_registered_model("churn", Some("v2"), 20, rec()).await.expect("update");
    assert_eq!((updated.description.as_deref(), updated.last_updated_timestamp, updated.creation_timestamp), (Some("v2"), 20, 10));
    let cleared = registry.update_registered_model("churn", None, 21, rec()).await.expect("clear description");
    assert_eq!(cleared.description, None);
    assert!(matches!(
        registry.update_registered_model("nope", None, 1, rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    assert!(matches!(
        registry.delete_registered_model("nope", rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    // Names are case-sensitive and any characters the service lets through are stored as given.
    registry.create_registered_model(model("Churn", 30), rec()).await.expect("case differs");
    registry.create_registered_model(model("it's 100% \"odd\" _name_ é", 31), rec()).await.expect("odd characters");
    assert_eq!(registry.get_registered_model("it's 100% \"odd\" _name_ é").await.expect("get").creation_timestamp, 31);
}

pub async fn registry_rename_and_delete_cascade(h: &Harness) {
    let registry = &h.registry;
    let mut new = model("old", 1);
    new.tags = vec![KeyValue::new("k", "v")];
    registry.create_registered_model(new, rec()).await.expect("create");
    registry.create_registered_model(model("taken", 1), rec()).await.expect("create");
    let mut v = version("old", 2);
    v.tags = vec![KeyValue::new("vk", "vv")];
    registry.create_model_version(v, rec()).await.expect("v1");
    registry.create_model_version(version("old", 3), rec()).await.expect("v2");
    registry.move_alias(&alias_move("old", "champion", 1, Expect::Anything), rec()).await.expect("alias");
    let gate = Gate {
        model: "old".to_owned(),
        spec: GateSpec {
            target: "champion".to_owned(),
            conditions: vec![],
            required_tags: vec!["vk".to_owned()],
            approvals_required: 1,
            description: None,
        },
        updated_by: "admin".to_owned(),
        updated_at: 4,
    };
    registry.put_gate(&gate, rec()).await.expect("gate");
    let request = registry
        .create_promotion(
            NewPromotion {
                model: "old".to_owned(),
                version: 2,
                target: "champion".to_owned(),
                requester: "bob".to_owned(),
                reason: None,
                now: 5,
                expires_at: 1_000_000,
            },
            rec(),
        )
        .await
        .expect("promotion");

    assert!(matches!(
        registry.rename_registered_model("old", "taken", 6, rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelExists { .. }))
    ));
    assert!(matches!(
        registry.rename_registered_model("missing", "x", 6, rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    let renamed = registry.rename_registered_model("old", "new", 7, rec()).await.expect("rename");
    assert_eq!((renamed.name.as_str(), renamed.last_updated_timestamp), ("new", 7));
    assert_eq!(renamed.tags, vec![KeyValue::new("k", "v")]);
    assert_eq!(renamed.aliases.iter().map(|a| (a.alias.as_str(), a.version)).collect::<Vec<_>>(), [("champion", 1)]);
    assert_eq!(renamed.latest_versions.len(), 1);
    assert_eq!(renamed.latest_versions[0].name, "new");
    assert!(matches!(
        registry.get_registered_model("old").await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    let v1 = registry.get_model_version("new", 1).await.expect("version follows");
    assert_eq!((v1.tags.clone(), v1.aliases.clone()), (vec![KeyValue::new("vk", "vv")], vec!["champion".to_owned()]));
    assert!(matches!(registry.get_model_version("old", 1).await, Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))));
    assert_eq!(registry.get_alias("new", "champion").await.expect("alias"), Some(1));
    assert_eq!(registry.get_gate("new", "champion").await.expect("gate").map(|g| g.model), Some("new".to_owned()));
    assert!(registry.list_gates("old").await.expect("gates").is_empty());
    assert_eq!(registry.get_promotion(request.id).await.expect("promotion").model, "new");
    // The counter moves with the model.
    assert_eq!(registry.create_model_version(version("new", 8), rec()).await.expect("v3").version, 3);

    registry.delete_registered_model("new", rec()).await.expect("delete");
    assert!(matches!(
        registry.get_registered_model("new").await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    assert!(matches!(registry.get_model_version("new", 1).await, Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))));
    assert!(matches!(registry.get_promotion(request.id).await, Err(Error::Registry(crate::RegistryError::PromotionNotFound { .. }))));
    assert!(registry.list_gates("new").await.expect("gates").is_empty());
    let all = registry
        .search_model_versions(&ModelVersionQuery {
            restrict_to: None,
            exclude_prompts: false,
            filter: vec![],
            order_by: vec![],
            page: page(0, 100),
        })
        .await
        .expect("search");
    assert!(all.items.is_empty(), "a deleted model leaves no versions behind");
    // The name is free again; the new model starts its own numbering and has nothing of the old one.
    let again = registry.create_registered_model(model("new", 9), rec()).await.expect("recreate");
    assert!(again.tags.is_empty() && again.aliases.is_empty() && again.latest_versions.is_empty());
    assert_eq!(registry.create_model_version(version("new", 10), rec()).await.expect("v1").version, 1);
    assert!(registry.get_model_version("new", 1).await.expect("v1").tags.is_empty());
    assert!(registry.get_gate("new", "champion").await.expect("gate").is_none());
}

pub async fn registry_tags(h: &Harness) {
    let registry = &h.registry;
    registry.create_registered_model(model("m", 1), rec()).await.expect("create");
    registry.set_registered_model_tag("m", &KeyValue::new("b", "1"), 2, rec()).await.expect("tag");
    registry.set_registered_model_tag("m", &KeyValue::new("a", "x"), 2, rec()).await.expect("tag");
    registry.set_registered_model_tag("m", &KeyValue::new("b", "2"), 3, rec()).await.expect("upsert");
    assert_eq!(registry.get_registered_model("m").await.expect("get").tags, vec![KeyValue::new("a", "x"), KeyValue::new("b", "2")]);
    registry.delete_registered_model_tag("m", "a", rec()).await.expect("delete");
    registry.delete_registered_model_tag("m", "a", rec()).await.expect("deleting a missing tag is fine");
    assert_eq!(registry.get_registered_model("m").await.expect("get").tags, vec![KeyValue::new("b", "2")]);
    assert!(matches!(
        registry.set_registered_model_tag("x", &KeyValue::new("a", "b"), 1, rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    assert!(matches!(
        registry.delete_registered_model_tag("x", "a", rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));

    let mut new = version("m", 4);
    new.tags = vec![KeyValue::new("z", "1"), KeyValue::new("y", ""), KeyValue::new("z", "2")];
    let v = registry.create_model_version(new, rec()).await.expect("version");
    assert_eq!(v.tags, vec![KeyValue::new("y", ""), KeyValue::new("z", "2")]);
    registry.set_model_version_tag("m", 1, &KeyValue::new("y", "set"), 5, rec()).await.expect("upsert");
    registry.set_model_version_tag("m", 1, &KeyValue::new("w", "new"), 5, rec()).await.expect("tag");
    registry.delete_model_version_tag("m", 1, "z", rec()).await.expect("delete");
    registry.delete_model_version_tag("m", 1, "z", rec()).await.expect("deleting a missing tag is fine");
    assert_eq!(registry.get_model_version("m", 1).await.expect("get").tags, vec![KeyValue::new("w", "new"), KeyValue::new("y", "set")]);
    assert!(matches!(
        registry.set_model_version_tag("m", 9, &KeyValue::new("a", "b"), 1, rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    assert!(matches!(
        registry.set_model_version_tag("x", 1, &KeyValue::new("a", "b"), 1, rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    assert!(matches!(
        registry.delete_model_version_tag("m", 9, "a", rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    registry.delete_model_version("m", 1, 6, rec()).await.expect("delete version");
    assert!(matches!(
        registry.set_model_version_tag("m", 1, &KeyValue::new("a", "b"), 7, rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    assert!(matches!(
        registry.delete_model_version_tag("m", 1, "w", rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
}

pub async fn registry_version_numbering(h: &Harness) {
    let registry = &h.registry;
    assert!(matches!(
        registry.create_model_version(version("m", 1), rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    registry.create_registered_model(model("m", 1), rec()).await.expect("create");
    let mut new = version("m", 2);
    new.description = Some("first".to_owned());
    new.run_link = Some("http://runs/1".to_owned());
    let v1 = registry.create_model_version(new, rec()).await.expect("v1");
    assert_eq!(v1.version, 1);
    assert_eq!(
        (v1.current_stage, v1.status, v1.creation_timestamp, v1.last_updated_timestamp),
        (Stage::None, ModelVersionStatus::Ready, 2, 2)
    );
    assert_eq!(
        (v1.description.as_deref(), v1.user_id.as_deref(), v1.run_link.as_deref()),
        (Some("first"), Some("alice"), Some("http://runs/1"))
    );
    assert_eq!((v1.source.as_str(), v1.run_id.as_deref(), v1.model_id.as_deref()), ("models:/m-m-2", Some("run-2"), Some("m-m-2")));
    assert_eq!(v1.storage_location, "mlflow-artifacts:/1/models/m-m-2/artifacts");
    assert_eq!(v1.status_message, None);
    assert_eq!(registry.get_model_version("m", 1).await.expect("get"), v1);
    assert_eq!(registry.get_registered_model("m").await.expect("model").last_updated_timestamp, 2, "a new version touches the model");
    let mut bare = version("m", 3);
    bare.run_id = None;
    bare.model_id = None;
    bare.user_id = None;
    let v2 = registry.create_model_version(bare, rec()).await.expect("v2");
    assert_eq!((v2.version, v2.run_id.clone(), v2.user_id.clone()), (2, None, None));
    let v3 = registry.create_model_version(version("m", 4), rec()).await.expect("v3");
    assert_eq!(v3.version, 3);

    let updated = registry.update_model_version("m", 2, Some("second"), 5, rec()).await.expect("update");
    assert_eq!((updated.description.as_deref(), updated.last_updated_timestamp), (Some("second"), 5));
    assert!(matches!(
        registry.update_model_version("m", 9, None, 5, rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));

    registry.move_alias(&alias_move("m", "champion", 3, Expect::Anything), rec()).await.expect("alias");
    registry.move_alias(&alias_move("m", "other", 2, Expect::Anything), rec()).await.expect("alias");
    let before = registry.get_model_version("m", 3).await.expect("v3");
    let deleted = registry.delete_model_version("m", 3, 6, rec()).await.expect("delete");
    assert_eq!(deleted, before, "delete returns the version as it was");
    assert_eq!(deleted.aliases, vec!["champion".to_owned()]);
    assert!(matches!(registry.get_model_version("m", 3).await, Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))));
    assert!(matches!(
        registry.delete_model_version("m", 3, 7, rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    assert!(matches!(
        registry.update_model_version("m", 3, None, 7, rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    assert!(matches!(
        registry.delete_model_version("nope", 1, 7, rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    assert_eq!(registry.get_alias("m", "champion").await.expect("alias"), None, "aliases of a deleted version go with it");
    assert_eq!(registry.get_alias("m", "other").await.expect("alias"), Some(2));
    let m = registry.get_registered_model("m").await.expect("model");
    assert_eq!(m.last_updated_timestamp, 6);
    assert_eq!(m.aliases.iter().map(|a| a.alias.as_str()).collect::<Vec<_>>(), ["other"]);
    // Numbers are never reused, also the highest one after it is deleted.
    assert_eq!(registry.create_model_version(version("m", 8), rec()).await.expect("v4").version, 4);
    registry.delete_model_version("m", 4, 9, rec()).await.expect("delete");
    assert_eq!(registry.create_model_version(version("m", 10), rec()).await.expect("v5").version, 5);
    let all = registry
        .search_model_versions(&ModelVersionQuery {
            restrict_to: None,
            exclude_prompts: false,
            filter: parse_filter(Grammar::ModelVersions, "name = 'm'").expect("filter"),
            order_by: vec![parse_order_by(Grammar::ModelVersions, "version_number ASC").expect("order")],
            page: page(0, 100),
        })
        .await
        .expect("search");
    assert_eq!(numbers(&all.items), [1, 2, 5], "deleted versions are not found by search");
}

pub async fn registry_concurrent_version_creation(h: &Harness) {
    h.registry.create_registered_model(model("contended", 1), rec()).await.expect("create");
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let registry = h.registry.clone();
        tasks.push(tokio::spawn(async move { registry.create_model_version(version("contended", 100 + worker), rec()).await }));
    }
    let mut got = BTreeSet::new();
    for task in tasks {
        let v = task.await.expect("join").expect("every creator gets a version");
        assert!(got.insert(v.version), "version {} handed out twice", v.version);
    }
    assert_eq!(got, (1..=32).collect::<BTreeSet<i64>>(), "distinct, gap-free numbers");
    assert_eq!(h.registry.create_model_version(version("contended", 1), rec()).await.expect("next").version, 33);
}

pub async fn registry_latest_versions(h: &Harness) {
    let registry = &h.registry;
    registry.create_registered_model(model("m", 1), rec()).await.expect("create");
    versions_of(registry, 6, "m").await;
    for (v, stage) in [(1, Stage::Production), (2, Stage::Staging), (3, Stage::Production), (4, Stage::Archived)] {
        registry.transition_stage(&stage_move("m", v, stage, false, Expect::Anything), rec()).await.expect("transition");
    }
    registry.transition_stage(&stage_move("m", 6, Stage::Staging, false, Expect::Anything), rec()).await.expect("transition");
    registry.delete_model_version("m", 6, 700, rec()).await.expect("delete the newest staging version");
    registry.move_alias(&alias_move("m", "champion", 3, Expect::Anything), rec()).await.expect("alias");
    let mut tagged = version("m", 800);
    tagged.tags = vec![KeyValue::new("t", "1")];
    let m = registry.get_registered_model("m").await.expect("get");
    let latest: Vec<(Stage, i64)> = m.latest_versions.iter().map(|v| (v.current_stage, v.version)).collect();
    assert_eq!(latest, [(Stage::None, 5), (Stage::Staging, 2), (Stage::Production, 3), (Stage::Archived, 4)]);
    let production = &m.latest_versions[2];
    assert_eq!(production.aliases, vec!["champion".to_owned()], "latest versions carry their aliases");
    registry.create_model_version(tagged, rec()).await.expect("v7");
    let m = registry.get_registered_model("m").await.expect("get");
    let none = &m.latest_versions[0];
    assert_eq!((none.version, none.tags.clone()), (7, vec![KeyValue::new("t", "1")]), "and their tags");
}

pub async fn registry_stage_transitions(h: &Harness) {
    let registry = &h.registry;
    registry.create_registered_model(model("m", 1), rec()).await.expect("create");
    versions_of(registry, 4, "m").await;
    let moved = registry.transition_stage(&stage_move("m", 1, Stage::Production, false, Expect::Holder(None)), rec()).await.expect("first");
    assert_eq!(
        (moved.previous_stage, moved.version.current_stage, moved.version.last_updated_timestamp),
        (Stage::None, Stage::Production, 600)
    );
    assert!(moved.archived.is_empty());
    assert_eq!(registry.get_registered_model("m").await.expect("model").last_updated_timestamp, 600);
    registry.transition_stage(&stage_move("m", 2, Stage::Production, false, Expect::Holder(Some(1))), rec()).await.expect("second");
    // A failing precondition names the stage and both versions and changes nothing.
    let err = registry.transition_stage(&stage_move("m", 3, Stage::Production, true, Expect::Holder(Some(1))), rec()).await;
    let Err(Error::Conflict { message }) = err else { panic!("expected a conflict, got {err:?}") };
    assert!(message.contains("Production") && message.contains('2') && message.contains('1'), "{message}");
    assert_eq!(registry.get_model_version("m", 3).await.expect("v3").current_stage, Stage::None);
    assert_eq!(registry.get_model_version("m", 1).await.expect("v1").current_stage, Stage::Production);
    let err = registry.transition_stage(&stage_move("m", 3, Stage::Production, false, Expect::Holder(None)), rec()).await;
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");
    // The holder is the newest other version in the stage; archive_existing empties the stage.
    let moved =
        registry.transition_stage(&stage_move("m", 3, Stage::Production, true, Expect::Holder(Some(2))), rec()).await.expect("archive");
    assert_eq!((moved.previous_stage, moved.archived.clone()), (Stage::None, vec![1, 2]));
    for (v, stage) in [(1, Stage::Archived), (2, Stage::Archived), (3, Stage::Production), (4, Stage::None)] {
        assert_eq!(registry.get_model_version("m", v).await.expect("version").current_stage, stage, "version {v}");
    }
    assert_eq!(registry.get_model_version("m", 1).await.expect("v1").last_updated_timestamp, 600);
    // The version itself does not count as the holder; moving within a stage is allowed.
    let moved =
        registry.transition_stage(&stage_move("m", 3, Stage::Production, false, Expect::Holder(None)), rec()).await.expect("same stage");
    assert_eq!(moved.previous_stage, Stage::Production);
    let moved = registry.transition_stage(&stage_move("m", 3, Stage::Staging, false, Expect::Anything), rec()).await.expect("back");
    assert_eq!(moved.previous_stage, Stage::Production);
    // Deleted versions neither move nor hold a stage.
    registry.transition_stage(&stage_move("m", 4, Stage::Staging, false, Expect::Anything), rec()).await.expect("v4 staging");
    registry.delete_model_version("m", 4, 650, rec()).await.expect("delete v4");
    assert!(matches!(
        registry.transition_stage(&stage_move("m", 4, Stage::Production, false, Expect::Anything), rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    let moved =
        registry.transition_stage(&stage_move("m", 1, Stage::Staging, true, Expect::Holder(Some(3))), rec()).await.expect("v1 staging");
    assert_eq!(moved.archived, vec![3]);
    assert!(matches!(
        registry.transition_stage(&stage_move("m", 9, Stage::Production, false, Expect::Anything), rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    assert!(matches!(
        registry.transition_stage(&stage_move("nope", 1, Stage::Production, false, Expect::Anything), rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    assert!(matches!(
        registry.transition_stage(&stage_move("m", 2, Stage::Archived, true, Expect::Anything), rec()).await,
        Err(Error::InvalidArgument { .. })
    ));
}

pub async fn registry_concurrent_stage_transitions(h: &Harness) {
    let registry = &h.registry;
    registry.create_registered_model(model("m", 1), rec()).await.expect("create");
    versions_of(registry, 8, "m").await;
    let mut tasks = Vec::new();
    for v in 1..=8 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            registry.transition_stage(&stage_move("m", v, Stage::Production, true, Expect::Holder(None)), rec()).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            Ok(moved) => winners.push(moved.version.version),
            Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one version enters the empty stage");
    let m = registry.get_registered_model("m").await.expect("model");
    let production: Vec<i64> = m.latest_versions.iter().filter(|v| v.current_stage == Stage::Production).map(|v| v.version).collect();
    assert_eq!(production, winners);
}

pub async fn registry_alias_compare_and_set(h: &Harness) {
    let registry = &h.registry;
    assert!(matches!(registry.get_alias("nope", "a").await, Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))));
    assert!(matches!(
        registry.move_alias(&alias_move("nope", "a", 1, Expect::Anything), rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    registry.create_registered_model(model("m", 1), rec()).await.expect("create");
    versions_of(registry, 3, "m").await;
    assert_eq!(registry.get_alias("m", "champion").await.expect("get"), None);
    assert!(matches!(
        registry.move_alias(&alias_move("m", "champion", 9, Expect::Anything), rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    let err = registry.move_alias(&alias_move("m", "champion", 1, Expect::Holder(Some(2))), rec()).await;
    let Err(Error::Conflict { message }) = err else { panic!("expected a conflict, got {err:?}") };
    assert!(message.contains("champion"), "{message}");
    assert_eq!(registry.move_alias(&alias_move("m", "champion", 1, Expect::Holder(None)), rec()).await.expect("set"), None);
    assert!(matches!(registry.move_alias(&alias_move("m", "champion", 2, Expect::Holder(None)), rec()).await, Err(Error::Conflict { .. })));
    assert!(matches!(
        registry.move_alias(&alias_move("m", "champion", 2, Expect::Holder(Some(3))), rec()).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(registry.get_alias("m", "champion").await.expect("get"), Some(1), "a failed move changes nothing");
    assert_eq!(registry.move_alias(&alias_move("m", "champion", 2, Expect::Holder(Some(1))), rec()).await.expect("cas"), Some(1));
    assert_eq!(registry.move_alias(&alias_move("m", "champion", 3, Expect::Anything), rec()).await.expect("last writer wins"), Some(2));
    assert_eq!(registry.move_alias(&alias_move("m", "backup", 3, Expect::Anything), rec()).await.expect("second alias"), None);
    assert_eq!(registry.move_alias(&alias_move("m", "alpha", 1, Expect::Anything), rec()).await.expect("third alias"), None);
    let m = registry.get_registered_model("m").await.expect("model");
    let aliases: Vec<(&str, i64)> = m.aliases.iter().map(|a| (a.alias.as_str(), a.version)).collect();
    assert_eq!(aliases, [("alpha", 1), ("backup", 3), ("champion", 3)], "sorted by alias");
    assert_eq!(registry.get_model_version("m", 3).await.expect("v3").aliases, vec!["backup".to_owned(), "champion".to_owned()]);
    assert_eq!(registry.delete_alias("m", "backup", 700, rec()).await.expect("delete"), Some(3));
    assert_eq!(registry.delete_alias("m", "backup", 701, rec()).await.expect("delete unset"), None);
    assert!(matches!(
        registry.delete_alias("nope", "backup", 701, rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    assert_eq!(registry.get_model_version("m", 3).await.expect("v3").aliases, vec!["champion".to_owned()]);
    registry.delete_model_version("m", 2, 702, rec()).await.expect("delete v2");
    assert!(matches!(
        registry.move_alias(&alias_move("m", "champion", 2, Expect::Anything), rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
}

pub async fn registry_concurrent_alias_moves(h: &Harness) {
    let registry = &h.registry;
    registry.create_registered_model(model("m", 1), rec()).await.expect("create");
    versions_of(registry, 3, "m").await;
    for round in 0..8 {
        registry.move_alias(&alias_move("m", "champion", 1, Expect::Anything), rec()).await.expect("reset");
        let mut tasks = Vec::new();
        for target in [2, 3] {
            let registry = registry.clone();
            tasks.push(tokio::spawn(async move {
                (target, registry.move_alias(&alias_move("m", "champion", target, Expect::Holder(Some(1))), rec()).await)
            }));
        }
        let mut winners = Vec::new();
        let mut conflicts = 0;
        for task in tasks {
            match task.await.expect("join") {
                (target, Ok(previous)) => {
                    assert_eq!(previous, Some(1));
                    winners.push(target);
                }
                (_, Err(Error::Conflict { .. })) => conflicts += 1,
                (_, Err(other)) => panic!("unexpected error {other:?}"),
            }
        }
        assert_eq!((winners.len(), conflicts), (1, 1), "round {round}: exactly one compare-and-set wins");
        assert_eq!(registry.get_alias("m", "champion").await.expect("get"), Some(winners[0]));
    }
}

pub async fn registry_model_search(h: &Harness) {
    let registry = &h.registry;
    for idx in 0..7i64 {
        let mut new = model(&format!("model-{idx}"), 100 + (idx % 3));
        new.tags = vec![KeyValue::new("team", if idx % 2 == 0 { "Vision" } else { "nlp" })];
        if idx == 3 {
            new.tags.push(KeyValue::new("special", "yes"));
        }
        registry.create_registered_model(new, rec()).await.expect("create");
    }
    registry.create_registered_model(model("other_x", 50), rec()).await.expect("create");
    registry.create_model_version(version("model-1", 200), rec()).await.expect("version");
    registry.create_model_version(version("model-1", 201), rec()).await.expect("version");
    registry.transition_stage(&stage_move("model-1", 1, Stage::Production, false, Expect::Anything), rec()).await.expect("stage");
    registry.move_alias(&alias_move("model-1", "champion", 1, Expect::Anything), rec()).await.expect("alias");
    let search = |filter: &str, order: &[&str], offset: i64, limit: i64| {
        let registry = registry.clone();
        let query = RegisteredModelQuery {
            restrict_to: None,
            exclude_prompts: false,
            filter: parse_filter(Grammar::RegisteredModels, filter).expect("filter"),
            order_by: order.iter().map(|it| parse_order_by(Grammar::RegisteredModels, it).expect("order")).collect(),
            page: page(offset, limit),
        };
        async move { registry.search_registered_models(&query).await.expect("search") }
    };
    let names = |models: &[RegisteredModel]| models.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    let all = search("", &[], 0, 100).await;
    assert_eq!(names(&all.items), ["model-0", "model-1", "model-2", "model-3", "model-4", "model-5", "model-6", "other_x"], "name ASC");
    assert!(!all.has_more);
    let m1 = all.items.iter().find(|m| m.name == "model-1").expect("model-1");
    assert_eq!(m1.tags, vec![KeyValue::new("team", "nlp")]);
    assert_eq!(m1.aliases.iter().map(|a| (a.alias.as_str(), a.version)).collect::<Vec<_>>(), [("champion", 1)]);
    assert_eq!(
        m1.latest_versions.iter().map(|v| (v.current_stage, v.version)).collect::<Vec<_>>(),
        [(Stage::None, 2), (Stage::Production, 1)]
    );
    assert_eq!(m1.latest_versions[1].aliases, vec!["champion".to_owned()]);
    assert_eq!(names(&search("name = 'model-2'", &[], 0, 100).await.items), ["model-2"]);
    assert_eq!(names(&search("name != 'model-2' AND name LIKE 'model-%'", &[], 0, 100).await.items).len(), 6);
    assert_eq!(names(&search("name LIKE 'MODEL-%'", &[], 0, 100).await.items).len(), 0, "LIKE is case-sensitive");
    assert_eq!(names(&search("name ILIKE 'MODEL-1%'", &[], 0, 100).await.items), ["model-1"]);
    assert_eq!(names(&search("name LIKE 'other%'", &[], 0, 100).await.items), ["other_x"]);
    assert_eq!(names(&search("name IN ('model-3', 'model-5', 'none')", &[], 0, 100).await.items), ["model-3", "model-5"]);
    assert_eq!(names(&search("tags.team = 'Vision'", &[], 0, 100).await.items), ["model-0", "model-2", "model-4", "model-6"]);
    assert_eq!(
        names(&search("tags.team ILIKE 'vision'", &["name DESC"], 0, 100).await.items),
        ["model-6", "model-4", "model-2", "model-0"]
    );
    assert_eq!(names(&search("tags.team LIKE 'vision'", &[], 0, 100).await.items).len(), 0);
    // `!=` matches models that have the tag with another value (MLflow's SQL store), not models without it.
    assert_eq!(names(&search("tags.team != 'Vision'", &[], 0, 100).await.items), ["model-1", "model-3", "model-5"]);
    assert_eq!(names(&search("tags.special = 'yes' AND tags.team = 'nlp'", &[], 0, 100).await.items), ["model-3"]);
    assert_eq!(names(&search("tags.special IS NOT NULL", &[], 0, 100).await.items), ["model-3"]);
    assert_eq!(names(&search("tags.team IS NULL", &[], 0, 100).await.items), ["other_x"]);
    // Orders, with name as the tiebreak.
    assert_eq!(
        names(&search("name LIKE 'model-%'", &["creation_timestamp DESC"], 0, 100).await.items),
        ["model-2", "model-5", "model-1", "model-4", "model-0", "model-3", "model-6"]
    );
    assert_eq!(names(&search("", &["timestamp ASC"], 0, 2).await.items), ["other_x", "model-0"]);
    let by_update = search("", &["last_updated_timestamp DESC"], 0, 1).await;
    assert_eq!((names(&by_update.items), by_update.has_more), (vec!["model-1".to_owned()], true));
    // Pages cover every model exactly once.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let res = search("", &["creation_timestamp ASC"], offset, 3).await;
        seen.extend(names(&res.items));
        if !res.has_more {
            break;
        }
        offset += 3;
    }
    assert_eq!(seen.len(), 8);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);
    let query = RegisteredModelQuery {
        restrict_to: None,
        exclude_prompts: false,
        filter: vec![],
        order_by: vec![parse_order_by(Grammar::ModelVersions, "version_number").expect("order")],
        page: page(0, 10),
    };
    assert!(matches!(registry.search_registered_models(&query).await, Err(Error::InvalidArgument { .. })));
}

pub async fn registry_version_search(h: &Harness) {
    let registry = &h.registry;
    for name in ["alpha", "beta"] {
        registry.create_registered_model(model(name, 1), rec()).await.expect("create");
    }
    // alpha: versions 1..=5 at times 10..=14; beta: 1..=3 at times 12..=14 (ties with alpha).
    for idx in 0..5i64 {
        let mut new = version("alpha", 10 + idx);
        new.tags = vec![KeyValue::new("parity", if idx % 2 == 0 { "odd" } else { "even" })];
        new.source = format!("s3://bucket/alpha/{}", idx + 1);
        registry.create_model_version(new, rec()).await.expect("alpha version");
    }
    for idx in 0..3i64 {
        let mut new = version("beta", 12 + idx);
        new.run_id = Some(format!("beta-run-{idx}"));
        registry.create_model_version(new, rec()).await.expect("beta version");
    }
    registry.delete_model_version("alpha", 5, 14, rec()).await.expect("delete");
    registry.move_alias(&alias_move("beta", "prod", 2, Expect::Anything), rec()).await.expect("alias");
    let search = |filter: &str, order: &[&str], offset: i64, limit: i64| {
        let registry = registry.clone();
        let query = ModelVersionQuery {
            restrict_to: None,
            exclude_prompts: false,
            filter: parse_filter(Grammar::ModelVersions, filter).expect("filter"),
            order_by: order.iter().map(|it| parse_order_by(Grammar::ModelVersions, it).expect("order")).collect(),
            page: page(offset, limit),
        };
        async move { registry.search_model_versions(&query).await.expect("search") }
    };
    let keys = |versions: &[ModelVersion]| versions.iter().map(|v| format!("{}/{}", v.name, v.version)).collect::<Vec<_>>();
    // Default order: last_updated_timestamp DESC, name ASC, version DESC.
    let all = search("", &[], 0, 100).await;
    assert_eq!(keys(&all.items), ["beta/3", "alpha/4", "beta/2", "alpha/3", "beta/1", "alpha/2", "alpha/1"]);
    let beta2 = all.items.iter().find(|v| v.name == "beta" && v.version == 2).expect("beta/2");
    assert_eq!(beta2.aliases, vec!["prod".to_owned()]);
    let alpha2 = all.items.iter().find(|v| v.name == "alpha" && v.version == 2).expect("alpha/2");
    assert_eq!(alpha2.tags, vec![KeyValue::new("parity", "even")]);
    assert_eq!(keys(&search("name = 'beta'", &["version_number ASC"], 0, 100).await.items), ["beta/1", "beta/2", "beta/3"]);
    assert_eq!(keys(&search("name = 'alpha' AND version_number >= 3", &[], 0, 100).await.items), ["alpha/4", "alpha/3"]);
    assert_eq!(keys(&search("version_number = 2", &["name DESC"], 0, 100).await.items), ["beta/2", "alpha/2"]);
    assert_eq!(
        keys(&search("version_number != 2 AND version_number < 4 AND name = 'beta'", &[], 0, 100).await.items),
        ["beta/3", "beta/1"]
    );
    assert_eq!(keys(&search("run_id = 'beta-run-1'", &[], 0, 100).await.items), ["beta/2"]);
    assert_eq!(keys(&search("run_id IN ('beta-run-0', 'beta-run-2', 'x')", &[], 0, 100).await.items), ["beta/3", "beta/1"]);
    assert_eq!(keys(&search("source_path = 's3://bucket/alpha/3'", &[], 0, 100).await.items), ["alpha/3"]);
    assert_eq!(keys(&search("source_path LIKE 's3://bucket/alpha/%'", &["version_number ASC"], 0, 100).await.items).len(), 4);
    assert_eq!(keys(&search("tags.parity = 'odd'", &["version_number ASC"], 0, 100).await.items), ["alpha/1", "alpha/3"]);
    assert_eq!(keys(&search("tags.parity != 'odd'", &[], 0, 100).await.items), ["alpha/4", "alpha/2"]);
    assert_eq!(keys(&search("tags.parity IS NULL", &["version_number DESC"], 0, 100).await.items), ["beta/3", "beta/2", "beta/1"]);
    assert_eq!(
        keys(&search("name ILIKE 'BET%' AND version_number > 1", &["creation_timestamp ASC"], 0, 100).await.items),
        ["beta/2", "beta/3"]
    );
    assert!(search("name = 'alpha' AND version_number = 5", &[], 0, 100).await.items.is_empty(), "deleted versions are not found");
    // Pages cover every live version exactly once, in order.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let res = search("", &[], offset, 2).await;
        assert!(res.items.len() <= 2);
        seen.extend(keys(&res.items));
        if !res.has_more {
            break;
        }
        offset += 2;
    }
    assert_eq!(seen, keys(&all.items));
    let query = ModelVersionQuery {
        restrict_to: None,
        exclude_prompts: false,
        filter: vec![],
        order_by: vec![parse_order_by(Grammar::Runs, "metrics.acc").expect("order")],
        page: page(0, 10),
    };
    assert!(matches!(registry.search_model_versions(&query).await, Err(Error::InvalidArgument { .. })));
}
