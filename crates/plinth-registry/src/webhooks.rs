//! Webhooks: events queued in a durable outbox after each change commits, and a dispatcher that
//! POSTs them, signed, retrying with exponential backoff.
//!
//! The wire format is MLflow's (so receivers written for MLflow's webhooks work unchanged):
//! a JSON body `{"entity", "action", "timestamp", "data"}` and the headers
//! `X-MLflow-Delivery-Id`, `X-MLflow-Timestamp` (Unix seconds) and
//! `X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">`.
//! Plinth adds `X-Plinth-Event: <entity>.<action>` and the `promotion_request` events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use plinth_core::audit::Actor;
use plinth_core::registry::PromotionRequest;
use plinth_core::time::now_millis;
use plinth_core::tracking::KeyValue;
use plinth_store::WebhookStore;
use plinth_store::webhooks::{Attempt, Delivery, DeliveryStatus, OutboxEvent, Webhook};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Every event a webhook may subscribe to.
pub const EVENTS: &[&str] = &[
    "registered_model.created",
    "model_version.created",
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
    "model_version_alias.deleted",
    "promotion_request.created",
    "promotion_request.approved",
    "promotion_request.rejected",
    "promotion_request.expired",
    "deployment.rolled_back",
];

/// A registry event, before it becomes a payload.
#[derive(Debug, Clone)]
pub enum Event {
    RegisteredModelCreated {
        name: String,
        tags: Vec<KeyValue>,
        description: Option<String>,
    },
    ModelVersionCreated {
        name: String,
        version: i64,
        source: String,
        run_id: Option<String>,
        tags: Vec<KeyValue>,
        description: Option<String>,
    },
    ModelVersionTagSet {
        name: String,
        version: i64,
        key: String,
        value: String,
    },
    ModelVersionTagDeleted {
        name: String,
        version: i64,
        key: String,
    },
    AliasSet {
        name: String,
        alias: String,
        version: i64,
    },
    AliasDeleted {
        name: String,
        alias: String,
    },
    Promotion {
        action: &'static str,
        data: Value,
    },
    /// Something serving did to a deployment by itself (`rolled_back`).
    Deployment {
        action: &'static str,
        data: Value,
    },
}

fn tag_map(tags: &[KeyValue]) -> Value {
    Value::Object(tags.iter().map(|t| (t.key.clone(), Value::String(t.value.clone()))).collect::<Map<_, _>>())
}

impl Event {
    pub(crate) fn promotion(action: &'static str, request: &PromotionRequest, actor: &Actor, comment: Option<&str>) -> Event {
        Event::Promotion {
            action,
            data: json!({
                "id": request.id.to_string(),
                "name": request.model,
                "version": request.version.to_string(),
                "target": request.target,
                "requester": request.requester,
                "reason": request.reason,
                "status": request.status.as_str(),
                "approvals": request.approvers(),
                "actor": actor.name,
                "comment": comment,
            }),
        }
    }

    /// `(entity, action, data)`.
    fn parts(&self) -> (&'static str, &'static str, Value) {
        match self {
            Event::RegisteredModelCreated { name, tags, description } => {
                ("registered_model", "created", json!({"name": name, "tags": tag_map(tags), "description": description}))
            }
            Event::ModelVersionCreated { name, version, source, run_id, tags, description } => (
                "model_version",
                "created",
                json!({"name": name, "version": version.to_string(), "source": source, "run_id": run_id, "tags": tag_map(tags), "description": description}),
            ),
            Event::ModelVersionTagSet { name, version, key, value } => {
                ("model_version_tag", "set", json!({"name": name, "version": version.to_string(), "key": key, "value": value}))
            }
            Event::ModelVersionTagDeleted { name, version, key } => {
                ("model_version_tag", "deleted", json!({"name": name, "version": version.to_string(), "key": key}))
            }
            Event::AliasSet { name, alias, version } => {
                ("model_version_alias", "created", json!({"name": name, "alias": alias, "version": version.to_string()}))
            }
            Event::AliasDeleted { name, alias } => ("model_version_alias", "deleted", json!({"name": name, "alias": alias})),
            Event::Promotion { action, data } => ("promotion_request", action, data.clone()),
            Event::Deployment { action, data } => ("deployment", action, data.clone()),
        }
    }
}

/// Queues events for delivery and wakes the dispatcher.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn WebhookStore>,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(store: Arc<dyn WebhookStore>) -> Outbox {
        Outbox { store, wake: Arc::new(Notify::new()) }
    }

    pub fn store(&self) -> &Arc<dyn WebhookStore> {
        &self.store
    }

    /// Queues `event` for every subscribed webhook. The change it reports has committed, so a
    /// failure here is logged, not returned: the caller's request succeeded.
    pub async fn emit(&self, event: Event) {
        let (entity, action, data) = event.parts();
        let name = format!("{entity}.{action}");
        let now = now_millis();
        let body =
            json!({"entity": entity, "action": action, "timestamp": plinth_core::time::rfc3339_from_millis(now), "data": data}).to_string();
        let new_id = || uuid::Uuid::new_v4().to_string();
        match self.store.enqueue(&OutboxEvent { event: name.clone(), only_webhook: None, payload: body, now }, &new_id).await {
            Ok(0) => {}
            Ok(_) => self.wake.notify_one(),
            Err(e) => tracing::error!(error = %e, event = %name, "could not queue a webhook event"),
        }
    }

    /// Queues a `webhook.test` ping to one webhook, whatever it subscribes to.
    pub async fn ping(&self, webhook: &Webhook) -> plinth_store::Result<()> {
        let now = now_millis();
        let body = json!({"entity": "webhook", "action": "test", "timestamp": plinth_core::time::rfc3339_from_millis(now), "data": {"webhook_id": webhook.id, "name": webhook.name}}).to_string();
        let id = webhook.id.clone();
        let new_id = || uuid::Uuid::new_v4().to_string();
        self.store.enqueue(&OutboxEvent { event: "webhook.test".into(), only_webhook: Some(id), payload: body, now }, &new_id).await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// `v1,<base64(HMAC-SHA256(secret, "<id>.<timestamp>.<body>"))>`.
pub fn signature(secret: &str, delivery_id: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(delivery_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts before a delivery is marked failed.
    pub max_attempts: i64,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How often the outbox is polled when nothing wakes the dispatcher.
    pub poll_interval: Duration,
}

/// Delivers due outbox entries until shut down.
pub struct Dispatcher {
    outbox: Outbox,
    client: reqwest::Client,
    config: DispatchConfig,
}

const BATCH: i64 = 64;

impl Dispatcher {
    /// Fails only if the HTTP client cannot be built: better at start than silently without the
    /// timeout and the no-redirect policy.
    pub fn new(outbox: Outbox, config: DispatchConfig) -> Result<Dispatcher, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(config.timeout).redirect(reqwest::redirect::Policy::none()).no_proxy().build()?;
        Ok(Dispatcher { outbox, client, config })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let delivered = tokio::select! {
                () = shutdown.cancelled() => return,
                res = self.round() => match res {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook dispatch round failed");
                        0
                    }
                },
            };
            if delivered as i64 >= BATCH && !shutdown.is_cancelled() {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.outbox.wake.notified() => {},
                () = tokio::time::sleep(self.config.poll_interval) => {},
            }
        }
    }

    /// Delivers one batch of due entries; returns how many were attempted.
    pub async fn round(&self) -> plinth_store::Result<usize> {
        let store = &self.outbox.store;
        // Lease the batch for longer than its requests can take, so another server's dispatcher skips it.
        let now = now_millis();
        let timeout_ms = i64::try_from(self.config.timeout.as_millis()).unwrap_or(i64::MAX / 4);
        let lease = now.saturating_add(timeout_ms.saturating_mul(2)).saturating_add(60_000);
        let due = store.claim_due(now, BATCH, lease).await?;
        let mut hooks: HashMap<String, Option<Webhook>> = HashMap::new();
        for d in &due {
            if !hooks.contains_key(&d.webhook_id) {
                let hook = match store.get_webhook(&d.webhook_id).await {
                    Ok(h) => Some(h),
                    Err(plinth_store::Error::Webhooks(plinth_store::WebhookError::WebhookNotFound { .. })) => None,
                    Err(e) => return Err(e),
                };
                hooks.insert(d.webhook_id.clone(), hook);
            }
        }
        let attempts = due.iter().map(|d| self.deliver(d, hooks.get(&d.webhook_id).cloned().flatten()));
        let results = futures::future::join_all(attempts).await;
        // Each attempt is recorded on its own: one failure (a webhook deleted meanwhile took its
        // deliveries with it) must not leave the others unrecorded and sent again.
        for (d, attempt) in due.iter().zip(results) {
            match store.record_attempt(&d.id, &attempt).await {
                Ok(()) | Err(plinth_store::Error::Webhooks(plinth_store::WebhookError::DeliveryNotFound { .. })) => {}
                Err(e) => tracing::warn!(error = %e, delivery = %d.id, "could not record a webhook delivery attempt"),
            }
        }
        Ok(due.len())
    }

    async fn deliver(&self, d: &Delivery, hook: Option<Webhook>) -> Attempt {
        let now = now_millis();
        let Some(hook) = hook else {
            return Attempt {
                status: DeliveryStatus::Failed,
                status_code: None,
                error: Some("the webhook was deleted".into()),
                next_attempt_at: now,
                now,
            };
        };
        // Test pings go to disabled webhooks too; events queued before a webhook was disabled do not.
        if hook.status == plinth_store::webhooks::WebhookStatus::Disabled && d.event != "webhook.test" {
            return Attempt {
                status: DeliveryStatus::Failed,
                status_code: None,
                error: Some("the webhook is disabled".into()),
                next_attempt_at: now,
                now,
            };
        }
        let timestamp = (now / 1000).to_string();
        let mut req = self
            .client
            .post(&hook.url)
            .header("Content-Type", "application/json")
            .header("X-MLflow-Delivery-Id", &d.id)
            .header("X-MLflow-Timestamp", &timestamp)
            .header("X-Plinth-Event", &d.event)
            .header("User-Agent", concat!("plinth-webhooks/", env!("CARGO_PKG_VERSION")));
        if !hook.secret.is_empty() {
            req = req.header("X-MLflow-Signature", signature(&hook.secret, &d.id, &timestamp, &d.payload));
        }
        let res = req.body(d.payload.clone()).send().await;
        let attempts = d.attempts + 1;
        let (retryable, status_code, error) = match res {
            Ok(resp) if resp.status().is_success() => {
                return Attempt {
                    status: DeliveryStatus::Succeeded,
                    status_code: Some(i64::from(resp.status().as_u16())),
                    error: None,
                    next_attempt_at: now,
                    now: now_millis(),
                };
            }
            Ok(resp) => {
                let code = resp.status().as_u16();
                let retryable = code == 408 || code == 429 || code >= 500;
                (retryable, Some(i64::from(code)), Some(format!("the receiver answered HTTP {code}")))
            }
            Err(e) => (true, None, Some(describe(e))),
        };
        let shift = u32::try_from((attempts - 1).clamp(0, 20)).unwrap_or(20);
        let backoff = self.config.initial_backoff.saturating_mul(1u32 << shift).min(self.config.max_backoff);
        let status = if retryable && attempts < self.config.max_attempts { DeliveryStatus::Pending } else { DeliveryStatus::Failed };
        let backoff_ms = i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX);
        Attempt { status, status_code, error, next_attempt_at: now.saturating_add(backoff_ms), now: now_millis() }
    }
}

/// A transport error without the URL (it may carry credentials).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "the request timed out".into()
    } else if e.is_connect() {
        "could not connect to the receiver".into()
    } else {
        format!("the request failed: {}", e.without_url())
    }
}

/// Checks a webhook target: an absolute http(s) URL.
pub fn validate_url(url: &str) -> Result<(), String> {
    // The URL may carry credentials: messages never repeat it.
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("Invalid webhook URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("Invalid webhook URL: the scheme must be http or https".to_owned());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("Invalid webhook URL: it names no host".to_owned());
    }
    Ok(())
}

/// The URL without its user name and password, for showing.
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_value() {
        // Computed independently: python3 -c 'import hmac,hashlib,base64;
        // print(base64.b64encode(hmac.new(b"s3cret", b"d1.1700000000.{}", hashlib.sha256).digest()).decode())'
        assert_eq!(signature("s3cret", "d1", "1700000000", "{}"), "v1,zanuGVyPdkCH5t63rF48cWGMLFZ3sNRiNHn6qebAxZ8=");
    }

    #[test]
    fn urls() {
        assert!(validate_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(validate_url("https://example.com/x").is_ok());
        assert!(validate_url("ftp://example.com/x").is_err());
        assert!(validate_url("/relative").is_err());
    }
}
