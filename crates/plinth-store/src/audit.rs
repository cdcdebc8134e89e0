//! The `AuditLog` port: an append-only record of changes and refusals, and `Record`, the audit
//! record every mutating port method takes.
//!
//! One idiom for every service: a change's record is written by the storage adapter in the
//! change's own transaction, just before it commits (ADR 0007). The service says what the record
//! is (a `Record` built from the change's result, so ids the database allocates and values it read
//! under the transaction's locks are in it); the adapter inserts it. A change therefore commits
//! with its record or not at all. Refusals and failures change nothing and are appended on their
//! own, with `append_detached`.

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

/// The audit record of one change, built from the change's result inside its transaction.
///
/// The builder is called once per attempt (an adapter may retry a transaction that lost a race),
/// and what it returns is inserted before `COMMIT`. `Record::none()` is for writes that are data
/// rather than changes of an entity (metrics, params, a token's last use): a service that passes
/// it says so in the code, where a reviewer sees it.
pub struct Record<'a, T: ?Sized> {
    build: Box<BuildEvents<'a, T>>,
}

/// What a `Record` holds: the events of a change, from its result.
type BuildEvents<'a, T> = dyn Fn(&T) -> Vec<AuditEvent> + Send + Sync + 'a;

impl<'a, T: ?Sized> Record<'a, T> {
    /// One event, built from the result.
    pub fn of(build: impl Fn(&T) -> AuditEvent + Send + Sync + 'a) -> Record<'a, T> {
        Record { build: Box::new(move |value| vec![build(value)]) }
    }

    /// Several events (a promotion applied moves an alias: both histories show it), or none.
    pub fn many(build: impl Fn(&T) -> Vec<AuditEvent> + Send + Sync + 'a) -> Record<'a, T> {
        Record { build: Box::new(build) }
    }

    /// The same event whatever the result.
    pub fn event(event: AuditEvent) -> Record<'a, T> {
        Record::of(move |_| event.clone())
    }

    /// No record: the write is data, not a change (see the type's doc).
    pub fn none() -> Record<'a, T> {
        Record { build: Box::new(|_| Vec::new()) }
    }

    /// The events to insert for `value`, each with the `Ok` outcome.
    pub fn events(&self, value: &T) -> Vec<AuditEvent> {
        let mut events = (self.build)(value);
        for e in &mut events {
            e.outcome = Outcome::Ok;
        }
        events
    }
}

impl<T: ?Sized> std::fmt::Debug for Record<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Record")
    }
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

/// Records a change that did not happen: when `res` is an error, appends `event` concluded with it
/// (a refusal or a failure), then hands `res` back unchanged. A success appends nothing: its
/// record was written by the adapter in the change's own transaction. An append that fails here
/// is logged, and the caller still gets the change's own error, the more useful of the two.
pub async fn append_failure<T, E>(
    audit: &std::sync::Arc<dyn AuditLog>,
    event: AuditEvent,
    res: std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    E: plinth_core::HasErrorCode + std::fmt::Display,
{
    if res.is_err() {
        let event = event.concluded(&res);
        if let Err(e) = append_detached(audit, event).await {
            tracing::warn!(error = %e, "could not record a refused or failed change in the audit trail");
        }
    }
    res
}

#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends one event durably; returns its id. Ids grow with append order.
    async fn append(&self, event: &AuditEvent) -> Result<i64>;
    /// Matching events, newest first.
    async fn query(&self, query: &AuditQuery) -> Result<Rows<AuditEvent>>;
}
