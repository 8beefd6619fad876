//! `GET /demo`: a self-contained web page (no external resources) to watch the system work; it
//! asks for a token itself, so the route is not authenticated.

use axum::http::header;
use axum::response::IntoResponse;

/// The page, embedded at build time.
const PAGE: &str = include_str!("../static/demo.html");

/// Serves the demo page.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
