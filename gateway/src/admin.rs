//! The operators' port: liveness, readiness and Prometheus metrics (the admin router every stage
//! shares, [`nearby_common::admin`]), and the gateway's own `POST /drain`, which needs the
//! admin token (`Authorization: Bearer $NEARBY_ADMIN_TOKEN`; 403 while none is configured).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::Query;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use nearby_common::admin::AdminView;
use serde::Deserialize;

use crate::state::Gateway;

/// `/healthz` (the process answers), `/readyz` (it should get traffic), `/metrics`, and
/// `POST /drain` (take it out of service).
pub fn router(gw: Arc<Gateway>) -> Router {
    nearby_common::admin::router(gw.clone(), &gw.config.admin_auth)
        .merge(Router::new().route("/drain", post(drain)).with_state(gw))
}

/// `POST /drain?window=10s`: the window is optional (`NEARBY_DRAIN_WINDOW` otherwise).
#[derive(Debug, Deserialize)]
struct DrainParams {
    window: Option<String>,
}

/// Starts draining (or reports the drain already under way): 202 and what will happen.
async fn drain(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(params): Query<DrainParams>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    if let Err(refused) = authorize(gw.config.admin_token.as_deref(), &headers) {
        return refused;
    }
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

/// Lets a call through when it carries the configured admin token; otherwise the answer: 403
/// while no token is configured, 401 for a missing or wrong one.
fn authorize(
    configured: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, axum::Json<serde_json::Value>)> {
    let refuse = |status, code, message: &str| {
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        Err((status, axum::Json(body)))
    };
    let Some(configured) = configured.filter(|t| !t.is_empty()) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "no admin token is configured (NEARBY_ADMIN_TOKEN): this call is disabled",
        );
    };
    if nearby_common::admin::bearer_matches(headers, configured) {
        Ok(())
    } else {
        refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this call needs `Authorization: Bearer <admin token>`",
        )
    }
}

impl AdminView for Gateway {
    fn readiness(&self) -> (bool, String) {
        let assigned = self.deliveries_ready.load(Ordering::Acquire);
        if self.shutdown.is_cancelled() {
            (false, "stopping".into())
        } else if self.drain.is_started() {
            (
                false,
                format!("draining, {} connections", self.registry.len()),
            )
        } else if !assigned {
            (false, "delivery consumer not started yet".into())
        } else {
            (true, format!("ready, {} connections", self.registry.len()))
        }
    }

    /// Sets the gauges read at a scrape, then renders the registry.
    fn metrics(&self) -> String {
        let m = &self.metrics;
        m.connections
            .set(i64::try_from(self.registry.len()).unwrap_or(i64::MAX));
        m.draining.set(i64::from(self.drain.is_started()));
        m.outbox_frames
            .set(i64::try_from(self.registry.queued_frames()).unwrap_or(i64::MAX));
        let lag: i64 = m.delivery_stats.lag().iter().map(|(_, n)| n).sum();
        m.delivery_lag.set(lag);
        m.produce_queue
            .set(i64::try_from(self.ingest.queued()).unwrap_or(i64::MAX));
        nearby_common::metrics::render(&m.registry)
    }
}
