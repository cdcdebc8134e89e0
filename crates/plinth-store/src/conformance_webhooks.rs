//! Conformance bodies for the audit trail and the webhook store (`AuditLog`, `WebhookStore`), run by
//! `registry_conformance!` with the registry's bodies (re-exported from `conformance_registry`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use plinth_core::audit::{AuditEvent, Change, Outcome};

use crate::Error;
use crate::audit::AuditQuery;
use crate::conformance::{Harness, rec};
use crate::conformance_registry::page;
use crate::webhooks::{Attempt, DeliveryStatus, OutboxEvent, Webhook, WebhookStatus, WebhookUpdate};

pub async fn audit_append_and_query(h: &Harness) {
    let audit = &h.audit;
    let event = |time: i64, actor: &str, action: &str, resource_type: &str, resource_id: &str| AuditEvent {
        id: 0,
        time,
        actor: actor.to_owned(),
        action: action.to_owned(),
        resource_type: resource_type.to_owned(),
        resource_id: resource_id.to_owned(),
        outcome: Outcome::Ok,
        message: None,
        changes: vec![],
    };
    let mut ids = Vec::new();
    let first = event(100, "alice", "registered_model.create", "registered_model", "churn")
        .with_change(Change::set("name", "churn"))
        .with_change(Change::new("description", Some("a \"quoted\", text".to_owned()), None));
    let events = [
        first.clone(),
        event(110, "alice", "model_version.create", "model_version", "churn/1"),
        event(120, "bob", "model_version.create", "model_version", "churn/2"),
        event(130, "bob", "alias.set", "alias", "churn@champion").with_outcome(Outcome::Refused, "gate production: approvals 0 of 1"),
        event(140, "carol", "model_version.create", "model_version", "churn_x/1"),
        event(150, "carol", "model_version.create", "model_version", "churnAx/1"),
        event(160, "alice", "model_version.delete", "model_version", "churn/1").with_outcome(Outcome::Failed, "not found"),
        event(170, "system", "promotion.expire", "promotion", "7"),
    ];
    for e in &events {
        ids.push(audit.append(e).await.expect("append"));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow with append order: {ids:?}");
    let query = |f: &dyn Fn(&mut AuditQuery)| {
        let mut q = AuditQuery { limit: 100, ..AuditQuery::default() };
        f(&mut q);
        let audit = audit.clone();
        async move { audit.query(&q).await.expect("query") }
    };
    let times = |rows: &[AuditEvent]| rows.iter().map(|e| e.time).collect::<Vec<_>>();
    let all = query(&|_| {}).await;
    assert_eq!(times(&all.items), [170, 160, 150, 140, 130, 120, 110, 100], "newest first");
    assert!(!all.has_more);
    let mut stored = first.clone();
    stored.id = ids[0];
    assert_eq!(all.items.last(), Some(&stored), "events come back exactly");
    assert_eq!(all.items[4].outcome, Outcome::Refused);
    assert_eq!(all.items[4].message.as_deref(), Some("gate production: approvals 0 of 1"));
    assert_eq!(times(&query(&|q| q.actor = Some("bob".to_owned())).await.items), [130, 120]);
    assert_eq!(times(&query(&|q| q.action = Some("model_version.create".to_owned())).await.items), [150, 140, 120, 110]);
    assert_eq!(times(&query(&|q| q.outcome = Some(Outcome::Failed)).await.items), [160]);
    assert_eq!(times(&query(&|q| q.resource_type = Some("alias".to_owned())).await.items), [130]);
    assert_eq!(times(&query(&|q| q.resource_id = Some("churn/1".to_owned())).await.items), [160, 110]);
    // A trailing `*` is a prefix; `_` and `%` in the prefix are literal characters.
    assert_eq!(times(&query(&|q| q.resource_id = Some("churn/*".to_owned())).await.items), [160, 120, 110]);
    assert_eq!(times(&query(&|q| q.resource_id = Some("churn_*".to_owned())).await.items), [140]);
    assert_eq!(times(&query(&|q| q.resource_id = Some("churn*".to_owned())).await.items), [160, 150, 140, 130, 120, 110, 100]);
    assert!(query(&|q| q.resource_id = Some("%*".to_owned())).await.items.is_empty());
    assert_eq!(times(&query(&|q| q.resource_id = Some("*".to_owned())).await.items).len(), 8);
    assert_eq!(
        times(
            &query(&|q| {
                q.resource_type = Some("model_version".to_owned());
                q.resource_id = Some("churn/*".to_owned());
                q.actor = Some("alice".to_owned());
                q.outcome = Some(Outcome::Ok);
            })
            .await
            .items
        ),
        [110]
    );
    // Time bounds: since inclusive, until exclusive.
    assert_eq!(
        times(
            &query(&|q| {
                q.since = Some(120);
                q.until = Some(150);
            })
            .await
            .items
        ),
        [140, 130, 120]
    );
    // The id cursor pages through everything exactly once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let res = query(&|q| {
            q.limit = 3;
            q.before_id = before;
        })
        .await;
        assert!(res.items.len() <= 3);
        seen.extend(times(&res.items));
        before = res.items.last().map(|e| e.id);
        if !res.has_more {
            break;
        }
    }
    assert_eq!(seen, times(&all.items));
    let none = query(&|q| q.limit = 0).await;
    assert!(none.items.is_empty() && none.has_more);
}

fn hook(id: &str, events: &[&str], status: WebhookStatus, at: i64) -> Webhook {
    Webhook {
        id: id.to_owned(),
        name: format!("hook {id}"),
        url: format!("https://example.test/{id}"),
        events: events.iter().map(|it| (*it).to_owned()).collect(),
        secret: "s3cret".to_owned(),
        status,
        description: None,
        created_at: at,
        updated_at: at,
    }
}

pub async fn webhooks_crud(h: &Harness) {
    let webhooks = &h.webhooks;
    let a = hook("wh-b", &["model_version.created", "promotion_request.approved"], WebhookStatus::Active, 10);
    let b = hook("wh-a", &[], WebhookStatus::Disabled, 20);
    webhooks.create_webhook(&a, rec()).await.expect("create");
    webhooks.create_webhook(&b, rec()).await.expect("create");
    assert!(matches!(webhooks.create_webhook(&a, rec()).await, Err(Error::Conflict { .. })));
    assert_eq!(webhooks.get_webhook("wh-b").await.expect("get"), a);
    assert!(matches!(webhooks.get_webhook("nope").await, Err(Error::Webhooks(crate::WebhookError::WebhookNotFound { .. }))));
    let listed = webhooks.list_webhooks(page(0, 100)).await.expect("list");
    assert_eq!((listed.items.clone(), listed.has_more), (vec![a.clone(), b.clone()], false), "oldest first");
    let first = webhooks.list_webhooks(page(0, 1)).await.expect("list");
    assert_eq!((first.items.len(), first.has_more), (1, true));
    let second = webhooks.list_webhooks(page(1, 1)).await.expect("list");
    assert_eq!((second.items.clone(), second.has_more), (vec![b.clone()], false));

    let unchanged = webhooks.update_webhook("wh-b", &WebhookUpdate::default(), 30, rec()).await.expect("no-op update");
    assert_eq!(unchanged, Webhook { updated_at: 30, ..a.clone() });
    let update = WebhookUpdate {
        name: Some("renamed".to_owned()),
        url: Some("https://example.test/new".to_owned()),
        events: Some(vec!["alias.set".to_owned()]),
        secret: Some("rotated".to_owned()),
        status: Some(WebhookStatus::Disabled),
        description: Some("notes".to_owned()),
    };
    let updated = webhooks.update_webhook("wh-b", &update, 40, rec()).await.expect("update");
    let want = Webhook {
        name: "renamed".to_owned(),
        url: "https://example.test/new".to_owned(),
        events: vec!["alias.set".to_owned()],
        secret: "rotated".to_owned(),
        status: WebhookStatus::Disabled,
        description: Some("notes".to_owned()),
        updated_at: 40,
        ..a.clone()
    };
    assert_eq!(updated, want);
    assert_eq!(webhooks.get_webhook("wh-b").await.expect("get"), want);
    assert!(matches!(
        webhooks.update_webhook("nope", &update, 40, rec()).await,
        Err(Error::Webhooks(crate::WebhookError::WebhookNotFound { .. }))
    ));

    webhooks.delete_webhook("wh-a", rec()).await.expect("delete");
    assert!(matches!(webhooks.delete_webhook("wh-a", rec()).await, Err(Error::Webhooks(crate::WebhookError::WebhookNotFound { .. }))));
    assert!(matches!(webhooks.get_webhook("wh-a").await, Err(Error::Webhooks(crate::WebhookError::WebhookNotFound { .. }))));
    assert_eq!(webhooks.list_webhooks(page(0, 100)).await.expect("list").items.len(), 1);
}

pub async fn webhooks_outbox(h: &Harness) {
    let webhooks = &h.webhooks;
    webhooks
        .create_webhook(&hook("subscribed", &["model_version.created", "alias.set"], WebhookStatus::Active, 1), rec())
        .await
        .expect("create");
    webhooks.create_webhook(&hook("also", &["model_version.created"], WebhookStatus::Active, 2), rec()).await.expect("create");
    webhooks.create_webhook(&hook("disabled", &["model_version.created"], WebhookStatus::Disabled, 3), rec()).await.expect("create");
    webhooks
        .create_webhook(&hook("other", &["alias.set", "model_version.created.extra"], WebhookStatus::Active, 4), rec())
        .await
        .expect("create");
    let counter = Arc::new(AtomicU64::new(0));
    let ids = {
        let counter = counter.clone();
        move || format!("delivery-{:03}", counter.fetch_add(1, Ordering::SeqCst))
    };
    let event =
        |name: &str, payload: &str, now: i64| OutboxEvent { event: name.to_owned(), only_webhook: None, payload: payload.to_owned(), now };
    let created = event("model_version.created", "{\"name\":\"m\",\"version\":\"1\"}", 100);
    assert_eq!(webhooks.enqueue(&created, &ids).await.expect("enqueue"), 2, "active subscribers only");
    assert_eq!(webhooks.enqueue(&event("alias.set", "{}", 110), &ids).await.expect("enqueue"), 2);
    assert_eq!(webhooks.enqueue(&event("nobody.cares", "{}", 120), &ids).await.expect("enqueue"), 0);
    assert_eq!(counter.load(Ordering::SeqCst), 4, "one id per delivery");

    let due = webhooks.claim_due(99, 100, 1000).await.expect("due");
    assert!(due.is_empty(), "nothing is due before it was queued");
    let due = webhooks.claim_due(200, 100, 1000).await.expect("due");
    assert_eq!(due.len(), 4);
    assert!(webhooks.claim_due(200, 100, 1000).await.expect("due").is_empty(), "claimed deliveries are leased, not handed out twice");
    assert!(due.windows(2).all(|w| w[0].next_attempt_at <= w[1].next_attempt_at), "oldest first");
    let first = &due[0];
    assert_eq!((first.event.as_str(), first.payload.as_str()), ("model_version.created", created.payload.as_str()));
    assert_eq!((first.status, first.attempts, first.next_attempt_at, first.created_at), (DeliveryStatus::Pending, 0, 100, 100));
    assert_eq!((first.last_status_code, first.last_error.clone(), first.finished_at), (None, None, None));
    let hooks: BTreeSet<&str> = due.iter().filter(|d| d.event == "model_version.created").map(|d| d.webhook_id.as_str()).collect();
    assert_eq!(hooks, BTreeSet::from(["also", "subscribed"]));

    // A failed attempt is retried later; a success or a final failure finishes the delivery.
    let retry = Attempt {
        status: DeliveryStatus::Pending,
        status_code: Some(503),
        error: Some("unavailable".to_owned()),
        next_attempt_at: 300,
        now: 200,
    };
    webhooks.record_attempt(&first.id, &retry).await.expect("attempt");
    let got = webhooks.get_delivery(&first.id).await.expect("get");
    assert_eq!(
        (got.status, got.attempts, got.next_attempt_at, got.last_status_code, got.finished_at),
        (DeliveryStatus::Pending, 1, 300, Some(503), None)
    );
    assert_eq!(got.last_error.as_deref(), Some("unavailable"));
    assert!(webhooks.claim_due(250, 100, 2000).await.expect("due").is_empty(), "not due before its retry time");
    let due_later = webhooks.claim_due(300, 100, 2000).await.expect("due");
    assert_eq!(
        due_later.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [first.id.as_str()],
        "the retried delivery is due; the others are still leased"
    );
    let done = Attempt { status: DeliveryStatus::Succeeded, status_code: Some(200), error: None, next_attempt_at: 300, now: 310 };
    webhooks.record_attempt(&first.id, &done).await.expect("attempt");
    let got = webhooks.get_delivery(&first.id).await.expect("get");
    assert_eq!(
        (got.status, got.attempts, got.last_status_code, got.last_error.clone(), got.finished_at),
        (DeliveryStatus::Succeeded, 2, Some(200), None, Some(310))
    );
    let failed = Attempt {
        status: DeliveryStatus::Failed,
        status_code: None,
        error: Some("connection refused".to_owned()),
        next_attempt_at: 0,
        now: 320,
    };
    webhooks.record_attempt(&due[1].id, &failed).await.expect("attempt");
    assert_eq!(webhooks.get_delivery(&due[1].id).await.expect("get").finished_at, Some(320));
    assert_eq!(webhooks.claim_due(1000, 1, 3000).await.expect("due").len(), 1, "limit");
    assert_eq!(webhooks.claim_due(1000, 100, 3000).await.expect("due").len(), 1, "finished deliveries are never due; the lease expired");
    assert!(matches!(webhooks.record_attempt("nope", &done).await, Err(Error::Webhooks(crate::WebhookError::DeliveryNotFound { .. }))));
    assert!(matches!(webhooks.get_delivery("nope").await, Err(Error::Webhooks(crate::WebhookError::DeliveryNotFound { .. }))));

    // A webhook's deliveries, newest first; deleting the webhook deletes them.
    let listed = webhooks.list_deliveries("subscribed", page(0, 100)).await.expect("list");
    let events: Vec<&str> = listed.items.iter().map(|d| d.event.as_str()).collect();
    assert_eq!(events, ["alias.set", "model_version.created"]);
    assert!(listed.items.iter().all(|d| d.webhook_id == "subscribed"));
    let first_page = webhooks.list_deliveries("subscribed", page(0, 1)).await.expect("list");
    assert_eq!((first_page.items.len(), first_page.has_more), (1, true));
    assert!(webhooks.list_deliveries("disabled", page(0, 100)).await.expect("list").items.is_empty());
    assert!(matches!(
        webhooks.list_deliveries("nope", page(0, 100)).await,
        Err(Error::Webhooks(crate::WebhookError::WebhookNotFound { .. }))
    ));
    let doomed: Vec<String> = listed.items.iter().map(|d| d.id.clone()).collect();
    webhooks.delete_webhook("subscribed", rec()).await.expect("delete");
    for id in doomed {
        assert!(matches!(webhooks.get_delivery(&id).await, Err(Error::Webhooks(crate::WebhookError::DeliveryNotFound { .. }))));
    }
    assert!(webhooks.claim_due(5000, 100, 6000).await.expect("due").iter().all(|d| d.webhook_id != "subscribed"));
    // Disabling a webhook stops new deliveries to it.
    let disable = WebhookUpdate { status: Some(WebhookStatus::Disabled), ..WebhookUpdate::default() };
    webhooks.update_webhook("also", &disable, 400, rec()).await.expect("disable");
    assert_eq!(webhooks.enqueue(&event("model_version.created", "{}", 500), &ids).await.expect("enqueue"), 0);
    // A ping goes to the one webhook named, whatever it subscribes to and whatever its status.
    let ping =
        OutboxEvent { event: "webhook.ping".to_owned(), only_webhook: Some("disabled".to_owned()), payload: "{}".to_owned(), now: 600 };
    assert_eq!(webhooks.enqueue(&ping, &ids).await.expect("ping"), 1);
    let pinged = webhooks.list_deliveries("disabled", page(0, 100)).await.expect("list");
    assert_eq!(pinged.items.iter().map(|d| (d.event.as_str(), d.status)).collect::<Vec<_>>(), [("webhook.ping", DeliveryStatus::Pending)]);
    assert!(webhooks.list_deliveries("other", page(0, 100)).await.expect("list").items.iter().all(|d| d.event != "webhook.ping"));
    let missing = OutboxEvent { only_webhook: Some("nope".to_owned()), ..ping };
    assert!(matches!(webhooks.enqueue(&missing, &ids).await, Err(Error::Webhooks(crate::WebhookError::WebhookNotFound { .. }))));
}
