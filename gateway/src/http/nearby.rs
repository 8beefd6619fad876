//! `GET /v1/me/nearby`: the socket's `nearby` pages over HTTP, for clients not connected,
//! around the caller's latest position.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, Caller, ErrorBody};
use crate::nearby::Cursor;
use crate::protocol::FriendEntry;
use crate::state::Gateway;

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
    let now = nearby_common::clock::now_ms();
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
