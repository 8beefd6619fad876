//! The admin port every stage serves: `/healthz`, `/readyz` and `/metrics` from the stage's
//! [`AdminView`]; a stage adds its own routes to [`router`] (the gateway's `POST /drain`).
//! `/metrics` is open unless a metrics token is configured ([`AdminAuth`]).

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
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

/// Who may read the admin port's `/metrics`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminAuth {
    /// When set, `/metrics` needs `Authorization: Bearer <this>` (401 otherwise); unset, it is
    /// open, as `/healthz` and `/readyz` always are.
    #[arg(long, env = "NEARBY_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in constant time (the
/// answer's timing must not tell how much of a guess was right).
pub fn bearer_matches(headers: &axum::http::HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer)
        .is_some_and(|given| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                given.as_bytes(),
                token.as_bytes(),
            ))
        })
}

/// Serves [`router`] on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    view: Arc<dyn AdminView>,
    auth: AdminAuth,
    shutdown: CancellationToken,
) {
    serve_router(listener, router(view, &auth), shutdown).await;
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

/// `/healthz` ("ok"), `/readyz` (200 when ready, else 503; the line either way) and `/metrics`
/// (behind the metrics token, when `auth` has one).
pub fn router(view: Arc<dyn AdminView>, auth: &AdminAuth) -> axum::Router {
    let (ready_view, metrics_view) = (view.clone(), view);
    let token: Option<Arc<str>> = auth
        .metrics_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(Arc::from);
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
            get(move |headers: axum::http::HeaderMap| async move {
                if let Some(token) = token.as_deref()
                    && !bearer_matches(&headers, token)
                {
                    let body = "`/metrics` needs `Authorization: Bearer <metrics token>`";
                    return (StatusCode::UNAUTHORIZED, body).into_response();
                }
                (
                    [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                    metrics_view.metrics(),
                )
                    .into_response()
            }),
        )
}
