//! The admin port of a stage that keeps its state in shared counters (fanout, the history
//! sink): `/healthz`, `/readyz` and `/metrics`, served until shutdown.

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the admin port reads from the stage, when asked.
pub trait AdminView: Send + Sync + 'static {
    /// Whether the stage is ready, and the `/readyz` line (its counters, `name=value`).
    fn readiness(&self) -> (bool, String);
    /// The Prometheus text of `/metrics`.
    fn metrics(&self) -> String;
}

/// Serves `/healthz` ("ok"), `/readyz` (200 when ready, else 503; the line either way) and
/// `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, view: Arc<dyn AdminView>, shutdown: CancellationToken) {
    let (ready_view, metrics_view) = (view.clone(), view);
    let router = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                let (ready, line) = ready_view.readiness();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (status, line)
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                    metrics_view.metrics(),
                )
            }),
        );
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "admin port failed");
    }
}
