//! Consumer lag from librdkafka's statistics (emitted every `statistics.interval.ms`): per
//! partition, records between a consumer's position and the partition's high watermark, read
//! locally with no request to the broker. rdkafka 0.39 has no safe accessor for the watermarks
//! librdkafka caches from fetch responses (and this workspace forbids `unsafe`); the statistics
//! carry them, with every position the lag can count from, all from one moment.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::statistics::{Partition, Statistics};

/// Which position a partition's lag counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagFrom {
    /// What the application has read: the last record handed over + 1, or, before the first
    /// one, the next offset to fetch. For readers whose output is made as they read.
    Read,
    /// What the application has stored for commit (every record before it is done), or, before
    /// its first store, where the partition started: the group's committed offset (not below
    /// the log start), else the log start. For at-least-once consumers, whose work ends later.
    Stored,
}

/// Turns on the statistics the lag comes from, every `every`.
pub fn with_lag_stats(config: &mut ClientConfig, every: Duration) -> &mut ClientConfig {
    config.set("statistics.interval.ms", every.as_millis().to_string())
}

/// The lag of one partition, `None` while the high watermark or the position is unknown
/// (librdkafka reports negative offsets until the first fetch response and offset fetch).
pub fn partition_lag(p: &Partition, from: LagFrom) -> Option<i64> {
    if p.hi_offset < 0 {
        return None;
    }
    let known = |o: i64| (o >= 0).then_some(o);
    let at = match from {
        LagFrom::Read => known(p.app_offset).or(known(p.next_offset))?,
        LagFrom::Stored => known(p.stored_offset).or_else(|| {
            match (known(p.committed_offset), known(p.lo_offset)) {
                (Some(c), Some(low)) => Some(c.max(low)),
                (c, low) => c.or(low),
            }
        })?,
    };
    Some((p.hi_offset - at).max(0))
}

/// `(partition, lag)` of each partition assigned to the consumer when `statistics` were taken
/// (librdkafka's `desired`; partition -1 is its internal one), of `topic` or of every topic,
/// by partition.
pub fn lag_by_partition(
    statistics: &Statistics,
    topic: Option<&str>,
    from: LagFrom,
) -> Vec<(i32, i64)> {
    let mut lag: Vec<(i32, i64)> = statistics
        .topics
        .iter()
        .filter(|(name, _)| topic.is_none_or(|t| t == name.as_str()))
        .flat_map(|(_, t)| t.partitions.values())
        .filter(|p| p.desired && p.partition >= 0)
        .filter_map(|p| partition_lag(p, from).map(|n| (p.partition, n)))
        .collect();
    lag.sort_unstable();
    lag
}

/// A consumer context that keeps the lag of each partition it reads ([`LagFrom::Read`]) from
/// the statistics, for a `/metrics` page to read at no cost.
#[derive(Debug, Default, Clone)]
pub struct LagStats(Arc<Mutex<Vec<(i32, i64)>>>);

impl LagStats {
    /// `(partition, lag)` for each partition assigned at the last statistics, by partition.
    pub fn lag(&self) -> Vec<(i32, i64)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl rdkafka::ClientContext for LagStats {
    fn stats(&self, statistics: Statistics) {
        let lag = lag_by_partition(&statistics, None, LagFrom::Read);
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = lag;
    }
}

impl rdkafka::consumer::ConsumerContext for LagStats {}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(hi: i64, lo: i64, app: i64, next: i64, stored: i64, committed: i64) -> Partition {
        Partition {
            hi_offset: hi,
            lo_offset: lo,
            app_offset: app,
            next_offset: next,
            stored_offset: stored,
            committed_offset: committed,
            ..Partition::default()
        }
    }

    #[test]
    fn read_lag_counts_from_what_was_handed_over_else_the_next_fetch() {
        assert_eq!(
            partition_lag(&partition(100, 0, 90, 95, -1, -1), LagFrom::Read),
            Some(10)
        );
        assert_eq!(
            partition_lag(&partition(100, 0, -1001, 95, -1, -1), LagFrom::Read),
            Some(5)
        );
        assert_eq!(
            partition_lag(&partition(-1, 0, 90, 95, -1, -1), LagFrom::Read),
            None
        );
        assert_eq!(
            partition_lag(&partition(100, 0, -1001, -1001, -1, -1), LagFrom::Read),
            None
        );
    }

    #[test]
    fn stored_lag_counts_from_the_stored_position_else_from_where_the_partition_started() {
        let stored = |hi, lo, stored, committed| {
            partition_lag(
                &partition(hi, lo, -1001, -1001, stored, committed),
                LagFrom::Stored,
            )
        };
        assert_eq!(stored(100, 0, 90, 50), Some(10), "stored wins");
        assert_eq!(stored(100, 0, -1001, 50), Some(50), "nothing stored yet");
        assert_eq!(
            stored(100, 70, -1001, 50),
            Some(30),
            "a committed offset older than the log starts at the log start"
        );
        assert_eq!(stored(100, 20, -1001, -1001), Some(80), "never committed");
        assert_eq!(stored(0, 0, -1001, -1001), Some(0), "an empty partition");
        assert_eq!(stored(-1, 0, 5, 5), None, "no fetch response yet");
        assert_eq!(stored(10, -1, -1001, -1001), None, "no known start");
        assert_eq!(stored(10, 0, 12, 0), Some(0), "never negative");
    }
}
