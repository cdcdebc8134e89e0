//! Conformance bodies for gates and promotion requests (`RegistryStore`), run by
//! `registry_conformance!` with the other registry bodies (re-exported from `conformance_registry`).

use plinth_core::registry::{Gate, GateSpec, PromotionStatus, Review, ReviewDecision, Stage};

use crate::Error;
use crate::conformance::{Harness, rec};
use crate::conformance_registry::{alias_move, model, page, stage_move, versions_of};
use crate::registry::{Expect, NewPromotion, PromotionQuery};

pub async fn registry_alias_applies_promotion(h: &Harness) {
    let registry = &h.registry;
    registry.create_registered_model(model("m", 1), rec()).await.expect("create");
    versions_of(registry, 3, "m").await;
    let promotion = |version: i64, target: &str| NewPromotion {
        model: "m".to_owned(),
        version,
        target: target.to_owned(),
        requester: "bob".to_owned(),
        reason: Some("better".to_owned()),
        now: 10,
        expires_at: 10_000,
    };
    let request = registry.create_promotion(promotion(2, "champion"), rec()).await.expect("request");
    let mut change = alias_move("m", "champion", 2, Expect::Holder(None));
    change.promotion_id = Some(request.id);
    // A request for another version or target cannot be applied by this move.
    let mut wrong = change.clone();
    wrong.version = 3;
    assert!(matches!(registry.move_alias(&wrong, rec()).await, Err(Error::Conflict { .. })));
    let mut wrong = change.clone();
    wrong.alias = "challenger".to_owned();
    assert!(matches!(registry.move_alias(&wrong, rec()).await, Err(Error::Conflict { .. })));
    let mut missing = change.clone();
    missing.promotion_id = Some(request.id + 1000);
    assert!(matches!(registry.move_alias(&missing, rec()).await, Err(Error::Registry(crate::RegistryError::PromotionNotFound { .. }))));
    assert_eq!(registry.get_alias("m", "champion").await.expect("alias"), None, "refused moves change nothing");
    assert_eq!(registry.get_promotion(request.id).await.expect("get").status, PromotionStatus::Pending);

    assert_eq!(registry.move_alias(&change, rec()).await.expect("apply"), None);
    let applied = registry.get_promotion(request.id).await.expect("get");
    assert_eq!((applied.status, applied.updated_at), (PromotionStatus::Applied, 500));
    assert_eq!(registry.get_alias("m", "champion").await.expect("alias"), Some(2));
    // A second apply of the same request conflicts, and the alias stays.
    let mut again = change.clone();
    again.expect = Expect::Anything;
    let err = registry.move_alias(&again, rec()).await;
    let Err(Error::Conflict { message }) = err else { panic!("expected a conflict, got {err:?}") };
    assert!(message.contains("APPLIED"), "{message}");
    // A failing alias precondition leaves the request pending.
    let other = registry.create_promotion(promotion(3, "champion"), rec()).await.expect("request");
    let mut stale = alias_move("m", "champion", 3, Expect::Holder(Some(1)));
    stale.promotion_id = Some(other.id);
    assert!(matches!(registry.move_alias(&stale, rec()).await, Err(Error::Conflict { .. })));
    assert_eq!(registry.get_promotion(other.id).await.expect("get").status, PromotionStatus::Pending);
    stale.expect = Expect::Holder(Some(2));
    assert_eq!(registry.move_alias(&stale, rec()).await.expect("apply"), Some(2));
    assert_eq!(registry.get_promotion(other.id).await.expect("get").status, PromotionStatus::Applied);
}

/// A move judged under one gate does not commit if the gate changed meanwhile; the stage holder query.
pub async fn registry_gate_stamp_guards_moves(h: &Harness) {
    let registry = &h.registry;
    registry.create_registered_model(model("g", 1), rec()).await.expect("model");
    versions_of(registry, 3, "g").await;
    let gate = |target: &str, at: i64| Gate {
        model: "g".to_owned(),
        spec: GateSpec { target: target.to_owned(), conditions: vec![], required_tags: vec![], approvals_required: 0, description: None },
        updated_by: "admin".to_owned(),
        updated_at: at,
    };
    // Judged with no gate, but one appeared: refused.
    registry.put_gate(&gate("champion", 10), rec()).await.expect("gate");
    let mut change = alias_move("g", "champion", 1, Expect::Anything);
    change.gate_stamp = Some(None);
    assert!(matches!(registry.move_alias(&change, rec()).await, Err(Error::Conflict { .. })));
    // Judged under the gate as it is: accepted; after it changed: refused.
    change.gate_stamp = Some(Some(10));
    registry.move_alias(&change, rec()).await.expect("same gate");
    registry.put_gate(&gate("champion", 11), rec()).await.expect("gate changed");
    let mut change = alias_move("g", "champion", 2, Expect::Anything);
    change.gate_stamp = Some(Some(10));
    assert!(matches!(registry.move_alias(&change, rec()).await, Err(Error::Conflict { .. })));
    assert_eq!(registry.get_alias("g", "champion").await.expect("alias"), Some(1), "nothing moved");
    // Stages: the gate of `stage:production`.
    registry.put_gate(&gate(&Stage::Production.gate_target(), 20), rec()).await.expect("stage gate");
    let mut change = stage_move("g", 2, Stage::Production, false, Expect::Anything);
    change.gate_stamp = Some(None);
    assert!(matches!(registry.transition_stage(&change, rec()).await, Err(Error::Conflict { .. })));
    change.gate_stamp = Some(Some(20));
    registry.transition_stage(&change, rec()).await.expect("stage move");
    assert_eq!(registry.stage_holder("g", Stage::Production, 3).await.expect("holder"), Some(2));
    assert_eq!(registry.stage_holder("g", Stage::Production, 2).await.expect("holder"), None, "the version itself is excluded");
    assert_eq!(registry.stage_holder("g", Stage::Staging, 1).await.expect("holder"), None);
}

pub async fn registry_gates(h: &Harness) {
    let registry = &h.registry;
    let gate = |target: &str, approvals: u32, at: i64| Gate {
        model: "m".to_owned(),
        spec: GateSpec {
            target: target.to_owned(),
            conditions: vec!["metrics.auc >= 0.85".to_owned(), "metrics.auc >= current.metrics.auc".to_owned()],
            required_tags: vec!["validated".to_owned(), "it's \"quoted\", with, commas".to_owned()],
            approvals_required: approvals,
            description: Some("prod gate".to_owned()),
        },
        updated_by: "admin".to_owned(),
        updated_at: at,
    };
    assert!(matches!(
        registry.put_gate(&gate("production", 1, 1), rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    registry.create_registered_model(model("m", 1), rec()).await.expect("create");
    assert_eq!(registry.put_gate(&gate("production", 1, 2), rec()).await.expect("put"), None);
    assert_eq!(registry.get_gate("m", "production").await.expect("get"), Some(gate("production", 1, 2)));
    assert_eq!(registry.put_gate(&gate("production", 2, 3), rec()).await.expect("replace"), Some(gate("production", 1, 2)));
    let mut empty = gate("champion", 0, 4);
    empty.spec.conditions.clear();
    empty.spec.required_tags.clear();
    empty.spec.description = None;
    registry.put_gate(&empty, rec()).await.expect("put");
    assert_eq!(registry.list_gates("m").await.expect("list"), vec![empty.clone(), gate("production", 2, 3)], "by target");
    assert_eq!(registry.get_gate("m", "staging").await.expect("get"), None);
    assert_eq!(registry.delete_gate("m", "production", rec()).await.expect("delete"), Some(gate("production", 2, 3)));
    assert_eq!(registry.delete_gate("m", "production", rec()).await.expect("delete again"), None);
    assert_eq!(registry.list_gates("m").await.expect("list"), vec![empty]);
    assert!(registry.list_gates("nope").await.expect("list").is_empty());
}

pub async fn registry_promotions(h: &Harness) {
    let registry = &h.registry;
    let promotion = |model: &str, version: i64, now: i64, expires_at: i64| NewPromotion {
        model: model.to_owned(),
        version,
        target: "champion".to_owned(),
        requester: "bob".to_owned(),
        reason: None,
        now,
        expires_at,
    };
    assert!(matches!(
        registry.create_promotion(promotion("m", 1, 1, 2), rec()).await,
        Err(Error::Registry(crate::RegistryError::RegisteredModelNotFound { .. }))
    ));
    for name in ["m", "n"] {
        registry.create_registered_model(model(name, 1), rec()).await.expect("create");
        versions_of(registry, 3, name).await;
    }
    assert!(matches!(
        registry.create_promotion(promotion("m", 9, 1, 2), rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));
    registry.delete_model_version("m", 3, 5, rec()).await.expect("delete");
    assert!(matches!(
        registry.create_promotion(promotion("m", 3, 1, 2), rec()).await,
        Err(Error::Registry(crate::RegistryError::ModelVersionNotFound { .. }))
    ));

    let mut with_reason = promotion("m", 1, 10, 100);
    with_reason.reason = Some("auc up".to_owned());
    let first = registry.create_promotion(with_reason, rec()).await.expect("create");
    assert_eq!((first.status, first.created_at, first.updated_at, first.expires_at), (PromotionStatus::Pending, 10, 10, 100));
    assert_eq!((first.reason.as_deref(), first.requester.as_str(), first.target.as_str()), (Some("auc up"), "bob", "champion"));
    assert!(first.reviews.is_empty());
    assert_eq!(registry.get_promotion(first.id).await.expect("get"), first);
    assert!(matches!(registry.get_promotion(first.id + 1000).await, Err(Error::Registry(crate::RegistryError::PromotionNotFound { .. }))));
    let second = registry.create_promotion(promotion("m", 2, 20, 50), rec()).await.expect("create");
    let third = registry.create_promotion(promotion("n", 1, 30, 1000), rec()).await.expect("create");
    assert!(first.id < second.id && second.id < third.id, "ids grow");

    // Reviews: ordered by time, one per reviewer (a later review replaces the earlier one).
    let review = |reviewer: &str, decision, at| Review { reviewer: reviewer.to_owned(), decision, comment: None, created_at: at };
    registry.add_review(first.id, &review("carol", ReviewDecision::Approve, 12), rec()).await.expect("review");
    let mut with_comment = review("dave", ReviewDecision::Approve, 11);
    with_comment.comment = Some("ship it".to_owned());
    registry.add_review(first.id, &with_comment, rec()).await.expect("review");
    let reviewed = registry.add_review(first.id, &review("carol", ReviewDecision::Approve, 13), rec()).await.expect("replace");
    let got: Vec<(&str, ReviewDecision, i64)> = reviewed.reviews.iter().map(|r| (r.reviewer.as_str(), r.decision, r.created_at)).collect();
    assert_eq!(got, [("dave", ReviewDecision::Approve, 11), ("carol", ReviewDecision::Approve, 13)]);
    assert_eq!(reviewed.reviews[0].comment.as_deref(), Some("ship it"));
    assert_eq!(reviewed.updated_at, 13);
    assert_eq!(reviewed.approvers(), ["dave", "carol"]);
    assert_eq!(registry.get_promotion(first.id).await.expect("get"), reviewed);
    assert!(matches!(
        registry.add_review(first.id + 1000, &review("x", ReviewDecision::Approve, 1), rec()).await,
        Err(Error::Registry(crate::RegistryError::PromotionNotFound { .. }))
    ));

    // A rejection ends the request in the same transaction; then status compare-and-set.
    let rejected = registry.add_review(third.id, &review("erin", ReviewDecision::Reject, 40), rec()).await.expect("reject");
    assert_eq!((rejected.status, rejected.updated_at, rejected.reviews.len()), (PromotionStatus::Rejected, 40, 1));
    let err = registry.set_promotion_status(third.id, PromotionStatus::Pending, PromotionStatus::Cancelled, 41, rec()).await;
    let Err(Error::Conflict { message }) = err else { panic!("expected a conflict, got {err:?}") };
    assert!(message.contains("REJECTED") && message.contains("PENDING"), "{message}");
    let err = registry.add_review(third.id, &review("x", ReviewDecision::Approve, 42), rec()).await;
    let Err(Error::Conflict { message }) = err else { panic!("expected a conflict, got {err:?}") };
    assert_eq!(message, format!("Promotion request {} is REJECTED, not PENDING", third.id));
    assert!(matches!(
        registry.set_promotion_status(third.id + 1000, PromotionStatus::Pending, PromotionStatus::Cancelled, 41, rec()).await,
        Err(Error::Registry(crate::RegistryError::PromotionNotFound { .. }))
    ));

    // Listing: newest first, filtered, paged.
    let query =
        |model: Option<&str>, status, offset, limit| PromotionQuery { model: model.map(str::to_owned), status, page: page(offset, limit) };
    let ids = |rows: &[plinth_core::registry::PromotionRequest]| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    let all = registry.list_promotions(&query(None, None, 0, 100)).await.expect("list");
    assert_eq!(ids(&all.items), [third.id, second.id, first.id]);
    assert_eq!(all.items[2].reviews.len(), 2, "listed requests carry their reviews");
    assert_eq!(ids(&registry.list_promotions(&query(Some("m"), None, 0, 100)).await.expect("list").items), [second.id, first.id]);
    assert_eq!(
        ids(&registry.list_promotions(&query(None, Some(PromotionStatus::Rejected), 0, 100)).await.expect("list").items),
        [third.id]
    );
    let first_page = registry.list_promotions(&query(None, None, 0, 2)).await.expect("list");
    assert_eq!((ids(&first_page.items), first_page.has_more), (vec![third.id, second.id], true));
    let last_page = registry.list_promotions(&query(None, None, 2, 2)).await.expect("list");
    assert_eq!((ids(&last_page.items), last_page.has_more), (vec![first.id], false));

    // Expiry: pending requests whose deadline passed, and only those.
    assert!(registry.expire_promotions(50, rec()).await.expect("expire").is_empty(), "expires_at is not before now");
    let expired = registry.expire_promotions(60, rec()).await.expect("expire");
    assert_eq!(ids(&expired), [second.id]);
    assert_eq!((expired[0].status, expired[0].updated_at), (PromotionStatus::Expired, 60));
    let expired = registry.expire_promotions(10_000, rec()).await.expect("expire");
    assert_eq!(ids(&expired), [first.id], "the rejected request stays rejected");
    assert_eq!(expired[0].reviews.len(), 2);
    assert!(registry.expire_promotions(20_000, rec()).await.expect("expire").is_empty());
    assert_eq!(registry.get_promotion(third.id).await.expect("get").status, PromotionStatus::Rejected);
}
