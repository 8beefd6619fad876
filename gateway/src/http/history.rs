//! `GET /v1/me/history` and `GET /v1/users/{id}/history`: the caller's stored positions in a
//! time range, oldest first, paged. Only the owner ever reads a history.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use nearby_common::UserId;
use nearby_common::history::MAX_RANGE_DAYS;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, Caller, ErrorBody, user_id_param};
use crate::state::Gateway;

/// Positions per history page when `limit` is absent.
pub const HISTORY_DEFAULT_LIMIT: usize = 100;
/// The largest `limit` of a history page.
pub const HISTORY_MAX_LIMIT: usize = 1000;
/// The span read when `from` is absent: 24 hours before `to`.
pub const HISTORY_DEFAULT_SPAN_MS: i64 = 24 * 3_600_000;
/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
/// The widest `to - from`, ms ([`MAX_RANGE_DAYS`] days).
const MAX_SPAN_MS: i64 = MAX_RANGE_DAYS * DAY_MS;
/// The latest `from` or `to` accepted, epoch ms (9999-12-31T23:59:59.999Z); the earliest is 0.
/// Bounds the store's day arithmetic far from overflow.
pub const MAX_HISTORY_TS: i64 = 253_402_300_799_999;

/// The query of the history calls. Every field is read as text so that each bad one gets its
/// own error code.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// One stored position.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"lat": 37.7749, "lon": -122.4194, "ts": 1764057600000_i64, "accuracy_m": 12.0, "received_at": 1764057600412_i64}))]
pub struct HistoryEntry {
    /// Latitude, WGS84 degrees.
    pub lat: f64,
    /// Longitude, WGS84 degrees.
    pub lon: f64,
    /// When the device took it, epoch ms.
    pub ts: i64,
    /// Horizontal accuracy, metres, or null when the device did not say.
    #[schema(required = true)]
    pub accuracy_m: Option<f64>,
    /// When a gateway accepted it, epoch ms.
    pub received_at: i64,
}

/// A page of history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// Positions with `from <= ts < to`, oldest first.
    pub locations: Vec<HistoryEntry>,
    /// The `cursor` of the next page, or null at the end.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// Where the next history page starts: after the position at `after`, up to `to` (exclusive).
/// Carrying `to` keeps a defaulted "now" fixed across pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryCursor {
    after: i64,
    to: i64,
}

impl HistoryCursor {
    /// The wire form (opaque to clients).
    pub(crate) fn encode(self) -> String {
        format!("{}.{}", self.after, self.to)
    }

    /// Reads a cursor this server issued; `None` for anything else.
    pub(crate) fn decode(s: &str) -> Option<Self> {
        let (after, to) = s.split_once('.')?;
        let c = Self {
            after: after.parse().ok()?,
            to: to.parse().ok()?,
        };
        let sane = |t: i64| (0..=MAX_HISTORY_TS).contains(&t);
        (sane(c.after) && sane(c.to)).then_some(c)
    }
}

fn bad_range(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_range", message)
}

fn bad_cursor(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_cursor", message)
}

/// A query value, absent when missing or empty.
fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

/// `from` or `to` as epoch ms.
fn time_param(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = present(v) else {
        return Ok(None);
    };
    match v.parse::<i64>() {
        Ok(t) if (0..=MAX_HISTORY_TS).contains(&t) => Ok(Some(t)),
        _ => Err(bad_range(format!(
            "{name} must be epoch milliseconds, an integer from 0 to {MAX_HISTORY_TS}"
        ))),
    }
}

/// The page size asked for.
fn limit_param(v: Option<&str>) -> Result<usize, ApiError> {
    let Some(v) = present(v) else {
        return Ok(HISTORY_DEFAULT_LIMIT);
    };
    match v.parse::<usize>() {
        Ok(n) if (1..=HISTORY_MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit must be an integer from 1 to {HISTORY_MAX_LIMIT}"),
        )),
    }
}

/// The range `[from, to)` to read, given the query and the server time; `None` when a cursor
/// says nothing is left.
fn window(q: &HistoryQuery, now: i64) -> Result<Option<(i64, i64)>, ApiError> {
    let from = time_param("from", q.from.as_deref())?;
    let to = time_param("to", q.to.as_deref())?;
    if let Some(c) = present(q.cursor.as_deref()) {
        let c = HistoryCursor::decode(c).ok_or_else(|| bad_cursor("use the `next` of a page"))?;
        if to.is_some_and(|t| t != c.to) || from.is_some_and(|f| f > c.after) {
            return Err(bad_cursor(
                "this cursor belongs to another range: repeat the first call's from and to, \
                 or leave them out",
            ));
        }
        let from = c.after.saturating_add(1);
        if from >= c.to {
            return Ok(None);
        }
        if c.to - from > MAX_SPAN_MS {
            return Err(bad_cursor("use the `next` of a page"));
        }
        return Ok(Some((from, c.to)));
    }
    let to = to.unwrap_or_else(|| now.clamp(0, MAX_HISTORY_TS));
    let from = from.unwrap_or_else(|| to.saturating_sub(HISTORY_DEFAULT_SPAN_MS).max(0));
    if to <= from {
        return Err(bad_range("from must be before to"));
    }
    if to - from > MAX_SPAN_MS {
        return Err(bad_range(format!(
            "from and to may be at most {MAX_RANGE_DAYS} days apart"
        )));
    }
    Ok(Some((from, to)))
}

/// A page of `user`'s own history.
async fn history_page(
    gw: &Gateway,
    user: UserId,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let limit = limit_param(q.limit.as_deref())?;
    let Some((from, to)) = window(&q, nearby_common::clock::now_ms())? else {
        return Ok(Json(HistoryPage {
            locations: Vec::new(),
            next: None,
        }));
    };
    // One row more than the page tells whether another page follows, so the last page says
    // `next: null` instead of leading to an empty one.
    let mut rows = gw.history.range(user, from, to, limit + 1).await?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
            .map(|r| HistoryCursor { after: r.ts, to }.encode())
    } else {
        None
    };
    let locations = rows
        .into_iter()
        .map(|r| HistoryEntry {
            lat: r.lat,
            lon: r.lon,
            ts: r.ts,
            accuracy_m: r.accuracy_m,
            received_at: r.received_at,
        })
        .collect();
    Ok(Json(HistoryPage { locations, next }))
}

/// `GET /v1/me/history`: the caller's stored positions in `[from, to)`, oldest first.
#[utoipa::path(
    get,
    path = "/v1/me/history",
    tag = "locations",
    summary = "The caller's stored positions in a time range, oldest first",
    description = "Positions with `from <= ts < to`, oldest first, `limit` a page (100 unless \
        given, at most 1,000). `to` defaults to now and `from` to 24 h before `to`; they may be \
        at most 31 days apart. Pass the page's `next` as `cursor` for the next page (with the \
        same `from` and `to`, or none: the cursor carries the range); `next` is null on the last \
        page. Positions are kept as the history sink stores them, a moment after they are \
        reported.",
    params(
        ("from" = Option<i64>, Query, description = "Start, epoch ms, inclusive; default `to` - 24 h"),
        ("to" = Option<i64>, Query, description = "End, epoch ms, exclusive; default now"),
        ("cursor" = Option<String>, Query, description = "The `next` of the previous page; absent or empty for the first"),
        ("limit" = Option<u32>, Query, description = "Positions per page, 1 to 1,000; default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page", body = HistoryPage),
        (status = 400, description = "`bad_range` (`from`/`to` not epoch ms, `from` not before `to`, or over 31 days apart), `bad_limit` (not 1 to 1,000), `bad_cursor` (not the `next` of a page of this range) or `bad_query` (the query string does not parse)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_history(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    history_page(&gw, user, query).await
}

/// `GET /v1/users/{id}/history`: the same for `{id}`, which must be the caller.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/history",
    tag = "locations",
    summary = "A user's stored positions: only the user's own",
    description = "The same as `GET /v1/me/history` when `{id}` is the caller; a history is \
        never shown to anyone else, friends included.",
    params(
        ("id" = String, Path, description = "The user id, a decimal number: the caller's own", example = "17"),
        ("from" = Option<i64>, Query, description = "Start, epoch ms, inclusive; default `to` - 24 h"),
        ("to" = Option<i64>, Query, description = "End, epoch ms, exclusive; default now"),
        ("cursor" = Option<String>, Query, description = "The `next` of the previous page; absent or empty for the first"),
        ("limit" = Option<u32>, Query, description = "Positions per page, 1 to 1,000; default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page", body = HistoryPage),
        (status = 400, description = "`bad_user_id` (not a decimal id), `bad_range`, `bad_limit`, `bad_cursor` or `bad_query` (as for `/v1/me/history`)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: any id but the caller's, whether or not such a user exists", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_user_history(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let owner = user_id_param(&id)?;
    // The same answer for every other id, existing or not: it must not tell which ids are
    // users (nothing is looked up).
    if owner != user {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a history is shown only to its owner",
        ));
    }
    history_page(&gw, user, query).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_057_600_000;

    fn q(from: Option<&str>, to: Option<&str>, cursor: Option<&str>) -> HistoryQuery {
        HistoryQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
            limit: None,
        }
    }

    fn code(r: Result<Option<(i64, i64)>, ApiError>) -> &'static str {
        r.expect_err("an error").code()
    }

    #[test]
    fn the_range_defaults_to_the_last_day_and_is_checked() {
        let day = HISTORY_DEFAULT_SPAN_MS;
        assert_eq!(
            window(&q(None, None, None), NOW).ok(),
            Some(Some((NOW - day, NOW)))
        );
        assert_eq!(
            window(&q(None, Some("5000000000"), None), NOW).ok(),
            Some(Some((5_000_000_000 - day, 5_000_000_000)))
        );
        assert_eq!(
            window(&q(Some(""), Some(""), Some("")), NOW).ok(),
            Some(Some((NOW - day, NOW)))
        );
        let month = MAX_SPAN_MS.to_string();
        assert_eq!(
            window(&q(Some("0"), Some(&month), None), NOW).ok(),
            Some(Some((0, MAX_SPAN_MS)))
        );
        let over = (MAX_SPAN_MS + 1).to_string();
        assert_eq!(
            code(window(&q(Some("0"), Some(&over), None), NOW)),
            "bad_range"
        );
        assert_eq!(
            code(window(&q(Some("10"), Some("10"), None), NOW)),
            "bad_range"
        );
        assert_eq!(
            code(window(&q(Some("11"), Some("10"), None), NOW)),
            "bad_range"
        );
        for bad in ["x", "-1", "1.5", "9223372036854775807", "253402300800000"] {
            assert_eq!(
                code(window(&q(Some(bad), None, None), NOW)),
                "bad_range",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_cursor_carries_the_rest_of_its_range() {
        let c = HistoryCursor {
            after: 1_000,
            to: 5_000,
        }
        .encode();
        assert_eq!(
            window(&q(None, None, Some(&c)), NOW).ok(),
            Some(Some((1_001, 5_000)))
        );
        assert_eq!(
            window(&q(Some("500"), Some("5000"), Some(&c)), NOW).ok(),
            Some(Some((1_001, 5_000)))
        );
        assert_eq!(
            code(window(&q(None, Some("6000"), Some(&c)), NOW)),
            "bad_cursor"
        );
        assert_eq!(
            code(window(&q(Some("1001"), None, Some(&c)), NOW)),
            "bad_cursor"
        );
        let done = HistoryCursor {
            after: 4_999,
            to: 5_000,
        }
        .encode();
        assert_eq!(window(&q(None, None, Some(&done)), NOW).ok(), Some(None));
        let wide = HistoryCursor {
            after: 0,
            to: MAX_SPAN_MS + 5,
        }
        .encode();
        assert_eq!(code(window(&q(None, None, Some(&wide)), NOW)), "bad_cursor");
        for bad in ["", "x", "1", "1.x", "-1.5", "1.2.3"] {
            if bad.is_empty() {
                continue; // empty means absent
            }
            assert_eq!(
                code(window(&q(None, None, Some(bad)), NOW)),
                "bad_cursor",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_limit_is_one_to_a_thousand() {
        assert_eq!(limit_param(None).ok(), Some(HISTORY_DEFAULT_LIMIT));
        assert_eq!(limit_param(Some("")).ok(), Some(HISTORY_DEFAULT_LIMIT));
        assert_eq!(limit_param(Some("1")).ok(), Some(1));
        assert_eq!(limit_param(Some("1000")).ok(), Some(1000));
        for bad in ["0", "1001", "-1", "ten"] {
            assert!(limit_param(Some(bad)).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Every cursor a page hands out reads back as itself, and no string makes the decoder
        /// panic or yield a cursor outside the stored range.
        #[test]
        fn history_cursors_round_trip_and_junk_is_refused(
            after in 0..=MAX_HISTORY_TS,
            to in 0..=MAX_HISTORY_TS,
            junk in "\\PC{0,40}",
        ) {
            let c = HistoryCursor { after, to };
            proptest::prop_assert_eq!(HistoryCursor::decode(&c.encode()), Some(c));
            if let Some(d) = HistoryCursor::decode(&junk) {
                proptest::prop_assert!((0..=MAX_HISTORY_TS).contains(&d.after));
                proptest::prop_assert!((0..=MAX_HISTORY_TS).contains(&d.to));
            }
        }
    }
}
