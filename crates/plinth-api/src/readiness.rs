//! Readiness: whether the server can take writes now, for load balancers, probes and operators.
//!
//! `GET /health` says the process answers; `GET /ready` says whether writes can succeed: it is
//! 503 while the storage under the data directory is out of space. The state is `Readiness`:
//! the server's monitor loop records the free space it measures, and every answer that refused a
//! write for lack of space marks it full at once. It stops being full when the free space is above
//! the configured floor and has grown since the last refused write (someone freed space), so it
//! leaves the state by itself. `/metrics` shows it as `plinth_storage_full` and
//! `plinth_storage_free_bytes`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;

/// No refused write since space last grew.
const NOT_MARKED: u64 = u64::MAX;
/// A write was refused before any measurement: the next measurement is the baseline.
const UNMEASURED: u64 = u64::MAX - 1;
/// How much free space must come back after a refused write to call the disk usable again.
const FREED_BYTES: u64 = 1 << 20;

/// What the server knows about its storage's free space.
#[derive(Debug)]
pub struct Readiness {
    /// The free space last measured.
    free_bytes: AtomicU64,
    /// Whether the last measurement was under the floor.
    below_floor: AtomicBool,
    /// The free space measured before the last refused write (`NOT_MARKED`: none since).
    free_when_refused: AtomicU64,
}

/// Put on a response that refused a write for lack of space.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefusedForSpace;

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness {
            free_bytes: AtomicU64::new(u64::MAX),
            below_floor: AtomicBool::new(false),
            free_when_refused: AtomicU64::new(NOT_MARKED),
        })
    }

    /// Records a measurement of the data directory's file system (the server's monitor loop).
    pub fn record_free_space(&self, free_bytes: u64, floor_bytes: u64) {
        self.free_bytes.store(free_bytes, Ordering::Relaxed);
        self.below_floor.store(free_bytes < floor_bytes, Ordering::Relaxed);
        let refused_at = self.free_when_refused.load(Ordering::Relaxed);
        if refused_at == NOT_MARKED {
            return;
        }
        if free_bytes >= floor_bytes && refused_at != UNMEASURED && free_bytes > refused_at.saturating_add(FREED_BYTES) {
            tracing::info!(free_bytes, "Storage has free space again: writes are accepted.");
            self.free_when_refused.store(NOT_MARKED, Ordering::Relaxed);
        } else {
            // The lowest reading since the refusal is what freed space is measured against.
            self.free_when_refused.fetch_min(free_bytes, Ordering::Relaxed);
        }
    }

    /// A write was just refused for lack of space.
    pub(crate) fn mark_refused(&self) {
        let free = self.free_bytes.load(Ordering::Relaxed);
        let at = if free == u64::MAX { UNMEASURED } else { free };
        // The smallest reading since the first refusal: space must grow past it to clear the mark.
        self.free_when_refused.fetch_min(at, Ordering::Relaxed);
    }

    /// A write just succeeded: whatever was refused before, writes fit now.
    pub(crate) fn mark_written(&self) {
        self.free_when_refused.store(NOT_MARKED, Ordering::Relaxed);
    }

    pub fn storage_full(&self) -> bool {
        self.below_floor.load(Ordering::Relaxed) || self.free_when_refused.load(Ordering::Relaxed) != NOT_MARKED
    }

    pub fn free_bytes(&self) -> Option<u64> {
        Some(self.free_bytes.load(Ordering::Relaxed)).filter(|it| *it != u64::MAX)
    }
}

/// Marks the state when a response says a write was refused for lack of space.
/// Marks the state when a response says a write was refused for lack of space, and clears the mark
/// when a write succeeds (one oversized upload that did not fit must not leave the server "full").
pub(crate) async fn watch(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let res = next.run(req).await;
    if res.extensions().get::<RefusedForSpace>().is_some() {
        s.readiness.mark_refused();
    } else if writes && res.status().is_success() {
        s.readiness.mark_written();
    }
    res
}

/// `GET /ready`: 200 when writes can succeed, 503 with the reasons when they cannot.
pub(crate) async fn ready(State(s): State<AppState>) -> Response {
    if s.readiness.storage_full() {
        let body = json!({
            "status": "unavailable",
            "reasons": [{"reason": "STORAGE_FULL", "message": plinth_core::StorageFault::Full.message(), "free_bytes": s.readiness.free_bytes()}],
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(json!({"status": "ready"})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_the_full_state_by_itself() {
        let r = Readiness::new();
        let floor = 10 << 20;
        r.record_free_space(100 << 20, floor);
        assert!(!r.storage_full());
        // Under the floor: full until it is above again.
        r.record_free_space(5 << 20, floor);
        assert!(r.storage_full());
        r.record_free_space(50 << 20, floor);
        assert!(!r.storage_full());
        // A refused write marks it full even above the floor, until space grows.
        r.mark_refused();
        assert!(r.storage_full());
        r.record_free_space(50 << 20, floor);
        assert!(r.storage_full(), "no space came back");
        r.record_free_space((50 << 20) + FREED_BYTES + 1, floor);
        assert!(!r.storage_full());
        // A refusal judged against a stale, larger reading: the lower readings after it count.
        r.mark_refused();
        r.record_free_space(0, floor);
        assert!(r.storage_full());
        r.record_free_space(40 << 20, floor);
        assert!(!r.storage_full(), "space came back relative to the lowest reading");
        // A write that succeeds clears a refusal (an oversized upload did not fit; others do).
        r.mark_refused();
        assert!(r.storage_full());
        r.mark_written();
        assert!(!r.storage_full());
        // Before any measurement a refusal marks it too.
        let fresh = Readiness::new();
        fresh.mark_refused();
        assert!(fresh.storage_full());
        fresh.record_free_space(1 << 30, floor);
        assert!(fresh.storage_full(), "the first reading is the baseline");
        fresh.record_free_space((1 << 30) + FREED_BYTES + 1, floor);
        assert!(!fresh.storage_full());
    }
}
