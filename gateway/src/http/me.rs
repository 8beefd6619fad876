//! The caller's own profile: `GET /v1/me`, `PATCH /v1/me` (name and picture) and
//! `PUT /v1/me/sharing` (location sharing on or off). A change is announced on the friendship
//! events topic so caches and open sockets learn of it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nearby_common::users::{Profile, ProfileUpdate};
use nearby_schemas::FriendshipKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, Body, Caller, ErrorBody, not_announced, not_hidden};
use crate::changes;
use crate::state::Gateway;

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
        (status = 429, description = "`rate_limited`: sharing turned on too often (`NEARBY_SHARING_RATE_*`; turning it off is never limited), or over the per-user call limit; `Retry-After` says when", body = ErrorBody),
        (status = 503, description = "`unavailable` (a store did not answer, or the change could not be announced: it is announced before it is saved, so nothing changed) or `not_announced` (saved, but open sockets do not know yet): repeat the call", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn put_sharing(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    Body(body): Body<Sharing>,
) -> Result<Json<ProfileView>, ApiError> {
    // Only turning it on is limited: turning sharing off must always go through.
    if body.enabled
        && let Err(limited) = gw.sharing_limiter.check(user)
    {
        let cfg = &gw.config;
        return Err(super::rate_limited(
            &format!(
                "sharing turned on more than {} times at once, then {} a second",
                cfg.sharing_rate_burst, cfg.sharing_rate_per_sec
            ),
            limited.retry_after_ms(),
        ));
    }
    let kind = if body.enabled {
        FriendshipKind::SharingOn
    } else {
        FriendshipKind::SharingOff
    };
    // Sharing off is hidden before it is stored (as an unfriend is): if that announcement
    // fails, nothing changed. Sharing on is stored first: a failed announcement then only
    // delays friends seeing the user (fanout reads it at their next activation).
    if !body.enabled {
        changes::announce(&gw.changes, kind, user)
            .await
            .map_err(|e| not_hidden(&e))?;
    }
    gw.users.store().set_sharing(user, body.enabled).await?;
    gw.users.invalidate(&[user]).await;
    changes::announce(&gw.changes, kind, user)
        .await
        .map_err(|e| not_announced(&e))?;
    let p = gw.users.store().ensure_profile(user).await?;
    Ok(Json(ProfileView::from(&p)))
}
