//! The times a replay accepts: RFC 3339 (`2026-11-25T08:00:00Z`, `...+01:00`), Unix epoch
//! milliseconds (`1764057600000`), or relative to now (`now`, `now-2h`, `now - 1h 30m`).

use std::time::{Duration, UNIX_EPOCH};

pub use nearby_common::clock::now_ms;

/// Parses a time given on the command line, against the clock now (a `clap` value parser).
pub fn parse(s: &str) -> Result<i64, String> {
    parse_at(s, now_ms())
}

/// Parses a time, `now` being `now_ms`; the error says which forms are accepted.
pub fn parse_at(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    let forms = "expected RFC 3339 (2026-11-25T08:00:00Z or with an offset like +01:00), \
                 epoch milliseconds (1764057600000) or now-DURATION (now-2h, now-90m)";
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map_err(|_| format!("{s:?}: epoch milliseconds out of range"));
    }
    if let Some(rest) = s.strip_prefix("now") {
        let rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(now_ms);
        }
        let Some(ago) = rest.strip_prefix('-') else {
            return Err(format!(
                "{s:?}: only times in the past are relative (now-2h); {forms}"
            ));
        };
        let ago = humantime::parse_duration(ago.trim())
            .map_err(|e| format!("{s:?}: bad duration ({e}); {forms}"))?;
        let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        return Ok(now_ms.saturating_sub(ago));
    }
    rfc3339(s).ok_or_else(|| format!("{s:?}: not a time; {forms}"))
}

/// RFC 3339 with `Z` or a numeric offset (humantime reads UTC times only, so an offset is
/// taken off first and applied after).
fn rfc3339(s: &str) -> Option<i64> {
    // RFC 3339 allows `t` and `z`; humantime reads only the capitals.
    let s = s.to_ascii_uppercase();
    let (local, offset_ms) = split_offset(&s)?;
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_millis()).ok()?,
    };
    Some(ms - offset_ms)
}

/// Splits `2026-11-25T09:00:00+01:00` into the local time and the offset east of UTC, ms.
/// A time must have its zone: `Z` or `±HH:MM`.
fn split_offset(s: &str) -> Option<(&str, i64)> {
    if let Some(local) = s.strip_suffix('Z') {
        return Some((local, 0));
    }
    let b = s.as_bytes();
    if b.len() < 6 || b[b.len() - 3] != b':' {
        return None;
    }
    let sign = match b[b.len() - 6] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i64 = s[s.len() - 5..s.len() - 3].parse().ok()?;
    let minutes: i64 = s[s.len() - 2..].parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((&s[..s.len() - 6], sign * (hours * 60 + minutes) * 60_000))
}

/// Formats epoch ms as RFC 3339 UTC with milliseconds (`2026-11-25T08:00:00.000Z`).
pub fn format(ms: i64) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    };
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_057_600_000; // 2025-11-25T08:00:00Z

    #[test]
    fn every_form_reads_the_same_instant() {
        for s in [
            "2025-11-25T08:00:00Z",
            "2025-11-25T08:00:00.000Z",
            "2025-11-25t08:00:00z",
            "2025-11-25T09:00:00+01:00",
            "2025-11-25T02:30:00-05:30",
            "1764057600000",
            "now",
            " now ",
        ] {
            assert_eq!(parse_at(s, NOW), Ok(NOW), "{s}");
        }
        assert_eq!(parse_at("now-2h", NOW), Ok(NOW - 7_200_000));
        assert_eq!(parse_at("now - 1h 30m", NOW), Ok(NOW - 5_400_000));
        assert_eq!(parse_at("0", NOW), Ok(0));
        assert_eq!(format(NOW), "2025-11-25T08:00:00.000Z");
        assert_eq!(format(NOW + 5), "2025-11-25T08:00:00.005Z");
    }

    #[test]
    fn junk_is_refused_with_the_accepted_forms() {
        for s in [
            "",
            "yesterday",
            "now+1h",
            "now-soon",
            "2025-11-25",
            "2025-11-25T08:00:00",
            "2025-11-25T08:00:00+25:00",
            "99999999999999999999999",
        ] {
            let err = parse_at(s, NOW).expect_err(s);
            assert!(err.contains(s.trim()), "{s}: {err}");
        }
        assert!(parse_at("yesterday", NOW).unwrap_err().contains("RFC 3339"));
    }
}
