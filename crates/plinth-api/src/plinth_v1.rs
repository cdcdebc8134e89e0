//! Plinth's own REST API under `/api/plinth/v1`: promotion gates, promotions and approvals,
//! lineage, the audit trail and webhooks. Same error shape as the MLflow routes.

use axum::Json;
use axum::extract::{Path, State};
use plinth_core::audit::Outcome;
use plinth_core::registry::{GateSpec, PromotionStatus, ReviewDecision};
use plinth_core::validation::InvalidParameter;
use plinth_registry::{NewWebhook, PromotionAsk, PromotionOutcome};
use plinth_store::audit::AuditQuery;
use plinth_store::webhooks::{WebhookStatus, WebhookUpdate};
use serde_json::{Value, json};

use crate::access::{Locate as L, Need as N};
use crate::fields::{Fields, MlflowRequest};
use crate::identity::Caller;
use crate::references::Scope;
use crate::registry::version;
use crate::routes::Routes;
use crate::{ApiError, AppState, json};
use plinth_core::auth::Level::{Edit, Manage, Read};
use plinth_store::registry::Expect;

type Answer = Result<Json<Value>, ApiError>;

pub(crate) fn routes() -> Routes {
    Routes::new()
        .get("/registered-models/{name}/gates", N::Model(Read, L::Path("name")), list_gates)
        .get("/registered-models/{name}/gates/{target}", N::Model(Read, L::Path("name")), get_gate)
        .put("/registered-models/{name}/gates/{target}", N::Model(Manage, L::Path("name")), put_gate)
        .delete("/registered-models/{name}/gates/{target}", N::Model(Manage, L::Path("name")), delete_gate)
        .post("/registered-models/{name}/gates/{target}/check", N::Model(Read, L::Path("name")), check_gate)
        .post("/registered-models/{name}/aliases/{alias}/promote", N::Model(Edit, L::Path("name")), promote)
        .get("/registered-models/{name}/versions/{version}/lineage", N::Model(Read, L::Path("name")), lineage)
        .get("/runs/{run_id}/model-versions", N::Experiment(Read, L::RunPath("run_id")), versions_from_run)
        .post("/promotions", N::Model(Edit, L::Field("name")), request_promotion)
        .get("/promotions", N::PromotionList, list_promotions)
        .get("/promotions/{id}", N::Model(Read, L::PromotionPath("id")), get_promotion)
        // Reviewing also needs the approver role (checked by the handler).
        .post("/promotions/{id}/approve", N::Model(Read, L::PromotionPath("id")), approve)
        .post("/promotions/{id}/reject", N::Model(Read, L::PromotionPath("id")), reject)
        .post("/promotions/{id}/apply", N::Model(Edit, L::PromotionPath("id")), apply)
        // Only the requester may cancel (checked by the service).
        .post("/promotions/{id}/cancel", N::Model(Read, L::PromotionPath("id")), cancel)
        .get("/audit", N::Admin, audit)
        .post("/webhooks", N::Admin, create_webhook)
        .get("/webhooks", N::Admin, list_webhooks)
        .get("/webhooks/{id}", N::Admin, get_webhook)
        .patch("/webhooks/{id}", N::Admin, update_webhook)
        .delete("/webhooks/{id}", N::Admin, delete_webhook)
        .post("/webhooks/{id}/test", N::Admin, test_webhook)
        .get("/webhooks/{id}/deliveries", N::Admin, list_deliveries)
}

fn outcome(o: &PromotionOutcome) -> Answer {
    Ok(Json(json!({"promotion": json::promotion(&o.request), "gate_report": json::gate_report(&o.report)})))
}

fn promotion_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| ApiError::invalid(format!("Invalid promotion request id '{raw}'")))
}

fn strings(f: &Fields, name: &str) -> Result<Vec<String>, ApiError> {
    f.str_list(name)
}

// Gates.

async fn list_gates(State(s): State<AppState>, Path(name): Path<String>) -> Answer {
    let gates = s.registry.list_gates(&name).await?;
    Ok(Json(json!({"gates": gates.iter().map(json::gate).collect::<Vec<_>>()})))
}

async fn get_gate(State(s): State<AppState>, Path((name, target)): Path<(String, String)>) -> Answer {
    Ok(Json(json!({"gate": json::gate(&s.registry.get_gate(&name, &target).await?)})))
}

async fn put_gate(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path((name, target)): Path<(String, String)>,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    let approvals = f.opt_i64("approvals_required")?.unwrap_or(0);
    let approvals = u32::try_from(approvals).map_err(|_| {
        ApiError::invalid(format!("approvals_required must be between 0 and {}", plinth_core::registry::MAX_GATE_APPROVALS))
    })?;
    let spec = GateSpec {
        target,
        conditions: strings(&f, "conditions")?,
        required_tags: strings(&f, "required_tags")?,
        approvals_required: approvals,
        description: f.opt_str("description")?,
    };
    let gate = s.registry.put_gate(&actor, &name, spec).await?;
    Ok(Json(json!({"gate": json::gate(&gate)})))
}

async fn delete_gate(State(s): State<AppState>, Caller(actor): Caller, Path((name, target)): Path<(String, String)>) -> Answer {
    s.registry.delete_gate(&actor, &name, &target).await?;
    Ok(Json(json!({})))
}

async fn check_gate(
    State(s): State<AppState>,
    Scope(viewer): Scope,
    Path((name, target)): Path<(String, String)>,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    let report = s.registry.check_gate(&name, &target, &version(&f, "version")?, &viewer).await?;
    Ok(Json(json!({"gate_report": json::gate_report(&report)})))
}

async fn promote(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Scope(viewer): Scope,
    Path((name, alias)): Path<(String, String)>,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    // Absent: no precondition. `null` or "": the alias must be unset. A version: it must point there.
    let expected =
        if f.is_null("expected_current_version") || matches!(f.opt_str("expected_current_version"), Ok(Some(ref v)) if v.is_empty()) {
            Expect::Holder(None)
        } else if f.has("expected_current_version") {
            Expect::Holder(Some(f.i64("expected_current_version")?))
        } else {
            Expect::Anything
        };
    let report = s.registry.promote(&actor, &name, &alias, &version(&f, "version")?, expected, &viewer).await?;
    Ok(Json(json!({"gate_report": json::gate_report(&report)})))
}

// Lineage.

async fn lineage(State(s): State<AppState>, Scope(viewer): Scope, Path((name, number)): Path<(String, String)>) -> Answer {
    let mut l = s.registry.lineage(&name, &number).await?;
    // The run and the logged model show only to those who may read their experiment.
    if l.run.as_ref().is_some_and(|r| !viewer.may_read_experiment(r.info.experiment_id.as_str())) {
        l.run = None;
    }
    if l.logged_model.as_ref().is_some_and(|m| !viewer.may_read_experiment(m.experiment_id.as_str())) {
        l.logged_model = None;
    }
    let run = l.run.as_ref().map(|r| {
        json!({
            "run_id": r.info.run_id.as_str(),
            "experiment_id": r.info.experiment_id.as_str(),
            "run_name": r.info.run_name,
            "status": r.info.status.as_str(),
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
            "dataset_inputs": r.inputs.dataset_inputs.iter().map(|d| json!({
                "dataset": {"name": d.dataset.name, "digest": d.dataset.digest, "source_type": d.dataset.source_type, "source": d.dataset.source},
                "tags": d.tags.iter().map(|t| json!({"key": t.key, "value": t.value})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    });
    let logged_model = l.logged_model.as_ref().map(|m| {
        json!({"model_id": m.model_id.as_str(), "name": m.name, "artifact_location": m.artifact_location, "experiment_id": m.experiment_id.as_str()})
    });
    // Why `run` may be empty: the version names no run, or one this server does not have (a run
    // tracked elsewhere) or that the caller may not read; the last two read the same.
    let run_state = match (&run, l.version.run_id.as_deref().filter(|it| !it.is_empty())) {
        (Some(_), _) => "FOUND",
        (None, Some(_)) => "UNAVAILABLE",
        (None, None) => "NONE",
    };
    Ok(Json(json!({
        "model_version": json::model_version(&l.version),
        "run": run,
        "run_state": run_state,
        "logged_model": logged_model,
        "copied_from": l.copied_from.map(|(n, v)| json!({"name": n, "version": v.to_string()})),
    })))
}

async fn versions_from_run(
    State(s): State<AppState>,
    p: Option<axum::Extension<plinth_auth::Principal>>,
    Path(run_id): Path<String>,
) -> Answer {
    let mut versions = s.registry.versions_from_run(&run_id).await?;
    if let Some(readable) = crate::auth::readable(&s, p.as_ref().map(|e| &e.0), plinth_core::auth::ResourceKind::RegisteredModel).await? {
        versions.retain(|v| readable.contains(&v.name));
    }
    Ok(Json(json!({"model_versions": versions.iter().map(json::model_version).collect::<Vec<_>>()})))
}

// Promotions.

async fn request_promotion(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Scope(viewer): Scope,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    let ask = PromotionAsk {
        model: f.str("name")?,
        version: version(&f, "version")?,
        target: f.str("target")?,
        reason: f.opt_str("reason")?,
        ttl_secs: f.opt_i64("ttl_secs")?,
    };
    outcome(&s.registry.request_promotion(&actor, ask, &viewer).await?)
}

async fn list_promotions(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let status = match f.opt_str("status")? {
        Some(raw) => Some(
            PromotionStatus::parse(&raw)
                .ok_or_else(|| InvalidParameter::invalid_value("status", &raw, "Use PENDING, APPLIED, REJECTED, EXPIRED or CANCELLED."))?,
        ),
        None => None,
    };
    let page =
        s.registry.list_promotions(f.opt_str("name")?, status, f.opt_i64("max_results")?, f.opt_str("page_token")?.as_deref()).await?;
    Ok(Json(json::page("promotions", page.items.iter().map(json::promotion).collect(), page.next_page_token)))
}

async fn get_promotion(State(s): State<AppState>, Scope(viewer): Scope, Path(id): Path<String>) -> Answer {
    outcome(&s.registry.get_promotion(promotion_id(&id)?, &viewer).await?)
}

async fn approve(
    State(s): State<AppState>,
    p: Option<axum::Extension<plinth_auth::Principal>>,
    Caller(actor): Caller,
    Scope(viewer): Scope,
    Path(id): Path<String>,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    crate::auth::require_approver(&s, p.as_ref().map(|e| &e.0))?;
    outcome(&s.registry.review_promotion(&actor, promotion_id(&id)?, ReviewDecision::Approve, f.opt_str("comment")?, &viewer).await?)
}

async fn reject(
    State(s): State<AppState>,
    p: Option<axum::Extension<plinth_auth::Principal>>,
    Caller(actor): Caller,
    Scope(viewer): Scope,
    Path(id): Path<String>,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    crate::auth::require_approver(&s, p.as_ref().map(|e| &e.0))?;
    outcome(&s.registry.review_promotion(&actor, promotion_id(&id)?, ReviewDecision::Reject, f.opt_str("comment")?, &viewer).await?)
}

async fn apply(State(s): State<AppState>, Caller(actor): Caller, Scope(viewer): Scope, Path(id): Path<String>) -> Answer {
    outcome(&s.registry.apply_promotion(&actor, promotion_id(&id)?, &viewer).await?)
}

async fn cancel(State(s): State<AppState>, Caller(actor): Caller, Path(id): Path<String>) -> Answer {
    let p = s.registry.cancel_promotion(&actor, promotion_id(&id)?).await?;
    Ok(Json(json!({"promotion": json::promotion(&p)})))
}

// Audit.

async fn audit(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let outcome = match f.opt_str("outcome")? {
        Some(raw) => {
            Some(Outcome::parse(&raw).ok_or_else(|| InvalidParameter::invalid_value("outcome", &raw, "Use OK, REFUSED or FAILED."))?)
        }
        None => None,
    };
    let before_id = match f.opt_str("page_token")?.filter(|t| !t.is_empty()) {
        Some(t) => Some(t.parse::<i64>().map_err(|_| ApiError::invalid("Invalid page token"))?),
        None => None,
    };
    let query = AuditQuery {
        resource_type: f.opt_str("resource_type")?,
        resource_id: f.opt_str("resource_id")?,
        actor: f.opt_str("actor")?,
        action: f.opt_str("action")?,
        outcome,
        since: f.opt_i64("since")?,
        until: f.opt_i64("until")?,
        before_id,
        limit: f.opt_i64("max_results")?.unwrap_or(100),
    };
    let rows = s.registry.audit_events(query).await?;
    let next = if rows.has_more { rows.items.last().map(|e| e.id.to_string()) } else { None };
    Ok(Json(json::page("events", rows.items.iter().map(json::audit_event).collect(), next)))
}

// Webhooks.

fn webhook_status(f: &Fields) -> Result<Option<WebhookStatus>, ApiError> {
    match f.opt_str("status")? {
        Some(raw) => {
            Ok(Some(WebhookStatus::parse(&raw).ok_or_else(|| InvalidParameter::invalid_value("status", &raw, "Use ACTIVE or DISABLED."))?))
        }
        None => Ok(None),
    }
}

async fn create_webhook(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let new = NewWebhook {
        name: f.str("name")?,
        url: f.str("url")?,
        events: strings(&f, "events")?,
        secret: f.opt_str("secret")?,
        description: f.opt_str("description")?,
        active: webhook_status(&f)?.is_none_or(|s| s == WebhookStatus::Active),
    };
    let hook = s.registry.create_webhook(&actor, new).await?;
    Ok(Json(json!({"webhook": json::webhook(&hook)})))
}

async fn list_webhooks(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let page = s.registry.list_webhooks(f.opt_i64("max_results")?, f.opt_str("page_token")?.as_deref()).await?;
    Ok(Json(json::page("webhooks", page.items.iter().map(json::webhook).collect(), page.next_page_token)))
}

async fn get_webhook(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    Ok(Json(json!({"webhook": json::webhook(&s.registry.get_webhook(&id).await?)})))
}

async fn update_webhook(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    let update = WebhookUpdate {
        name: f.opt_str("name")?,
        url: f.opt_str("url")?,
        events: if f.has("events") { Some(strings(&f, "events")?) } else { None },
        secret: f.opt_str("secret")?,
        status: webhook_status(&f)?,
        description: f.opt_str("description")?,
    };
    let hook = s.registry.update_webhook(&actor, &id, update).await?;
    Ok(Json(json!({"webhook": json::webhook(&hook)})))
}

async fn delete_webhook(State(s): State<AppState>, Caller(actor): Caller, Path(id): Path<String>) -> Answer {
    s.registry.delete_webhook(&actor, &id).await?;
    Ok(Json(json!({})))
}

async fn test_webhook(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    s.registry.test_webhook(&id).await?;
    Ok(Json(json!({})))
}

async fn list_deliveries(State(s): State<AppState>, Path(id): Path<String>, MlflowRequest(f): MlflowRequest) -> Answer {
    let page = s.registry.list_deliveries(&id, f.opt_i64("max_results")?, f.opt_str("page_token")?.as_deref()).await?;
    Ok(Json(json::page("deliveries", page.items.iter().map(json::delivery).collect(), page.next_page_token)))
}
