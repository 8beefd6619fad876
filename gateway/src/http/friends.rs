//! Friendships: `PUT /v1/me/friends/{id}` (ask, or accept), `DELETE /v1/me/friends/{id}`
//! (unfriend, withdraw or decline) and `GET /v1/me/friends` (the list, paged). A change is
//! announced to both sides on the friendship events topic.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use nearby_common::users::{FriendState, RemoveOutcome, RequestOutcome};
use nearby_schemas::FriendshipKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, Caller, ErrorBody, not_announced, not_hidden, user_id_param};
use crate::changes;
use crate::state::Gateway;

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
        (status = 409, description = "`friend_limit` (5,000 friends and requests), `too_many_pending` (they hold 100 requests waiting already, `NEARBY_MAX_PENDING_REQUESTS`) or `conflict` (changed concurrently: try again)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the per-user friend-call budget (30 at once, then one every 10 s) or the API budget; `Retry-After` says when", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
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
    if let Err(limited) = gw.friend_limiter.check(user) {
        let cfg = &gw.config;
        return Err(super::rate_limited(
            &format!(
                "over {} friend calls at once, then {} a second, per user",
                cfg.friend_request_rate_burst, cfg.friend_request_rate_per_sec
            ),
            limited.retry_after_ms(),
        ));
    }
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
        (status = 503, description = "`unavailable` (a store did not answer, or the change could not be announced: it is announced before it is saved, so nothing changed) or `not_announced` (saved, but open sockets do not know yet): repeat the call", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_friend(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<Json<FriendRemovalView>, ApiError> {
    let other = user_id_param(&id)?;
    // Hidden before it is stored: fanout unlinks the pair first, so no state has the removal
    // saved while their positions still flow. If that announcement fails, nothing changed
    // (503 `unavailable`: the pair as it was). Announced again once stored: a friend list
    // read from the store between the two (an activation, say) is corrected by the second.
    changes::announce_pair(&gw.changes, FriendshipKind::Removed, user, other)
        .await
        .map_err(|e| not_hidden(&e))?;
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
