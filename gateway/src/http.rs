//! The HTTP side of the client port: the socket upgrade, and the JSON calls on the caller's own
//! profile and friendships. Every call is authenticated; every error is
//! `{"error": {"code", "message"}}` with the fitting status.
//!
//! Each handler carries its `#[utoipa::path]`: the OpenAPI document served at
//! `/v1/openapi.json` (see [`crate::openapi`]) is generated from these, so it cannot drift.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use nearby_common::UserId;
use nearby_common::auth::{AuthError, bearer};
use nearby_common::users::{FriendState, Profile, ProfileUpdate, RemoveOutcome, RequestOutcome};
use nearby_schemas::FriendshipKind;
use serde::{Deserialize, Serialize};
use tracing::warn;
use utoipa::ToSchema;

use crate::Gateway;
use crate::changes;
use crate::nearby::Cursor;
use crate::protocol::FriendEntry;

/// An error as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header (429s).
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
    }
}

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
            E::Contention { .. } => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            E::BadRange { .. } => Self::new(StatusCode::BAD_REQUEST, "bad_range", e.to_string()),
            other => Self::internal(other),
        }
    }
}

/// The error of a change that is stored but could not be announced: fanout and the other
/// gateways learn of it late (at a user's next activation, or the caches' TTL). Repeating the
/// call announces it again.
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
        let user = gw.verifier.verify(&token)?;
        // Just-in-time profile: known profiles come from the cache; a new one is created.
        if gw.users.profile(user).await?.is_none() {
            gw.users.store().ensure_profile(user).await?;
        }
        Ok(Self(user))
    }
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
        (status = 401, description = "`unauthorized`: no token, a bad signature or an expired token", body = ErrorBody),
        (status = 426, description = "The connection cannot be upgraded (plain text body)", body = String, content_type = "text/plain"),
        (status = 503, description = "`full` (this gateway holds all the connections it can), `draining` (it is shutting down) or `unavailable` (a store did not answer): connect again, with backoff", body = ErrorBody),
    ),
    security(("bearer" = []), ("access_token" = [])),
)]
pub async fn ws(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    upgrade: WebSocketUpgrade,
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
    let cfg = &gw.config;
    let upgrade = upgrade
        .read_buffer_size(cfg.ws_read_buffer)
        .write_buffer_size(cfg.ws_write_buffer)
        .max_write_buffer_size(cfg.ws_write_buffer.max(cfg.hard_frame_bytes) * 2)
        .max_message_size(cfg.hard_frame_bytes)
        .max_frame_size(cfg.hard_frame_bytes);
    Ok(upgrade.on_upgrade(move |socket| crate::session::run(gw, socket, user, permit)))
}

/// A profile as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_id": "17", "name": "Ana", "avatar_url": null, "sharing": true}))]
pub struct ProfileView {
    /// The user id, a decimal string.
    pub user_id: String,
    /// Display name (the id until set).
    pub name: String,
    /// An http(s) address of a picture, or null.
    #[schema(required = true)]
    pub avatar_url: Option<String>,
    /// Whether the user shares their location (on for a new profile).
    pub sharing: bool,
}

impl From<&Profile> for ProfileView {
    fn from(p: &Profile) -> Self {
        Self {
            user_id: p.user_id.to_string(),
            name: p.name.clone(),
            avatar_url: p.avatar_url.clone(),
            sharing: p.sharing,
        }
    }
}

/// `GET /v1/me`.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "profile",
    summary = "The caller's profile",
    description = "The first authenticated call of a new user id creates the profile (name = the id, sharing on).",
    responses(
        (status = 200, description = "The profile", body = ProfileView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_me(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
) -> Result<Json<ProfileView>, ApiError> {
    let p = gw.users.store().ensure_profile(user).await?;
    Ok(Json(ProfileView::from(&p)))
}

/// The body of `PATCH /v1/me`: a missing field is left as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ana", "avatar_url": "https://example.com/ana.png"}))]
pub struct PatchMe {
    /// The new display name: 1 to 64 printable characters (trimmed).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    name: Option<String>,
    /// The new picture, an http(s) address of at most 2,048 bytes; null removes it.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 2048)]
    avatar_url: Option<Option<String>>,
}

mod double_option {
    //! Tells `"avatar_url": null` (clear it) from a missing field (leave it).
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// Longest display name, characters.
const MAX_NAME_CHARS: usize = 64;
/// Longest avatar address, bytes.
const MAX_AVATAR_URL: usize = 2048;

/// `PATCH /v1/me`: name and/or avatar.
#[utoipa::path(
    patch,
    path = "/v1/me",
    tag = "profile",
    summary = "Change the caller's name and/or picture",
    request_body = PatchMe,
    responses(
        (status = 200, description = "The changed profile", body = ProfileView),
        (status = 400, description = "`bad_body` (not JSON, a mistyped or unknown field), `bad_name` (not 1-64 printable characters), `bad_avatar_url` (not http(s), or over 2,048 bytes)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 413, description = "`too_large`: the body is over 64 KiB", body = ErrorBody),
        (status = 503, description = "`unavailable` (a store did not answer) or `not_announced` (saved, but open sockets do not know yet): repeat the call", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn patch_me(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    Body(patch): Body<PatchMe>,
) -> Result<Json<ProfileView>, ApiError> {
    if let Some(name) = &patch.name {
        let n = name.trim().chars().count();
        if n == 0 || n > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_name",
                format!("name must be 1 to {MAX_NAME_CHARS} printable characters"),
            ));
        }
    }
    if let Some(Some(url)) = &patch.avatar_url
        && (url.len() > MAX_AVATAR_URL
            || !(url.starts_with("https://") || url.starts_with("http://")))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_avatar_url",
            format!("avatar_url must be an http(s) address of at most {MAX_AVATAR_URL} bytes"),
        ));
    }
    let update = ProfileUpdate {
        name: patch.name.map(|n| n.trim().to_owned()),
        avatar_url: patch.avatar_url,
    };
    let p = gw.users.store().update_profile(user, &update).await?;
    gw.users.invalidate(&[user]).await;
    changes::announce(&gw.changes, FriendshipKind::ProfileUpdated, user)
        .await
        .map_err(|e| not_announced(&e))?;
    Ok(Json(ProfileView::from(&p)))
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

/// What `PUT /v1/me/friends/{id}` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// A request was sent; they have to accept it.
    Requested,
    /// They had asked: now you are friends.
    Accepted,
    /// You had asked already; still waiting for them.
    AlreadyRequested,
    /// You were friends already.
    AlreadyFriends,
}

/// What `DELETE /v1/me/friends/{id}` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemovalStatus {
    /// You were friends; no longer.
    Unfriended,
    /// Your request was withdrawn.
    Withdrawn,
    /// Their request was declined.
    Declined,
}

/// The answer of `PUT /v1/me/friends/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_id": "17", "status": "requested"}))]
pub struct FriendRequestView {
    /// The other user's id, a decimal string.
    pub user_id: String,
    /// What the call did.
    pub status: RequestStatus,
}

/// The answer of `DELETE /v1/me/friends/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_id": "17", "status": "unfriended"}))]
pub struct FriendRemovalView {
    /// The other user's id, a decimal string.
    pub user_id: String,
    /// What the call did.
    pub status: RemovalStatus,
}

/// `PUT /v1/me/friends/{id}`: ask, or accept their request.
#[utoipa::path(
    put,
    path = "/v1/me/friends/{id}",
    tag = "friends",
    summary = "Ask a user to be friends, or accept their request",
    description = "Friendship is mutual: it exists once both sides have called this. Repeating the call is safe.",
    params(("id" = String, Path, description = "The other user's id, a decimal number", example = "17")),
    responses(
        (status = 200, description = "What the call did", body = FriendRequestView),
        (status = 400, description = "`bad_user_id` (not a decimal id) or `self_friendship`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        (status = 409, description = "`friend_limit` (5,000 friends and requests) or `conflict` (changed concurrently: try again)", body = ErrorBody),
        (status = 503, description = "`unavailable` (a store did not answer) or `not_announced` (saved, but open sockets do not know yet): repeat the call", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn put_friend(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<FriendRequestView>, ApiError> {
    let other = user_id_param(&id)?;
    let outcome = gw.users.store().request(user, other).await?;
    gw.users.invalidate(&[user, other]).await;
    // A repeated call announces the state again: a retry after `not_announced` heals.
    let kind = match outcome {
        RequestOutcome::Requested | RequestOutcome::AlreadyRequested => FriendshipKind::Requested,
        RequestOutcome::Accepted | RequestOutcome::AlreadyFriends => FriendshipKind::Accepted,
    };
    changes::announce_pair(&gw.changes, kind, user, other)
        .await
        .map_err(|e| not_announced(&e))?;
    let status = match outcome {
        RequestOutcome::Requested => RequestStatus::Requested,
        RequestOutcome::Accepted => RequestStatus::Accepted,
        RequestOutcome::AlreadyRequested => RequestStatus::AlreadyRequested,
        RequestOutcome::AlreadyFriends => RequestStatus::AlreadyFriends,
    };
    Ok(Json(FriendRequestView {
        user_id: other.to_string(),
        status,
    }))
}

/// `DELETE /v1/me/friends/{id}`: unfriend, or withdraw / decline a request.
#[utoipa::path(
    delete,
    path = "/v1/me/friends/{id}",
    tag = "friends",
    summary = "Unfriend, or withdraw / decline a request",
    params(("id" = String, Path, description = "The other user's id, a decimal number", example = "17")),
    responses(
        (status = 200, description = "What the call did", body = FriendRemovalView),
        (status = 400, description = "`bad_user_id`: not a decimal id", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no friendship or request between the two", body = ErrorBody),
        (status = 409, description = "`conflict`: changed concurrently; try again", body = ErrorBody),
        (status = 503, description = "`unavailable` (a store did not answer) or `not_announced` (saved, but open sockets do not know yet): repeat the call", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_friend(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<FriendRemovalView>, ApiError> {
    let other = user_id_param(&id)?;
    let outcome = gw.users.store().remove(user, other).await?;
    gw.users.invalidate(&[user, other]).await;
    if outcome != RemoveOutcome::NotFound {
        changes::announce_pair(&gw.changes, FriendshipKind::Removed, user, other)
            .await
            .map_err(|e| not_announced(&e))?;
    }
    let status = match outcome {
        RemoveOutcome::Unfriended => RemovalStatus::Unfriended,
        RemoveOutcome::Withdrawn => RemovalStatus::Withdrawn,
        RemoveOutcome::Declined => RemovalStatus::Declined,
        RemoveOutcome::NotFound => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no friendship or request with user {other}"),
            ));
        }
    };
    Ok(Json(FriendRemovalView {
        user_id: other.to_string(),
        status,
    }))
}

/// The body of `PUT /v1/me/sharing`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": false}))]
pub struct Sharing {
    /// On: accepted friends nearby see you (and you see them). Off: nobody does, both ways.
    enabled: bool,
}

/// `PUT /v1/me/sharing`: location sharing on or off.
#[utoipa::path(
    put,
    path = "/v1/me/sharing",
    tag = "profile",
    summary = "Turn location sharing on or off",
    description = "Sharing is both ways: with sharing off nobody sees you and you see nobody.",
    request_body = Sharing,
    responses(
        (status = 200, description = "The profile", body = ProfileView),
        (status = 400, description = "`bad_body`: not `{\"enabled\": bool}`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 413, description = "`too_large`: the body is over 64 KiB", body = ErrorBody),
        (status = 503, description = "`unavailable` (a store did not answer) or `not_announced` (saved, but open sockets do not know yet): repeat the call", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn put_sharing(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    Body(body): Body<Sharing>,
) -> Result<Json<ProfileView>, ApiError> {
    gw.users.store().set_sharing(user, body.enabled).await?;
    gw.users.invalidate(&[user]).await;
    let kind = if body.enabled {
        FriendshipKind::SharingOn
    } else {
        FriendshipKind::SharingOff
    };
    changes::announce(&gw.changes, kind, user)
        .await
        .map_err(|e| not_announced(&e))?;
    let p = gw.users.store().ensure_profile(user).await?;
    Ok(Json(ProfileView::from(&p)))
}

/// Friend-list entries per page of `GET /v1/me/friends`.
const FRIENDS_PAGE: usize = 50;

/// The query of `GET /v1/me/friends`.
#[derive(Debug, Deserialize)]
pub struct FriendsQuery {
    #[serde(default)]
    cursor: Option<String>,
}

/// Where a pair stands, from the list owner's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FriendStateView {
    /// Friends.
    Accepted,
    /// You asked; they have not answered.
    Outgoing,
    /// They asked; accept with `PUT /v1/me/friends/{id}`.
    Incoming,
}

/// An entry of the friend list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_id": "17", "name": "Ana", "state": "accepted", "since": 1764057600000_i64}))]
pub struct FriendListEntry {
    /// The other user's id, a decimal string.
    pub user_id: String,
    /// Their display name.
    pub name: String,
    /// Where the pair stands.
    pub state: FriendStateView,
    /// When it got there, epoch ms.
    pub since: i64,
}

/// A page of the friend list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FriendsPage {
    /// Friends and requests, by id.
    pub friends: Vec<FriendListEntry>,
    /// The `cursor` of the next page, or null at the end.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// `GET /v1/me/friends?cursor=`: accepted friends and pending requests, by id, 50 a page.
#[utoipa::path(
    get,
    path = "/v1/me/friends",
    tag = "friends",
    summary = "Friends and pending requests, by id, 50 a page",
    params(("cursor" = Option<String>, Query, description = "The `next` of the previous page; absent or empty for the first")),
    responses(
        (status = 200, description = "A page", body = FriendsPage),
        (status = 400, description = "`bad_cursor`: not the `next` of a page", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_friends(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    Query(q): Query<FriendsQuery>,
) -> Result<Json<FriendsPage>, ApiError> {
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(nearby_common::ids::parse_user_id(c).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                "use the `next` of a page",
            )
        })?),
    };
    let edges = gw.users.store().friends(user).await?;
    let mut rest = edges
        .iter()
        .filter(|e| after.is_none_or(|a| e.friend_id > a));
    let page: Vec<_> = rest.by_ref().take(FRIENDS_PAGE).collect();
    let more = rest.next().is_some();
    let mut friends = Vec::with_capacity(page.len());
    for e in &page {
        let name = gw
            .users
            .profile(e.friend_id)
            .await?
            .map_or_else(|| e.friend_id.to_string(), |p| p.name.clone());
        let state = match e.state {
            FriendState::Accepted => FriendStateView::Accepted,
            FriendState::Outgoing => FriendStateView::Outgoing,
            FriendState::Incoming => FriendStateView::Incoming,
        };
        friends.push(FriendListEntry {
            user_id: e.friend_id.to_string(),
            name,
            state,
            since: e.since,
        });
    }
    let next = if more {
        page.last().map(|e| e.friend_id.to_string())
    } else {
        None
    };
    Ok(Json(FriendsPage { friends, next }))
}

/// The query of `GET /v1/me/nearby`.
#[derive(Debug, Deserialize)]
pub struct NearbyQuery {
    #[serde(default)]
    cursor: Option<String>,
}

/// A page of `GET /v1/me/nearby`: the socket's `nearby` frame, and whether the caller is active.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NearbyPage {
    /// Active friends within the radius, nearest first, 20 a page.
    pub friends: Vec<FriendEntry>,
    /// The `cursor` of the next page, or null at the end.
    #[schema(required = true)]
    pub next: Option<String>,
    /// Whether the caller has a position younger than the TTL (10 minutes); false means an
    /// empty page: report a location first.
    pub active: bool,
}

/// `GET /v1/me/nearby?cursor=`: the socket's `nearby` pages, around the caller's latest
/// position (from the latest-location cache). A caller with no position younger than the TTL
/// gets an empty page and `"active": false`.
#[utoipa::path(
    get,
    path = "/v1/me/nearby",
    tag = "nearby",
    summary = "Active friends within the radius, nearest first, 20 a page",
    description = "The same pages as the socket's `nearby` frame, around the caller's latest reported \
        position, for clients not connected. A caller with no position younger than 10 minutes \
        gets an empty page and `\"active\": false`.",
    params(("cursor" = Option<String>, Query, description = "The `next` of the previous page; absent or empty for the first")),
    responses(
        (status = 200, description = "A page", body = NearbyPage),
        (status = 400, description = "`bad_cursor`: not the `next` of a page", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_nearby(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    Query(q): Query<NearbyQuery>,
) -> Result<Json<NearbyPage>, ApiError> {
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                "use the `next` of a page",
            )
        })?),
    };
    let now = nearby_ingest::now_ms();
    let Some(at) = gw.pager.own_position(user, now).await? else {
        return Ok(Json(NearbyPage {
            friends: Vec::new(),
            next: None,
            active: false,
        }));
    };
    let (friends, next) = gw
        .pager
        .page(user, (at.lat, at.lon), after, now)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(NearbyPage {
        friends,
        next,
        active: true,
    }))
}

/// Answers unknown paths with the API's error shape.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
