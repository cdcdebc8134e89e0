//! The `WebhookStore` port: subscriptions and a durable outbox of deliveries.

use async_trait::async_trait;

use crate::Result;
use crate::audit::Record;
use crate::tracking::{PageRequest, Rows};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookStatus {
    Active,
    Disabled,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Active => "ACTIVE",
            WebhookStatus::Disabled => "DISABLED",
        }
    }

    pub fn parse(s: &str) -> Option<WebhookStatus> {
        [WebhookStatus::Active, WebhookStatus::Disabled].into_iter().find(|it| it.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub url: String,
    /// `<entity>.<action>` names, e.g. `model_version.created`, `promotion_request.approved`.
    pub events: Vec<String>,
    /// The HMAC key. Never rendered back after creation.
    pub secret: String,
    pub status: WebhookStatus,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    pub name: Option<String>,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub secret: Option<String>,
    pub status: Option<WebhookStatus>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not delivered yet; retried at `next_attempt_at`.
    Pending,
    Succeeded,
    /// Gave up after the last attempt.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Succeeded => "SUCCEEDED",
            DeliveryStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [DeliveryStatus::Pending, DeliveryStatus::Succeeded, DeliveryStatus::Failed]
            .into_iter()
            .find(|it| it.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// A UUID, sent as the delivery id header.
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    /// The JSON document POSTed, exactly as signed.
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// An event to deliver to every active webhook subscribed to it.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub event: String,
    /// Only this webhook, whatever it subscribes to and whether it is active (a test ping).
    pub only_webhook: Option<String>,
    pub payload: String,
    pub now: i64,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: DeliveryStatus,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// When to try again (for `Pending`).
    pub next_attempt_at: i64,
    pub now: i64,
}

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    async fn create_webhook(&self, webhook: &Webhook, record: Record<'_, ()>) -> Result<()>;
    async fn get_webhook(&self, id: &str) -> Result<Webhook>;
    /// Oldest first.
    async fn list_webhooks(&self, page: PageRequest) -> Result<Rows<Webhook>>;
    async fn update_webhook(&self, id: &str, update: &WebhookUpdate, now: i64, record: Record<'_, Webhook>) -> Result<Webhook>;
    /// Deletes the webhook and its deliveries.
    async fn delete_webhook(&self, id: &str, record: Record<'_, ()>) -> Result<()>;
    /// Queues one delivery per active webhook subscribed to `event.event`, in one transaction;
    /// returns how many. `new_id` makes each delivery's id.
    async fn enqueue(&self, event: &OutboxEvent, new_id: &(dyn Fn() -> String + Send + Sync)) -> Result<usize>;
    /// Claims pending deliveries due at `now`, oldest first, at most `limit`: their
    /// `next_attempt_at` moves to `lease_until`, so another dispatcher (another server on the same
    /// database) does not take them while this one is sending; `record_attempt` then sets it.
    async fn claim_due(&self, now: i64, limit: i64, lease_until: i64) -> Result<Vec<Delivery>>;
    async fn record_attempt(&self, delivery_id: &str, attempt: &Attempt) -> Result<()>;
    /// A webhook's deliveries, newest first.
    async fn list_deliveries(&self, webhook_id: &str, page: PageRequest) -> Result<Rows<Delivery>>;
    async fn get_delivery(&self, id: &str) -> Result<Delivery>;
}

/// What the webhook port (webhooks, deliveries) can fail with, beyond the errors every port shares (`crate::Error`).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("Webhook with ID {id} not found.")]
    WebhookNotFound { id: String },
    #[error("Webhook delivery {id} not found.")]
    DeliveryNotFound { id: String },
}

impl plinth_core::HasErrorCode for WebhookError {
    fn error_code(&self) -> plinth_core::ErrorCode {
        use plinth_core::ErrorCode;
        match self {
            WebhookError::WebhookNotFound { .. } | WebhookError::DeliveryNotFound { .. } => ErrorCode::ResourceDoesNotExist,
        }
    }
}
