//! Conformance bodies for `Record`: a change's audit record is written in the change's own
//! transaction, built from its result, and a change that fails leaves none. Run by
//! `registry_conformance!` (the registry's moves), `tracking_conformance!`, `auth_conformance!`
//! and `features_conformance!` (one write of each port).

use std::sync::Arc;

use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_core::registry::{ModelVersion, RegisteredModel};
use plinth_core::tracking::KeyValue;

use crate::AuditLog;
use crate::audit::{AuditQuery, Record};
use crate::conformance::Harness;
use crate::conformance_registry::{alias_move, model, version};
use crate::registry::Expect;

/// An event for the resource `id`.
pub(crate) fn event(id: &str) -> AuditEvent {
    AuditEvent::new(&Actor::new("conformance"), "conformance.change", "conformance", id)
}

/// A record whose event names the resource `id`.
pub(crate) fn recorded<'a, T: ?Sized>(id: &str) -> Record<'a, T> {
    Record::event(event(id))
}

/// The trail's events for resource `id`, oldest first.
pub(crate) async fn trail(audit: &Arc<dyn AuditLog>, id: &str) -> Vec<AuditEvent> {
    let query = AuditQuery { resource_id: Some(id.to_owned()), limit: 1000, ..AuditQuery::default() };
    let mut rows = audit.query(&query).await.expect("query the trail").items;
    rows.reverse();
    rows
}

pub async fn registry_records_commit_with_changes(h: &Harness) {
    let (registry, audit) = (&h.registry, &h.audit);
    // Built from the result: the allocated version number is in the record.
    registry
        .create_registered_model(model("r", 1), Record::of(|m: &RegisteredModel| event(&format!("model:{}", m.name))))
        .await
        .expect("create");
    registry
        .create_model_version(version("r", 2), Record::of(|v: &ModelVersion| event(&format!("r/{}", v.version))))
        .await
        .expect("version");
    registry
        .create_model_version(version("r", 3), Record::of(|v: &ModelVersion| event(&format!("r/{}", v.version))))
        .await
        .expect("version");
    assert_eq!(trail(audit, "model:r").await.len(), 1);
    assert_eq!((trail(audit, "r/1").await.len(), trail(audit, "r/2").await.len()), (1, 1));
    let recorded_event = &trail(audit, "r/2").await[0];
    assert_eq!((recorded_event.actor.as_str(), recorded_event.action.as_str()), ("conformance", "conformance.change"));

    // A change that fails writes no record: an existing name, a missing model, a refused compare-and-set.
    assert!(registry.create_registered_model(model("r", 4), recorded("dup")).await.is_err());
    assert!(registry.set_registered_model_tag("nope", &KeyValue::new("k", "v"), 5, recorded("missing")).await.is_err());
    let refused = alias_move("r", "champion", 1, Expect::Holder(Some(2)));
    assert!(registry.move_alias(&refused, recorded("refused")).await.is_err());
    for id in ["dup", "missing", "refused"] {
        assert!(trail(audit, id).await.is_empty(), "{id}: a change that did not happen has no record in the transaction");
    }

    // Several events from one change, with the value read under the change's lock (the previous holder).
    registry.move_alias(&alias_move("r", "champion", 1, Expect::Anything), recorded("first")).await.expect("move");
    let both = Record::many(|previous: &Option<i64>| {
        vec![event("moved").with_change(Change::new("version", previous.map(|v| v.to_string()), Some("2".into()))), event("moved-too")]
    });
    assert_eq!(registry.move_alias(&alias_move("r", "champion", 2, Expect::Anything), both).await.expect("move"), Some(1));
    let moved = trail(audit, "moved").await;
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].changes, vec![Change::new("version", Some("1".into()), Some("2".into()))]);
    assert_eq!(trail(audit, "moved-too").await.len(), 1);

    // `Record::none()` writes none; an empty `many` neither.
    let before = audit.query(&AuditQuery { limit: 10_000, ..AuditQuery::default() }).await.expect("query").items.len();
    registry.set_registered_model_tag("r", &KeyValue::new("a", "1"), 6, Record::none()).await.expect("tag");
    registry.set_registered_model_tag("r", &KeyValue::new("b", "1"), 7, Record::many(|_: &()| vec![])).await.expect("tag");
    let after = audit.query(&AuditQuery { limit: 10_000, ..AuditQuery::default() }).await.expect("query").items.len();
    assert_eq!(before, after);

    // Concurrent changes: each acknowledged one has exactly one record.
    let tasks: Vec<_> = (0..16)
        .map(|idx| {
            let registry = registry.clone();
            tokio::spawn(async move {
                let tag = KeyValue::new(format!("k{idx}"), "v");
                registry.set_registered_model_tag("r", &tag, 10 + idx, recorded(&format!("tag-{idx}"))).await.expect("tag");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    for idx in 0..16 {
        assert_eq!(trail(audit, &format!("tag-{idx}")).await.len(), 1, "tag-{idx}");
    }
}

pub async fn tracking_records_commit_with_changes(h: &Harness) {
    use crate::conformance::{exp, new_run};
    use plinth_core::ids::ExperimentId;
    use plinth_core::tracking::{LifecycleStage, Run};
    let (store, audit) = (&h.store, &h.audit);
    // The ids allocated in the transaction are in its record.
    let id = store.create_experiment(exp("audited"), Record::of(|id: &ExperimentId| event(&format!("exp:{id}")))).await.expect("create");
    assert_eq!(trail(audit, &format!("exp:{id}")).await.len(), 1);
    let run =
        store.create_run(new_run(&id, "r", 1), Record::of(|run: &Run| event(&format!("run:{}", run.info.run_id)))).await.expect("run");
    let run_id = run.info.run_id.clone();
    assert_eq!(trail(audit, &format!("run:{run_id}")).await.len(), 1);

    // Failed changes leave no record: a taken name, a changed param, a deleted run.
    assert!(store.create_experiment(exp("audited"), recorded("taken")).await.is_err());
    store.log_batch(&run_id, &[], &[KeyValue::new("lr", "0.1")], &[], recorded("param")).await.expect("param");
    assert!(store.log_batch(&run_id, &[], &[KeyValue::new("lr", "0.2")], &[KeyValue::new("t", "1")], recorded("changed")).await.is_err());
    store.set_run_lifecycle(&run_id, LifecycleStage::Deleted, 2, recorded("deleted")).await.expect("delete");
    assert!(store.set_experiment_tag(&id, &KeyValue::new("k", "v"), recorded("exp-tag")).await.is_ok());
    assert!(store.delete_run_tag(&run_id, "t", recorded("on-deleted")).await.is_err());
    for (id, want) in [("taken", 0), ("param", 1), ("changed", 0), ("deleted", 1), ("exp-tag", 1), ("on-deleted", 0)] {
        assert_eq!(trail(audit, id).await.len(), want, "{id}");
    }
}
