//! Prometheus metrics: the process-wide recorder, the per-route HTTP request metrics, and the
//! `GET /metrics` scrape route (Prometheus text exposition format 0.0.4).
//!
//! Services record through the `metrics` facade; this module owns the one recorder and its wire
//! format. Label values are bounded: routes are the matched route patterns (never raw paths), and
//! feature-store labels are defined view and source names.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::access::Need as N;
use crate::routes::Routes;

/// Upper bounds (seconds) of the latency histograms: from 50 µs (an online read from the
/// embedded store) to 60 s (a large historical retrieval).
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Upper bounds of count histograms (entities per online read).
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0];

/// The process's Prometheus recorder, installed as the global `metrics` recorder on first use
/// (several servers in one process, as in tests, share it).
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_entities".into()), SIZE_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batch_rows".into()), SIZE_BUCKETS))
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics shows only what reaches Plinth's");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!("plinth_http_requests_total", "HTTP requests answered, by method, route pattern and status code.");
    metrics::describe_histogram!(
        "plinth_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from receiving a request to its response headers, by method and route pattern."
    );
    metrics::describe_gauge!(
        "plinth_storage_full",
        "1 while writes are refused for lack of space under the data directory (see GET /ready), else 0."
    );
    metrics::describe_gauge!(
        "plinth_storage_free_bytes",
        metrics::Unit::Bytes,
        "Free space of the data directory's file system, last measured."
    );
    plinth_features::metrics::describe();
    plinth_serving::metrics::describe();
    plinth_scheduler::metrics::describe();
}

/// Counts every request and times it, labelled by the matched route pattern.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    let method = method.as_str().to_owned();
    let status = res.status().as_u16().to_string();
    metrics::counter!("plinth_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("plinth_http_request_duration_seconds", "method" => method, "route" => route).record(elapsed);
    res
}

pub(crate) fn routes() -> Routes {
    Routes::new()
        // Prometheus scrapes authenticate like any client (a bearer token) when auth is on.
        .get("/metrics", N::SignedIn, scrape)
}

/// `GET /metrics`: refreshes the gauges computed at scrape time (feature freshness), then renders.
async fn scrape(State(state): State<AppState>) -> Response {
    if let Err(e) = state.features.publish_metrics().await {
        tracing::warn!(error = %e, "cannot compute the feature freshness gauges for /metrics");
    }
    metrics::gauge!("plinth_storage_full").set(if state.readiness.storage_full() { 1.0 } else { 0.0 });
    if let Some(free) = state.readiness.free_bytes() {
        metrics::gauge!("plinth_storage_free_bytes").set(free as f64);
    }
    let handle = recorder();
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}
