//! The admin port every stage serves: `/healthz`, `/readyz` and `/metrics` from the stage's
//! [`AdminView`]; a stage adds its own routes to [`router`] (the gateway's `POST /drain`).

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

/// Serves [`router`] on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, view: Arc<dyn AdminView>, shutdown: CancellationToken) {
    serve_router(listener, router(view), shutdown).await;
}

/// Serves `router` (the admin routes and a stage's own) on `listener` until `shutdown`.
pub async fn serve_router(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "admin port failed");
    }
}

/// `/healthz` ("ok"), `/readyz` (200 when ready, else 503; the line either way) and `/metrics`.
pub fn router(view: Arc<dyn AdminView>) -> axum::Router {
    let (ready_view, metrics_view) = (view.clone(), view);
    axum::Router::new()
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
        )
}
