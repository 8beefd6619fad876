//! The operators' port: liveness, readiness, Prometheus metrics and the drain call.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::Gateway;

/// `/healthz` (the process answers), `/readyz` (it should get traffic), `/metrics`, and
/// `POST /drain` (take it out of service).
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/drain", post(drain))
        .with_state(gw)
}

/// `POST /drain?window=10s`: the window is optional (`NEARBY_DRAIN_WINDOW` otherwise).
#[derive(Debug, Deserialize)]
struct DrainParams {
    window: Option<String>,
}

/// Starts draining (or reports the drain already under way): 202 and what will happen.
async fn drain(
    State(gw): State<Arc<Gateway>>,
    Query(params): Query<DrainParams>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    let window = match params.window.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(w)) if w <= crate::drain::MAX_WINDOW => Some(w),
        Some(_) => {
            let body = serde_json::json!({"error": {"code": "bad_window",
                "message": "window must be a duration of at most 1h, such as 30s or 2m"}});
            return (StatusCode::BAD_REQUEST, axum::Json(body));
        }
    };
    let window = gw.drain.start(window);
    tracing::info!(
        window_ms = window.as_millis() as u64,
        connections = gw.registry.len(),
        "drain started"
    );
    let body = serde_json::json!({
        "draining": true,
        "connections": gw.registry.len(),
        "window_ms": window.as_millis() as u64,
        "grace_ms": gw.drain.grace.as_millis() as u64,
    });
    (StatusCode::ACCEPTED, axum::Json(body))
}

async fn ready(State(gw): State<Arc<Gateway>>) -> (StatusCode, String) {
    let assigned = gw.deliveries_ready.load(Ordering::Acquire);
    if gw.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping".into())
    } else if gw.drain.is_started() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("draining, {} connections", gw.registry.len()),
        )
    } else if !assigned {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "delivery consumer not started yet".into(),
        )
    } else {
        (
            StatusCode::OK,
            format!("ready, {} connections", gw.registry.len()),
        )
    }
}

/// Prometheus text of the gateway's metrics.
async fn metrics(State(gw): State<Arc<Gateway>>) -> impl axum::response::IntoResponse {
    gw.metrics
        .connections
        .set(i64::try_from(gw.registry.len()).unwrap_or(i64::MAX));
    gw.metrics.draining.set(i64::from(gw.drain.is_started()));
    gw.metrics
        .outbox_frames
        .set(i64::try_from(gw.registry.queued_frames()).unwrap_or(i64::MAX));
    let lag: i64 = gw.metrics.delivery_stats.lag().iter().map(|(_, n)| n).sum();
    gw.metrics.delivery_lag.set(lag);
    gw.metrics
        .produce_queue
        .set(i64::try_from(gw.ingest.queued()).unwrap_or(i64::MAX));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            nearby_common::metrics::CONTENT_TYPE,
        )],
        nearby_common::metrics::render(&gw.metrics.registry),
    )
}
