//! A client's position report and the rules it must pass before anything is produced: finite
//! coordinates in range, a timestamp neither too far ahead of the server clock nor too old, and
//! a sane accuracy. Checking is pure (the server time is an argument), so every boundary is
//! testable exactly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rejection::Rejection;

/// The largest `accuracy_m` accepted, metres: a position vaguer than 100 km says nothing
/// about who is within 5 miles, and a larger number is a client bug.
pub const MAX_ACCURACY_M: f64 = 100_000.0;

/// A position as the client reports it (the `location` frame of the socket, or one entry of an
/// HTTP batch). It carries no user id: identity always comes from the verified token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Latitude, WGS84 degrees, -90 to 90.
    pub lat: f64,
    /// Longitude, WGS84 degrees, -180 to 180.
    pub lon: f64,
    /// When the device took the position, Unix epoch milliseconds by the client's clock.
    pub ts: i64,
    /// Horizontal accuracy the device claims, metres; absent when it did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
}

/// How far a report's `ts` may stray from the server clock. Live reports use the config's
/// values ([`ValidationLimits::LIVE`] by default); the batch-upload path passes a larger
/// `max_age`, since a phone that was offline uploads positions hours or days old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationLimits {
    /// How far ahead of the server clock `ts` may be (device clocks drift).
    pub max_future_skew: Duration,
    /// How far behind the server clock `ts` may be.
    pub max_age: Duration,
}

impl ValidationLimits {
    /// The defaults for live reports: 60 s of clock skew, 24 h of age.
    pub const LIVE: Self = Self {
        max_future_skew: Duration::from_secs(60),
        max_age: Duration::from_secs(24 * 60 * 60),
    };
}

impl Default for ValidationLimits {
    fn default() -> Self {
        Self::LIVE
    }
}

impl Report {
    /// Checks the report against every rule, given the server's time `now_ms` (epoch ms).
    ///
    /// Both ends of each range are accepted: `ts == now + max_future_skew` and
    /// `ts == now - max_age` pass, one millisecond further does not.
    pub fn validate(&self, now_ms: i64, limits: &ValidationLimits) -> Result<(), Rejection> {
        if !nearby_common::geo::is_valid_position(self.lat, self.lon) {
            return Err(Rejection::InvalidCoordinates {
                lat: self.lat,
                lon: self.lon,
            });
        }
        // Saturating arithmetic: a huge max_age (the batch path) or an absurd ts must not wrap.
        if self.ts > now_ms.saturating_add(duration_ms(limits.max_future_skew)) {
            return Err(Rejection::TimestampInFuture {
                ts: self.ts,
                now: now_ms,
                max_skew: limits.max_future_skew,
            });
        }
        if self.ts < now_ms.saturating_sub(duration_ms(limits.max_age)) {
            return Err(Rejection::TimestampTooOld {
                ts: self.ts,
                now: now_ms,
                max_age: limits.max_age,
            });
        }
        if let Some(accuracy_m) = self.accuracy_m
            && !(accuracy_m.is_finite() && (0.0..=MAX_ACCURACY_M).contains(&accuracy_m))
        {
            return Err(Rejection::InvalidAccuracy { accuracy_m });
        }
        Ok(())
    }
}

/// A duration in whole milliseconds, saturating at `i64::MAX`.
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_057_600_000;
    const SKEW_MS: i64 = 60_000;
    const AGE_MS: i64 = 24 * 3_600_000;

    fn report(lat: f64, lon: f64) -> Report {
        Report {
            lat,
            lon,
            ts: NOW,
            accuracy_m: None,
        }
    }

    fn code(r: &Report) -> Option<&'static str> {
        r.validate(NOW, &ValidationLimits::LIVE)
            .err()
            .map(|e| e.code())
    }

    #[test]
    fn coordinates_at_and_past_their_bounds() {
        for (lat, lon) in [
            (90.0, 180.0),
            (-90.0, -180.0),
            (0.0, 0.0),
            (-0.0, -0.0),
            (37.77, -122.42),
        ] {
            assert_eq!(code(&report(lat, lon)), None, "{lat},{lon}");
        }
        for (lat, lon) in [
            (90.0001, 0.0),
            (-90.0001, 0.0),
            (0.0, 180.0001),
            (0.0, -180.0001),
            (f64::NAN, 0.0),
            (0.0, f64::NAN),
            (f64::INFINITY, 0.0),
            (f64::NEG_INFINITY, 0.0),
            (0.0, f64::INFINITY),
            (0.0, f64::NEG_INFINITY),
        ] {
            assert_eq!(
                code(&report(lat, lon)),
                Some("invalid_coordinates"),
                "{lat},{lon}"
            );
        }
    }

    #[test]
    fn timestamp_skew_and_age_at_their_bounds() {
        let at = |ts| Report {
            ts,
            ..report(1.0, 2.0)
        };
        assert_eq!(code(&at(NOW + SKEW_MS)), None);
        assert_eq!(code(&at(NOW + SKEW_MS + 1)), Some("timestamp_in_future"));
        assert_eq!(code(&at(i64::MAX)), Some("timestamp_in_future"));
        assert_eq!(code(&at(NOW - AGE_MS)), None);
        assert_eq!(code(&at(NOW - AGE_MS - 1)), Some("timestamp_too_old"));
        assert_eq!(code(&at(i64::MIN)), Some("timestamp_too_old"));
        assert_eq!(code(&at(0)), Some("timestamp_too_old"));

        // The batch path passes a larger age (and a huge one must not overflow).
        let week = ValidationLimits {
            max_age: Duration::from_secs(7 * 24 * 3600),
            ..ValidationLimits::LIVE
        };
        assert_eq!(at(NOW - AGE_MS - 1).validate(NOW, &week), Ok(()));
        let forever = ValidationLimits {
            max_age: Duration::MAX,
            max_future_skew: Duration::ZERO,
        };
        // 1938: far older than any live limit, fine for an unbounded one.
        assert_eq!(at(-1_000_000_000_000).validate(NOW, &forever), Ok(()));
        assert_eq!(
            at(NOW + 1).validate(NOW, &forever).map_err(|e| e.code()),
            Err("timestamp_in_future")
        );
    }

    #[test]
    fn accuracy_is_optional_finite_and_bounded() {
        let with = |a| Report {
            accuracy_m: Some(a),
            ..report(1.0, 2.0)
        };
        for ok in [0.0, -0.0, 5.0, MAX_ACCURACY_M] {
            assert_eq!(code(&with(ok)), None, "{ok}");
        }
        for bad in [
            -0.001,
            MAX_ACCURACY_M + 0.001,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(code(&with(bad)), Some("invalid_accuracy"), "{bad}");
        }
    }

    #[test]
    fn reports_read_from_the_protocol_json() {
        let r: Report =
            serde_json::from_str(r#"{"lat": 37.77, "lon": -122.42, "ts": 1764057600000}"#)
                .expect("parses");
        assert_eq!(r.accuracy_m, None);
        let r: Report = serde_json::from_str(
            r#"{"lat": 37.77, "lon": -122.42, "ts": 1764057600000, "accuracy_m": 12.5}"#,
        )
        .expect("parses");
        assert_eq!(r.accuracy_m, Some(12.5));
    }
}
