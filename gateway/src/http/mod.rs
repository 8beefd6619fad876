//! The HTTP side of the client port: its router, and what every handler shares (the error
//! answers, the authenticated caller, the JSON body). Every call is authenticated; every error is
//! `{"error": {"code", "message"}}` with the fitting status. One file per resource: [`ws`] (the
//! socket upgrade), [`me`] (the caller's profile and sharing switch), [`friends`], [`nearby`],
//! [`locations`] (batch uploads) and [`history`].
//!
//! Each handler carries its `#[utoipa::path]`: the OpenAPI document served at
//! `/v1/openapi.json` (see [`crate::openapi`]) is generated from these, so it cannot drift.

pub mod friends;
pub mod history;
pub mod locations;
pub mod me;
pub mod nearby;
pub mod ws;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use nearby_common::UserId;
use nearby_common::auth::{AuthError, bearer};
use serde::{Deserialize, Serialize};
use tracing::warn;
use utoipa::ToSchema;

use crate::state::Gateway;
use crate::{demo, openapi};

// `Gateway::router` is kept beside the handlers it routes. `tests/openapi.rs` reads the routes
// off this source (the body of `pub fn router(`) to compare them with the OpenAPI document.
impl Gateway {
    /// The client port's routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/ws", get(ws::ws))
            .route("/v1/me", get(me::get_me).patch(me::patch_me))
            .route("/v1/me/friends", get(friends::get_friends))
            .route(
                "/v1/me/friends/{id}",
                put(friends::put_friend).delete(friends::delete_friend),
            )
            .route("/v1/me/sharing", put(me::put_sharing))
            .route("/v1/me/nearby", get(nearby::get_nearby))
            .route("/v1/me/locations", post(locations::post_locations))
            .route("/v1/me/history", get(history::get_history))
            .route("/v1/users/{id}/history", get(history::get_user_history))
            .route("/v1/openapi.json", get(openapi::openapi_json))
            .route("/v1/asyncapi.yaml", get(openapi::asyncapi_yaml))
            .route("/demo", get(demo::page))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                request_deadline,
            ))
            .with_state(self.clone())
    }
}

/// 408 `request_timeout` for a request not answered within `NEARBY_HTTP_REQUEST_TIMEOUT` of
/// its head (a body trickled in a byte at a time, say), with `Connection: close`: the
/// connection is not used again. An upgrade is answered at once, so a socket is not bounded
/// by it.
async fn request_deadline(
    State(gw): State<Arc<Gateway>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = gw.config.http_request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request was not complete within {} (NEARBY_HTTP_REQUEST_TIMEOUT)",
                    humantime::format_duration(limit)
                ),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

/// An error as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header (429s, 503s).
    retry_after_s: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// The same error with a `Retry-After: <secs>` header.
    pub(crate) fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_s = Some(secs);
        self
    }

    /// The error's code.
    #[cfg(test)]
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        warn!(error = %e, "request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a store is not answering: try again",
        )
        // A store coming back (a CQL node restarting takes 10 s or more) is not helped by
        // every client trying again at once.
        .with_retry_after(STORE_RETRY_AFTER_S)
    }
}

/// `Retry-After` of a 503 `unavailable` when a store did not answer, seconds.
pub(crate) const STORE_RETRY_AFTER_S: u64 = 5;

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "unauthorized", "message": "no token"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code; each operation lists the codes it can answer with.
    pub code: String,
    /// What was wrong, for a person.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
    }
}

impl From<nearby_common::Error> for ApiError {
    fn from(e: nearby_common::Error) -> Self {
        use nearby_common::Error as E;
        match e {
            E::UnknownUser(u) => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("user {u} not found"),
            ),
            E::SelfFriendship => {
                Self::new(StatusCode::BAD_REQUEST, "self_friendship", e.to_string())
            }
            E::FriendCap { .. } => Self::new(StatusCode::CONFLICT, "friend_limit", e.to_string()),
            E::PendingCap { .. } => {
                Self::new(StatusCode::CONFLICT, "too_many_pending", e.to_string())
            }
            E::Contention { .. } => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            E::BadRange { .. } => Self::new(StatusCode::BAD_REQUEST, "bad_range", e.to_string()),
            other => Self::internal(other),
        }
    }
}

/// The error of a change that is stored but could not be announced: fanout and the other
/// gateways learn of it late (at a user's next activation, or the caches' TTL). Repeating the
/// call announces it again.
/// 503 `unavailable` for a change that hides something (an unfriend, sharing off) whose
/// announcement, made before it is stored, failed: nothing was changed.
pub(crate) fn not_hidden(e: &nearby_common::Error) -> ApiError {
    warn!(error = %e, "change not announced, so not stored");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the change could not be announced, so nothing was changed: repeat the call",
    )
    .with_retry_after(1)
}

fn not_announced(e: &nearby_common::Error) -> ApiError {
    warn!(error = %e, "change stored but not announced");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_announced",
        "the change is saved but could not be announced to open sockets yet: repeat the call",
    )
}

/// The authenticated caller. Its first authenticated call creates its profile.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub UserId);

/// The token of a request: the `Authorization: Bearer` header, or `?access_token=` (browsers
/// cannot set headers on a WebSocket).
fn token(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(header::AUTHORIZATION) {
        return h.to_str().ok().and_then(bearer).map(str::to_owned);
    }
    // Only the socket takes a token in the query (a browser's WebSocket cannot set headers):
    // elsewhere a token in a URL would end up in access logs and browser histories.
    if parts.uri.path() != "/v1/ws" {
        return None;
    }
    let query = parts.uri.query()?;
    serde_urlencoded_token(query)
}

fn serde_urlencoded_token(query: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Q {
        access_token: Option<String>,
    }
    Query::<Q>::try_from_uri(&format!("/?{query}").parse().ok()?)
        .ok()
        .and_then(|q| q.0.access_token)
}

impl FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, ApiError> {
        let token = token(parts).ok_or(AuthError::Missing)?;
        let user = gw.verifier.verify(&token).await?;
        // Counted before any store is asked: a flood of calls costs one bucket look-up each.
        if let Err(limited) = gw.api_limiter.check(user) {
            let cfg = &gw.config;
            return Err(rate_limited(
                &format!(
                    "over {} calls at once, then {} a second, per user",
                    cfg.api_rate_burst, cfg.api_rate_per_sec
                ),
                limited.retry_after_ms(),
            ));
        }
        // Just-in-time profile: known profiles come from the cache; a new one is created.
        if gw.users.profile(user).await?.is_none() {
            gw.users.store().ensure_profile(user).await?;
        }
        Ok(Self(user))
    }
}

/// 429 `rate_limited` for a call over `limit`, with `Retry-After` (whole seconds, rounded up).
pub(crate) fn rate_limited(limit: &str, retry_after_ms: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("{limit}: retry after {retry_after_ms} ms"),
    )
    .with_retry_after(retry_after_ms.div_ceil(1000))
}

/// A JSON body whose rejections are the API's errors (400 for a bad body, 413 for a large one).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "request body over the size limit",
                ))
            }
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                e.body_text(),
            )),
        }
    }
}

/// The `{id}` of a path: a user id, or 400 `bad_user_id`.
pub(crate) fn user_id_param(id: &str) -> Result<UserId, ApiError> {
    nearby_common::ids::parse_user_id(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_user_id",
            "a user id is a decimal number",
        )
    })
}

/// Answers unknown paths with the API's error shape.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
