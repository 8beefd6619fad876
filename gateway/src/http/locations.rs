//! `POST /v1/me/locations`: a batch of the caller's positions from a phone that was offline or
//! in the background, each checked on its own and produced through the same [`Ingest`] as live
//! reports, limited per user. Only the newest can reach friends: the batch is produced newest
//! first, so fanout (which never lets an older position replace a newer one) takes the first and
//! leaves the rest to the history; that first one spends a token of the user's report budget,
//! as a `location` frame does.
//!
//! [`Ingest`]: nearby_ingest::Ingest

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use futures::StreamExt;
use nearby_ingest::{IngestError, Report};
use serde::{Deserialize, Serialize};
use tracing::warn;
use utoipa::ToSchema;

use super::{ApiError, Body, Caller, ErrorBody};
use crate::state::Gateway;

/// Reports of one upload in flight at once. All of a user's records go to one partition and
/// are acked in order, so a window this wide lets the producer batch them (one request to the
/// broker instead of a hundred) while one upload never holds more than this many slots of the
/// producer queue that live reports share.
pub const UPLOAD_IN_FLIGHT: usize = 32;

/// The body of `POST /v1/me/locations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"locations": [
    {"lat": 37.7749, "lon": -122.4194, "ts": 1764057600000_i64, "accuracy_m": 12.0},
    {"lat": 37.7751, "lon": -122.4190, "ts": 1764057630000_i64}
]}))]
pub struct UploadBody {
    /// The positions, at most 100; each is checked on its own (a bad one is reported in
    /// `errors`, the others are stored).
    #[schema(value_type = Vec<UploadItem>, max_items = 100)]
    locations: Vec<serde_json::Value>,
}

impl UploadItem {
    /// The report this item is.
    pub fn report(&self) -> Report {
        Report {
            lat: self.lat,
            lon: self.lon,
            ts: self.ts,
            accuracy_m: self.accuracy_m,
        }
    }
}

impl UploadBody {
    /// The items, each still to be read as an [`UploadItem`].
    pub fn items(&self) -> &[serde_json::Value] {
        &self.locations
    }
}

/// One position of an upload: the socket's `location` frame without its `type`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadItem {
    /// Latitude, WGS84 degrees, -90 to 90.
    lat: f64,
    /// Longitude, WGS84 degrees, -180 to 180.
    lon: f64,
    /// When the device took it, epoch ms (an integer): at most 60 s ahead of the server clock
    /// and at most 7 days old.
    ts: i64,
    /// Horizontal accuracy, metres, 0 to 100,000.
    #[serde(default)]
    accuracy_m: Option<f64>,
}

/// Why one position of an upload was not stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"index": 3, "code": "invalid_coordinates", "message": "lat must be a finite number between -90 and 90 (got 91)"}))]
pub struct ItemError {
    /// The position's index in `locations`, from 0.
    pub index: usize,
    /// `bad_item` (not an object with numeric `lat`, `lon`, integer `ts` and optional numeric
    /// `accuracy_m`, or an unknown field), `invalid_coordinates`, `timestamp_in_future`,
    /// `timestamp_too_old` (over 7 days) or `invalid_accuracy`.
    pub code: String,
    /// What was wrong, for a person.
    pub message: String,
}

/// The answer of `POST /v1/me/locations`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"accepted": 2, "rejected": 1, "errors": [{"index": 1, "code": "timestamp_too_old", "message": "ts must be at most 7days old, but it is 700000000 ms old (ts 1763357600000, server 1764057600000)"}]}))]
pub struct UploadResult {
    /// Positions stored (acked by Kafka).
    pub accepted: usize,
    /// Positions refused (`errors` says which and why).
    pub rejected: usize,
    /// One entry per refused position, by index.
    pub errors: Vec<ItemError>,
}

/// The 429 of an upload over the per-user limit.
fn upload_limited(gw: &Gateway, retry_after_ms: u64) -> ApiError {
    let cfg = &gw.config;
    let every = Duration::from_millis((1000.0 / cfg.upload_rate_per_sec).round() as u64);
    super::rate_limited(
        &format!(
            "over the upload limit of {} requests at once, then one every {} per user",
            cfg.upload_rate_burst,
            humantime::format_duration(every),
        ),
        retry_after_ms,
    )
}

/// `POST /v1/me/locations`: a batch of positions, each checked and stored on its own.
#[utoipa::path(
    post,
    path = "/v1/me/locations",
    tag = "locations",
    summary = "Upload a batch of positions (background or offline)",
    description = "At most 100 positions (`{lat, lon, ts, accuracy_m?}`, as the socket's \
        `location` frame) from a phone that was offline or in the background. Each is checked on \
        its own: `ts` at most 60 s ahead of the server clock and at most 7 days old. The answer \
        comes once every accepted position is stored; refused ones are listed in `errors` by \
        index. Only the newest position of a batch can reach friends (the others go to the \
        history only), and it counts against the per-user report budget as a `location` frame \
        does (`rate_limited` in `errors` when over it). A position older than the latest one \
        reported never replaces it: friends are shown only positions newer than the last they \
        saw, and none older than 10 minutes. \
        Uploads are limited per user (10 requests at once, then one every 5 s; every request \
        counts). Sending a batch again is harmless: a position is identified by its `ts`.",
    request_body = UploadBody,
    responses(
        (status = 202, description = "Stored: how many positions were accepted and which were refused", body = UploadResult),
        (status = 400, description = "`bad_body`: not JSON, or not an object with a `locations` array (and nothing else)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 413, description = "`too_many` (more than 100 positions: nothing is stored) or `too_large` (the body is over 64 KiB)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the per-user upload limit (10 at once, then one every 5 s); the message and `Retry-After` say when to try again", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before the next upload"))),
        (status = 503, description = "`unavailable`: a store did not answer, or some positions could not be stored (some may have been): send the whole batch again later", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn post_locations(
    State(gw): State<Arc<Gateway>>,
    Caller(user): Caller,
    request: Request,
) -> Result<(StatusCode, Json<UploadResult>), ApiError> {
    // The limit comes before the body is read: a flood costs a token check, not a parse.
    if let Err(limited) = gw.upload_limiter.check(user) {
        return Err(upload_limited(&gw, limited.retry_after_ms()));
    }
    let Body(body) = Body::<UploadBody>::from_request(request, &gw).await?;
    let max = gw.config.upload_max_items;
    if body.locations.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many",
            format!(
                "{} positions in one upload, at most {max}: nothing was stored; split the batch",
                body.locations.len()
            ),
        ));
    }

    let mut errors = Vec::new();
    let mut reports = Vec::with_capacity(body.locations.len());
    for (index, item) in body.locations.iter().enumerate() {
        match UploadItem::deserialize(item) {
            Ok(i) => reports.push((index, i.report())),
            Err(e) => errors.push(ItemError {
                index,
                code: "bad_item".to_owned(),
                message: format!(
                    "not a position {{lat, lon, ts, accuracy_m?}} with numbers (ts an integer): {e}"
                ),
            }),
        }
    }

    // Newest first (a stable sort: equal times keep the batch's order). Fanout reads a user's
    // records in the order they reach the partition and ignores a position no newer than the
    // one it holds, so at most the first of this batch reaches friends: one position per
    // upload, not a hundred passes over the friend list.
    reports.sort_by_key(|(_, report)| std::cmp::Reverse(report.ts));
    let history_only = gw.config.upload_options();
    // The one that may reach friends spends a report token, as a live report does.
    let live = nearby_ingest::ReportOptions {
        rate_limited: true,
        ..history_only
    };
    let (ingest, options) = (&gw.ingest, [&live, &history_only]);
    // Concurrent, bounded and in order: `buffered` polls each call first in that order, and
    // `report_with` enqueues on its first poll, so the records reach the user's partition in
    // it; at most UPLOAD_IN_FLIGHT wait for their acks at once.
    let mut produced = futures::stream::iter(reports.into_iter().enumerate())
        .map(|(n, (index, report))| async move {
            let options = options[usize::from(n > 0)];
            (index, ingest.report_with(user, None, report, options).await)
        })
        .buffered(UPLOAD_IN_FLIGHT);
    let mut accepted = 0;
    while let Some((index, result)) = produced.next().await {
        match result {
            Ok(_) => {
                accepted += 1;
                gw.metrics.report("upload", "accepted");
            }
            Err(IngestError::Rejected(why)) => {
                gw.metrics.report("upload", why.code());
                errors.push(ItemError {
                    index,
                    code: why.code().to_owned(),
                    message: why.message(),
                });
            }
            // Kafka did not take it: the rest would most likely fail the same way, after as
            // long a wait; stop here (dropping the stream) and let the client send it all again.
            Err(e) => {
                gw.metrics.report("upload", "unavailable");
                warn!(user, error = %e, "upload not stored");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the positions could not all be stored: send the batch again later \
                     (a position sent twice is harmless)",
                ));
            }
        }
    }
    errors.sort_by_key(|e| e.index);
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadResult {
            accepted,
            rejected: errors.len(),
            errors,
        }),
    ))
}
