//! The operators' port: liveness, readiness and Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::Gateway;

/// `/healthz` (the process answers) and `/readyz` (it should get traffic).
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(gw)
}

async fn ready(State(gw): State<Arc<Gateway>>) -> (StatusCode, String) {
    let assigned = gw.deliveries_ready.load(Ordering::Acquire);
    if gw.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining".into())
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
    (
        [(
            axum::http::header::CONTENT_TYPE,
            nearby_common::metrics::CONTENT_TYPE,
        )],
        nearby_common::metrics::render(&gw.metrics.registry),
    )
}
