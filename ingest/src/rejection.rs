//! Why a report was refused: one variant per rule, each with a stable machine code for clients
//! and metrics, and a human message that names the limit that was broken.

use std::fmt;
use std::time::Duration;

use crate::report::MAX_ACCURACY_M;

/// A client report that ingest refused. Nothing is produced for a rejected report.
///
/// [`code`](Self::code) is part of the client contract (it becomes the `code` of an `error`
/// frame or HTTP error body): it never changes for a variant. [`message`](Self::message) is for
/// people and may be reworded.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// `lat` or `lon` is not finite or out of range (-90..=90, -180..=180).
    InvalidCoordinates {
        /// The latitude as sent.
        lat: f64,
        /// The longitude as sent.
        lon: f64,
    },
    /// `ts` is further ahead of the server's clock than the allowed skew.
    TimestampInFuture {
        /// The report's time, epoch ms.
        ts: i64,
        /// The server's time when it checked, epoch ms.
        now: i64,
        /// How far ahead a report may be.
        max_skew: Duration,
    },
    /// `ts` is older than the oldest report accepted on this path.
    TimestampTooOld {
        /// The report's time, epoch ms.
        ts: i64,
        /// The server's time when it checked, epoch ms.
        now: i64,
        /// How old a report may be.
        max_age: Duration,
    },
    /// `accuracy_m` is not finite, negative, or larger than [`MAX_ACCURACY_M`].
    InvalidAccuracy {
        /// The accuracy as sent.
        accuracy_m: f64,
    },
    /// The user sent reports faster than the per-user limit allows.
    RateLimited {
        /// How long to wait before the next report will be accepted, in milliseconds.
        retry_after_ms: u64,
    },
}

/// Every rejection code, in the order of [`Rejection::ordinal`] (for metrics).
pub(crate) const REJECTION_CODES: [&str; 5] = [
    "invalid_coordinates",
    "timestamp_in_future",
    "timestamp_too_old",
    "invalid_accuracy",
    "rate_limited",
];

impl Rejection {
    /// The stable, snake_case machine code of this rejection (`invalid_coordinates`, ...).
    pub fn code(&self) -> &'static str {
        REJECTION_CODES[self.ordinal()]
    }

    /// A message for people that says which rule was broken and what the limit is.
    pub fn message(&self) -> String {
        match self {
            Rejection::InvalidCoordinates { lat, lon } => {
                if nearby_common::geo::is_valid_position(*lat, 0.0) {
                    format!("lon must be a finite number between -180 and 180 (got {lon})")
                } else {
                    format!("lat must be a finite number between -90 and 90 (got {lat})")
                }
            }
            Rejection::TimestampInFuture { ts, now, max_skew } => format!(
                "ts must be at most {} ahead of the server clock, but it is {} ms ahead \
                 (ts {ts}, server {now}): check the device clock",
                humantime::format_duration(*max_skew),
                ts.saturating_sub(*now),
            ),
            Rejection::TimestampTooOld { ts, now, max_age } => format!(
                "ts must be at most {} old, but it is {} ms old (ts {ts}, server {now})",
                humantime::format_duration(*max_age),
                now.saturating_sub(*ts),
            ),
            Rejection::InvalidAccuracy { accuracy_m } => format!(
                "accuracy_m must be a finite number between 0 and {MAX_ACCURACY_M} metres \
                 (got {accuracy_m})"
            ),
            Rejection::RateLimited { retry_after_ms } => format!(
                "too many location reports from this user: the per-user rate limit was \
                 reached; retry after {retry_after_ms} ms"
            ),
        }
    }

    /// The index of this variant's code in [`REJECTION_CODES`].
    pub(crate) fn ordinal(&self) -> usize {
        match self {
            Rejection::InvalidCoordinates { .. } => 0,
            Rejection::TimestampInFuture { .. } => 1,
            Rejection::TimestampTooOld { .. } => 2,
            Rejection::InvalidAccuracy { .. } => 3,
            Rejection::RateLimited { .. } => 4,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_messages_name_the_limit() {
        let cases = [
            (
                Rejection::InvalidCoordinates {
                    lat: 91.0,
                    lon: 0.0,
                },
                "invalid_coordinates",
                "lat must be a finite number between -90 and 90",
            ),
            (
                Rejection::InvalidCoordinates {
                    lat: 0.0,
                    lon: f64::NAN,
                },
                "invalid_coordinates",
                "lon must be a finite number between -180 and 180",
            ),
            (
                Rejection::TimestampInFuture {
                    ts: 70_000,
                    now: 0,
                    max_skew: Duration::from_secs(60),
                },
                "timestamp_in_future",
                "at most 1m ahead",
            ),
            (
                Rejection::TimestampTooOld {
                    ts: 0,
                    now: 90_000_000,
                    max_age: Duration::from_secs(24 * 3600),
                },
                "timestamp_too_old",
                "at most 1day old",
            ),
            (
                Rejection::InvalidAccuracy { accuracy_m: -1.0 },
                "invalid_accuracy",
                "between 0 and 100000 metres",
            ),
            (
                Rejection::RateLimited {
                    retry_after_ms: 250,
                },
                "rate_limited",
                "retry after 250 ms",
            ),
        ];
        for (rejection, code, fragment) in cases {
            assert_eq!(rejection.code(), code);
            let message = rejection.to_string();
            assert!(message.contains(fragment), "{code}: {message}");
        }
    }
}
