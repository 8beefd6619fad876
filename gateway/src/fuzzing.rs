//! Entry points for the fuzz targets in `fuzz/` (not an API): each takes arbitrary bytes down
//! the same path a client's input takes — the decoders and checks, not the stores — and
//! asserts what must hold of whatever they accept, so a fuzzer finds both panics and wrong
//! answers.

use nearby_common::geo::is_valid_position;
use nearby_ingest::{Report, ValidationLimits};
use serde::Deserialize;

use crate::http::history::HistoryCursor;
use crate::http::locations::{UploadBody, UploadItem};
use crate::nearby::Cursor;
use crate::protocol::ClientFrame;

/// The server clock the fuzz targets check timestamps against (fixed: a run is repeatable).
const NOW_MS: i64 = 1_800_000_000_000;

/// A socket's text frame: parsed as the session parses it, a location checked as a live report
/// is, a `more` cursor decoded. What is accepted is a valid position or a cursor that reads back
/// as itself.
pub fn client_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(ClientFrame::Location {
            lat,
            lon,
            ts,
            accuracy_m,
        }) => check_report(
            Report {
                lat,
                lon,
                ts,
                accuracy_m,
            },
            &ValidationLimits::LIVE,
        ),
        Ok(ClientFrame::More { cursor }) => nearby_cursor(&cursor),
        Ok(ClientFrame::Ping { .. }) | Err(_) => {}
    }
}

/// A `POST /v1/me/locations` body: the envelope, then each item, checked as an upload's are.
pub fn upload_body(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<UploadBody>(data) else {
        return;
    };
    let limits = ValidationLimits {
        max_age: std::time::Duration::from_secs(7 * 86_400),
        ..ValidationLimits::LIVE
    };
    for item in body.items() {
        if let Ok(item) = UploadItem::deserialize(item) {
            check_report(item.report(), &limits);
        }
    }
}

/// Every paging cursor a client sends back: the `nearby` page's, the history's, the friend
/// list's. One that decodes encodes to a string that decodes to it again.
pub fn cursors(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    nearby_cursor(text);
    if let Some(c) = HistoryCursor::decode(text) {
        assert_eq!(HistoryCursor::decode(&c.encode()), Some(c), "{text:?}");
    }
    if let Some(id) = nearby_common::ids::parse_user_id(text) {
        assert!(id >= 0, "{text:?}");
        assert_eq!(nearby_common::ids::parse_user_id(&id.to_string()), Some(id));
    }
}

fn nearby_cursor(text: &str) {
    if let Some(c) = Cursor::decode(text) {
        assert_eq!(Cursor::decode(&c.encode()), Some(c), "{text:?}");
    }
}

fn check_report(report: Report, limits: &ValidationLimits) {
    if report.validate(NOW_MS, limits).is_ok() {
        assert!(is_valid_position(report.lat, report.lon), "{report:?}");
        assert!(
            report.accuracy_m.is_none_or(|a| a.is_finite() && a >= 0.0),
            "{report:?}"
        );
        let skew = i64::try_from(limits.max_future_skew.as_millis()).unwrap_or(i64::MAX);
        assert!(report.ts <= NOW_MS + skew, "{report:?}");
    }
}
