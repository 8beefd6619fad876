//! The one wall clock of every stage: epoch milliseconds, microseconds and seconds by the
//! system clock. The cores (fanout's table, ingest's checks) take time as an argument and never
//! read a clock themselves, so they can be tested with any time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Since the epoch by the system clock (zero if the clock is set before 1970).
fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Epoch milliseconds.
pub fn now_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Epoch microseconds.
pub fn now_us() -> i64 {
    i64::try_from(since_epoch().as_micros()).unwrap_or(i64::MAX)
}

/// Whole epoch seconds.
pub fn now_s() -> u64 {
    since_epoch().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_agree() {
        let (s, ms, us) = (now_s(), now_ms(), now_us());
        // Read in that order, each at most a moment after the one before.
        assert!(ms / 1000 >= i64::try_from(s).unwrap());
        assert!(us / 1000 >= ms);
        // 2020-01-01 or later: the clock is a real one, in the right unit.
        assert!(ms > 1_577_836_800_000, "{ms}");
    }
}
