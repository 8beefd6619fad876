//! `SinkStatus`: what the sink's loop and its group callbacks count, and how the admin port
//! shows it (`/readyz` line, Prometheus text on `/metrics`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the admin port reports.
#[derive(Debug, Default)]
pub struct SinkStatus {
    /// The group has assigned this instance its partitions (possibly none) at least once.
    pub joined: AtomicBool,
    /// The instance is stopping (draining its writes): no longer ready.
    pub stopping: AtomicBool,
    /// The partitions of the location topic this instance holds now.
    pub partitions: Mutex<BTreeSet<i32>>,
    /// Per held partition, records not written yet, from librdkafka's latest statistics (see
    /// [`crate::group`]); a partition shows once its first statistics after assignment came.
    pub lag: Mutex<BTreeMap<i32, i64>>,
    /// Rows written (a rewrite after a redelivery counts again).
    pub rows: AtomicU64,
    /// Failed writes that were tried again.
    pub retries: AtomicU64,
    /// Records that could not be decoded (logged, counted, skipped).
    pub poison: AtomicU64,
    /// Records that are not positions (connects, disconnects): nothing to keep.
    pub skipped: AtomicU64,
    /// Writes in flight now.
    pub in_flight: AtomicU64,
    /// Offsets stored for commit.
    pub stored: AtomicU64,
    /// Writes still unconfirmed when a stop's drain ended: left to the partition's next reader.
    pub abandoned: AtomicU64,
    /// The second of the last "writes failing" log line (to write one a second at most).
    pub last_warn_s: AtomicU64,
}

impl SinkStatus {
    /// Ready: taken into the group (its partitions assigned, even if no record came yet) and
    /// not stopping.
    pub fn is_ready(&self) -> bool {
        self.joined.load(Ordering::Relaxed) && !self.stopping.load(Ordering::Relaxed)
    }
}

impl nearby_common::admin::AdminView for SinkStatus {
    fn readiness(&self) -> (bool, String) {
        let (held, lag) = crate::group::held_and_lag(self);
        let body = format!(
            "partitions={} lag={} rows={} retries={} poison={} skipped={} in_flight={} stored={} abandoned={}",
            held.len(),
            lag.iter().map(|(_, n)| n).sum::<i64>(),
            self.rows.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
            self.poison.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
            self.stored.load(Ordering::Relaxed),
            self.abandoned.load(Ordering::Relaxed),
        );
        if self.stopping.load(Ordering::Relaxed) {
            (false, format!("stopping {body}"))
        } else if self.is_ready() {
            (true, format!("ready {body}"))
        } else {
            (false, format!("waiting for partitions {body}"))
        }
    }

    fn metrics(&self) -> String {
        metrics(self)
    }
}

/// The sink's counters as Prometheus text.
fn metrics(s: &SinkStatus) -> String {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (held, lag) = crate::group::held_and_lag(s);
    nearby_common::metrics::Snapshot::new("nearby_history_sink")
        .gauge(
            "ready",
            "1 once the group has assigned this instance its partitions (records or not), 0 again once it stops",
            i64::from(s.is_ready()),
        )
        .gauge(
            "partitions",
            "Partitions of the location topic held by this instance",
            i64::try_from(held.len()).unwrap_or(i64::MAX),
        )
        .gauges(
            "lag",
            "Records not written yet per held partition: high watermark minus the position stored for commit (or where the partition started), from librdkafka statistics (1 s)",
            "partition",
            &lag,
        )
        .counter(
            "rows",
            "Rows written (a rewrite after a redelivery counts again)",
            get(&s.rows),
        )
        .counter("retries", "Failed writes tried again", get(&s.retries))
        .counter("poison", "Undecodable records skipped", get(&s.poison))
        .counter(
            "skipped",
            "Records that are not positions (connects, disconnects)",
            get(&s.skipped),
        )
        .gauge(
            "in_flight",
            "Writes in flight now (at most 256)",
            i64::try_from(get(&s.in_flight)).unwrap_or(i64::MAX),
        )
        .counter("stored", "Offsets stored for commit", get(&s.stored))
        .counter(
            "abandoned",
            "Writes unconfirmed when a stop's drain ended (left to the partition's next reader)",
            get(&s.abandoned),
        )
        .render()
}
