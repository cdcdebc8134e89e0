//! Rendering domain types as MLflow's JSON (proto field names, int64 as numbers, NaN as "NaN").

use plinth_core::tracking::{DatasetInput, Experiment, KeyValue, LoggedModel, Metric, ModelOutput, Run, RunInfo};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Value, json};

/// A double as MLflow writes it: NaN and infinities as strings.
pub(crate) fn double(v: f64) -> Value {
    if v.is_nan() {
        Value::String("NaN".into())
    } else if v == f64::INFINITY {
        Value::String("Infinity".into())
    } else if v == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        json!(v)
    }
}

fn key_values(items: &[KeyValue]) -> Value {
    Value::Array(items.iter().map(|it| json!({"key": it.key, "value": it.value})).collect())
}

/// A metric; serialized directly (no intermediate `Value`) because histories can be long.
pub(crate) struct MetricJson<'a> {
    pub(crate) metric: &'a Metric,
    pub(crate) run_id: Option<&'a str>,
}

impl Serialize for MetricJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.metric;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("key", &m.key)?;
        if m.value.is_finite() {
            map.serialize_entry("value", &m.value)?;
        } else {
            map.serialize_entry("value", &double(m.value))?;
        }
        map.serialize_entry("timestamp", &m.timestamp)?;
        map.serialize_entry("step", &m.step)?;
        if let Some(it) = &m.dataset_name {
            map.serialize_entry("dataset_name", it)?;
        }
        if let Some(it) = &m.dataset_digest {
            map.serialize_entry("dataset_digest", it)?;
        }
        if let Some(it) = &m.model_id {
            map.serialize_entry("model_id", it)?;
        }
        if let Some(run_id) = self.run_id {
            map.serialize_entry("run_id", run_id)?;
        }
        map.end()
    }
}

pub(crate) fn metric(m: &Metric, run_id: Option<&str>) -> Value {
    serde_json::to_value(MetricJson { metric: m, run_id }).unwrap_or(Value::Null)
}

pub(crate) fn experiment(e: &Experiment) -> Value {
    json!({
        "experiment_id": e.experiment_id.as_str(),
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage.as_str(),
        "last_update_time": e.last_update_time,
        "creation_time": e.creation_time,
        "tags": key_values(&e.tags),
    })
}

pub(crate) fn run_info(info: &RunInfo) -> Value {
    let mut v = json!({
        "run_id": info.run_id.as_str(),
        "run_uuid": info.run_id.as_str(),
        "run_name": info.run_name,
        "experiment_id": info.experiment_id.as_str(),
        "user_id": info.user_id,
        "status": info.status.as_str(),
        "start_time": info.start_time,
        "artifact_uri": info.artifact_uri,
        "lifecycle_stage": info.lifecycle_stage.as_str(),
    });
    if let Some(end_time) = info.end_time {
        v["end_time"] = json!(end_time);
    }
    v
}

fn dataset_input(input: &DatasetInput) -> Value {
    let d = &input.dataset;
    let mut dataset = json!({"name": d.name, "digest": d.digest, "source_type": d.source_type, "source": d.source});
    if let Some(schema) = &d.schema {
        dataset["schema"] = json!(schema);
    }
    if let Some(profile) = &d.profile {
        dataset["profile"] = json!(profile);
    }
    json!({"tags": key_values(&input.tags), "dataset": dataset})
}

fn model_output(o: &ModelOutput) -> Value {
    json!({"model_id": o.model_id, "step": o.step})
}

pub(crate) fn run(r: &Run) -> Value {
    json!({
        "info": run_info(&r.info),
        "data": {
            "metrics": r.data.metrics.iter().map(|m| metric(m, None)).collect::<Vec<_>>(),
            "params": key_values(&r.data.params),
            "tags": key_values(&r.data.tags),
        },
        "inputs": {
            "dataset_inputs": r.inputs.dataset_inputs.iter().map(dataset_input).collect::<Vec<_>>(),
            "model_inputs": r.inputs.model_inputs.iter().map(|id| json!({"model_id": id})).collect::<Vec<_>>(),
        },
        "outputs": {
            "model_outputs": r.outputs.iter().map(model_output).collect::<Vec<_>>(),
        },
    })
}

pub(crate) fn logged_model(m: &LoggedModel) -> Value {
    let mut info = json!({
        "model_id": m.model_id.as_str(),
        "experiment_id": m.experiment_id.as_str(),
        "name": m.name,
        "creation_timestamp_ms": m.creation_timestamp,
        "last_updated_timestamp_ms": m.last_updated_timestamp,
        "artifact_uri": m.artifact_location,
        "status": m.status.as_str(),
        "tags": key_values(&m.tags),
    });
    if let Some(it) = &m.model_type {
        info["model_type"] = json!(it);
    }
    if let Some(it) = &m.source_run_id {
        info["source_run_id"] = json!(it.as_str());
    }
    if let Some(it) = &m.status_message {
        info["status_message"] = json!(it);
    }
    json!({
        "info": info,
        "data": {
            "params": key_values(&m.params),
            "metrics": m.metrics.iter().map(|x| metric(&x.metric, Some(x.run_id.as_str()))).collect::<Vec<_>>(),
        },
    })
}

/// A directory entry as MLflow's `FileInfo`; `file_size` only for files.
pub(crate) fn file_info(path: &str, entry: &plinth_blob::Entry) -> Value {
    let mut v = json!({"path": path, "is_dir": entry.is_dir});
    if let Some(size) = entry.size {
        v["file_size"] = json!(size);
    }
    v
}

/// `{"<items_field>": [...], "next_page_token": "..."}`, the token omitted on the last page.
pub(crate) fn page(items_field: &str, items: Vec<Value>, next_page_token: Option<String>) -> Value {
    let mut v = json!({ items_field: items });
    if let Some(token) = next_page_token {
        v["next_page_token"] = json!(token);
    }
    v
}

// Registry.

fn opt_str(map: &mut serde_json::Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), Value::String(v.clone()));
    }
}

pub(crate) fn model_version(v: &plinth_core::registry::ModelVersion) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("name".into(), json!(v.name));
    map.insert("version".into(), json!(v.version.to_string()));
    map.insert("creation_timestamp".into(), json!(v.creation_timestamp));
    map.insert("last_updated_timestamp".into(), json!(v.last_updated_timestamp));
    opt_str(&mut map, "user_id", &v.user_id);
    map.insert("current_stage".into(), json!(v.current_stage.as_str()));
    // Always present, "" when none was given, as MLflow answers (its client then reads "", not None).
    map.insert("description".into(), json!(v.description.as_deref().unwrap_or("")));
    map.insert("source".into(), json!(v.source));
    opt_str(&mut map, "run_id", &v.run_id);
    map.insert("status".into(), json!(v.status.as_str()));
    opt_str(&mut map, "status_message", &v.status_message);
    map.insert("tags".into(), key_values(&v.tags));
    opt_str(&mut map, "run_link", &v.run_link);
    map.insert("aliases".into(), json!(v.aliases));
    opt_str(&mut map, "model_id", &v.model_id);
    Value::Object(map)
}

pub(crate) fn registered_model(m: &plinth_core::registry::RegisteredModel) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("name".into(), json!(m.name));
    map.insert("creation_timestamp".into(), json!(m.creation_timestamp));
    map.insert("last_updated_timestamp".into(), json!(m.last_updated_timestamp));
    opt_str(&mut map, "description", &m.description);
    map.insert("latest_versions".into(), Value::Array(m.latest_versions.iter().map(model_version).collect()));
    map.insert("tags".into(), key_values(&m.tags));
    map.insert(
        "aliases".into(),
        Value::Array(m.aliases.iter().map(|a| json!({"alias": a.alias, "version": a.version.to_string()})).collect()),
    );
    Value::Object(map)
}

pub(crate) fn gate(g: &plinth_core::registry::Gate) -> Value {
    json!({
        "name": g.model,
        "target": g.spec.target,
        "kind": if plinth_core::registry::Stage::from_gate_target(&g.spec.target).is_some() { "stage" } else { "alias" },
        "conditions": g.spec.conditions,
        "required_tags": g.spec.required_tags,
        "approvals_required": g.spec.approvals_required,
        "description": g.spec.description,
        "updated_by": g.updated_by,
        "updated_at": g.updated_at,
    })
}

pub(crate) fn gate_report(r: &plinth_registry::GateReport) -> Value {
    json!({
        "target": r.target,
        "version": r.version.to_string(),
        "current_version": r.current.map(|v| v.to_string()),
        "conditions_passed": r.conditions_pass(),
        "approved": r.approved(),
        "approvals_required": r.approvals_required,
        "approvals": r.approvals,
        "checks": r.checks.iter().map(|c| json!({"condition": c.condition, "passed": c.passed, "detail": c.detail})).collect::<Vec<_>>(),
    })
}

pub(crate) fn promotion(p: &plinth_core::registry::PromotionRequest) -> Value {
    json!({
        "id": p.id.to_string(),
        "name": p.model,
        "version": p.version.to_string(),
        "target": p.target,
        "requester": p.requester,
        "reason": p.reason,
        "status": p.status.as_str(),
        "created_at": p.created_at,
        "expires_at": p.expires_at,
        "updated_at": p.updated_at,
        "reviews": p.reviews.iter().map(|r| json!({
            "reviewer": r.reviewer, "decision": r.decision.as_str(), "comment": r.comment, "created_at": r.created_at,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn audit_event(e: &plinth_core::audit::AuditEvent) -> Value {
    json!({
        "id": e.id.to_string(),
        "time": e.time,
        "actor": e.actor,
        "action": e.action,
        "resource_type": e.resource_type,
        "resource_id": e.resource_id,
        "outcome": e.outcome.as_str(),
        "message": e.message,
        "changes": e.changes.iter().map(|c| json!({"field": c.field, "before": c.before, "after": c.after})).collect::<Vec<_>>(),
    })
}

/// A webhook, without its secret.
pub(crate) fn webhook(w: &plinth_store::webhooks::Webhook) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "url": plinth_registry::webhooks::display_url(&w.url),
        "events": w.events,
        "status": w.status.as_str(),
        "description": w.description,
        "has_secret": !w.secret.is_empty(),
        "created_at": w.created_at,
        "updated_at": w.updated_at,
    })
}

pub(crate) fn delivery(d: &plinth_store::webhooks::Delivery) -> Value {
    json!({
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event": d.event,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "next_attempt_at": d.next_attempt_at,
        "finished_at": d.finished_at,
    })
}
