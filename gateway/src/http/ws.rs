//! `GET /v1/ws`: the WebSocket upgrade, refused when the gateway is full or draining; the
//! session itself is [`crate::session`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{ApiError, Caller, ErrorBody};
use crate::state::Gateway;
use crate::upgrade::WsUpgrade;

/// `GET /v1/ws`: upgrades to the socket once the token checks out.
///
/// The socket's frames are described by the AsyncAPI document at `/v1/asyncapi.yaml`.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "socket",
    summary = "Open the WebSocket",
    description = "A WebSocket upgrade (HTTP/1.1 `Upgrade: websocket`). The token goes in the \
        `Authorization` header or, for browsers, in `?access_token=`. The frames spoken on the \
        socket are described by the AsyncAPI document at `/v1/asyncapi.yaml`.",
    responses(
        (status = 101, description = "Switching protocols: the socket is open"),
        (status = 400, description = "Not a valid WebSocket upgrade request (plain text body)", body = String, content_type = "text/plain"),
        (status = 401, description = "`unauthorized`: no token, a bad signature, a token expired, not valid yet, valid for too long or issued for another service", body = ErrorBody),
        (status = 429, description = "`too_many_sockets` (this user holds `NEARBY_MAX_SOCKETS_PER_USER` sockets on this gateway already) or `rate_limited` (over the per-user call budget; `Retry-After` says when)", body = ErrorBody),
        (status = 426, description = "The connection cannot be upgraded (plain text body)", body = String, content_type = "text/plain"),
        (status = 503, description = "`full` (this gateway holds all the connections it can), `draining` (it is shutting down) or `unavailable` (a store did not answer): connect again, with backoff", body = ErrorBody),
    ),
    security(("bearer" = []), ("access_token" = [])),
)]
pub async fn ws(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    upgrade: WsUpgrade,
) -> Result<Response, ApiError> {
    let Ok(permit) = gw.connections.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "full",
            "this gateway holds all the connections it can: try again",
        ));
    };
    if gw.shutdown.is_cancelled() || gw.drain.is_started() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this gateway is draining: connect again (to another gateway)",
        ));
    }
    let max = gw.config.max_sockets_per_user;
    let Some(slot) = gw.user_sockets.try_take(user, max) else {
        gw.metrics.upgrade_refused("too_many_sockets");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sockets",
            format!("this user already holds {max} sockets on this gateway: close one first"),
        ));
    };
    // The permit and the slot live as long as the session: both come back when it ends.
    Ok(upgrade.on_upgrade(move |socket, early| {
        crate::session::run(gw, socket, early, user, (permit, slot))
    }))
}
