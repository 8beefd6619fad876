//! The operators' port: liveness and readiness.

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
