//! The `AuditLog` port: an append-only record of changes and refusals.

use async_trait::async_trait;
use plinth_core::audit::{AuditEvent, Outcome};

use crate::Result;
use crate::tracking::Rows;

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub resource_type: Option<String>,
    /// Exact resource id, or a prefix when it ends with `*` (`churn/*` for every version of `churn`).
    pub resource_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    /// Inclusive lower bound, milliseconds since the epoch.
    pub since: Option<i64>,
    /// Exclusive upper bound.
    pub until: Option<i64>,
    /// Only events with an id below this one (the cursor of the previous page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Appends `event` in a task of its own, so a caller whose request is dropped after its change
/// committed (the client hung up) does not cancel the record.
pub async fn append_detached(audit: &std::sync::Arc<dyn AuditLog>, event: AuditEvent) -> Result<i64> {
    let audit = audit.clone();
    match tokio::spawn(async move { audit.append(&event).await }).await {
        Ok(res) => res,
        Err(join) => Err(crate::Error::internal(join)),
    }
}

#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends one event durably; returns its id. Ids grow with append order.
    async fn append(&self, event: &AuditEvent) -> Result<i64>;
    /// Matching events, newest first.
    async fn query(&self, query: &AuditQuery) -> Result<Rows<AuditEvent>>;
}
