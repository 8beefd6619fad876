//! Ingest's counters, kept in atomics and read as a [`MetricsSnapshot`], and served on the
//! gateway's `/metrics` through its registry by [`IngestCollector`] (read at each scrape).
//! Labels are low-cardinality: a kind or a rejection code, never a user.

use std::sync::atomic::{AtomicU64, Ordering};

use nearby_common::metrics::{
    Collector, ConstCounter, ConstGauge, DescriptorEncoder, EncodeMetric,
};

use crate::rejection::{REJECTION_CODES, Rejection};

/// The live counters. Every update is `Relaxed`: each counter is an independent monotonic
/// tally, read only for reporting, and no other memory is published through it.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    accepted: AtomicU64,
    connected: AtomicU64,
    disconnected: AtomicU64,
    rejected: [AtomicU64; REJECTION_CODES.len()],
    queue_full: AtomicU64,
    produce_errors_retryable: AtomicU64,
    produce_errors_fatal: AtomicU64,
}

/// What kind of event was written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EventKind {
    Position,
    Connected,
    Disconnected,
}

impl Metrics {
    pub(crate) fn produced(&self, kind: EventKind) {
        let counter = match kind {
            EventKind::Position => &self.accepted,
            EventKind::Connected => &self.connected,
            EventKind::Disconnected => &self.disconnected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, rejection: &Rejection) {
        self.rejected[rejection.ordinal()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn queue_full(&self) {
        self.queue_full.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn produce_error(&self, retryable: bool) {
        let counter = if retryable {
            &self.produce_errors_retryable
        } else {
            &self.produce_errors_fatal
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        tracked_users: usize,
        rate_limit_evictions: u64,
    ) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            accepted: get(&self.accepted),
            connected: get(&self.connected),
            disconnected: get(&self.disconnected),
            rejected: RejectedCounts(self.rejected.each_ref().map(get)),
            queue_full: get(&self.queue_full),
            produce_errors_retryable: get(&self.produce_errors_retryable),
            produce_errors_fatal: get(&self.produce_errors_fatal),
            rate_limit_tracked_users: tracked_users as u64,
            rate_limit_evictions,
        }
    }
}

/// A point-in-time copy of ingest's counters (all since start, except the gauge).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Position reports acked by Kafka.
    pub accepted: u64,
    /// `Connected` events acked by Kafka.
    pub connected: u64,
    /// `Disconnected` events acked by Kafka.
    pub disconnected: u64,
    /// Reports refused, by reason.
    pub rejected: RejectedCounts,
    /// Events that gave up waiting for room in the producer queue.
    pub queue_full: u64,
    /// Events Kafka did not ack, with an error that may pass later.
    pub produce_errors_retryable: u64,
    /// Events Kafka did not ack, with an error that will not pass (or that failed to encode).
    pub produce_errors_fatal: u64,
    /// Gauge: users whose rate-limit bucket is in memory.
    pub rate_limit_tracked_users: u64,
    /// Buckets dropped before they were idle because the table was at its cap.
    pub rate_limit_evictions: u64,
}

/// Rejected reports per [`Rejection::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RejectedCounts([u64; REJECTION_CODES.len()]);

impl RejectedCounts {
    /// The count for a rejection code (`invalid_coordinates`, ...); 0 for an unknown code.
    pub fn get(&self, code: &str) -> u64 {
        REJECTION_CODES
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| self.0[i])
    }

    /// Every `(code, count)`, in a fixed order, zeros included (for a labelled metric).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REJECTION_CODES.iter().copied().zip(self.0.iter().copied())
    }

    /// All rejections together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Serves [`crate::Ingest::metrics`] in a Prometheus registry: each scrape reads the counters
/// once, as `ingest_events_total{kind}`, `ingest_rejected_total{code}`,
/// `ingest_queue_full_total`, `ingest_produce_errors_total{retryable}`,
/// `ingest_rate_limit_tracked_users` and `ingest_rate_limit_evictions_total` (under the
/// registry's prefix).
#[derive(Debug)]
pub struct IngestCollector(pub crate::Ingest);

impl Collector for IngestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.0.metrics();
        let counters = |encoder: &mut DescriptorEncoder,
                        name: &str,
                        help: &str,
                        label: &str,
                        values: &[(&str, u64)]|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (value, n) in values {
                let labels = [(label, *value)];
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        };
        counters(
            &mut encoder,
            "ingest_events",
            "Events acked by Kafka, by kind",
            "kind",
            &[
                ("position", m.accepted),
                ("connected", m.connected),
                ("disconnected", m.disconnected),
            ],
        )?;
        let rejected: Vec<(&str, u64)> = m.rejected.iter().collect();
        counters(
            &mut encoder,
            "ingest_rejected",
            "Reports refused before Kafka, by error code",
            "code",
            &rejected,
        )?;
        counters(
            &mut encoder,
            "ingest_produce_errors",
            "Events Kafka did not ack, by whether the error may pass",
            "retryable",
            &[
                ("true", m.produce_errors_retryable),
                ("false", m.produce_errors_fatal),
            ],
        )?;
        let queue_full = ConstCounter::new(m.queue_full);
        queue_full.encode(encoder.encode_descriptor(
            "ingest_queue_full",
            "Events that gave up waiting for room in the producer queue",
            None,
            queue_full.metric_type(),
        )?)?;
        let evictions = ConstCounter::new(m.rate_limit_evictions);
        evictions.encode(encoder.encode_descriptor(
            "ingest_rate_limit_evictions",
            "Rate-limit buckets dropped before idle because the table was full",
            None,
            evictions.metric_type(),
        )?)?;
        let tracked =
            ConstGauge::new(i64::try_from(m.rate_limit_tracked_users).unwrap_or(i64::MAX));
        tracked.encode(encoder.encode_descriptor(
            "ingest_rate_limit_tracked_users",
            "Users whose rate-limit bucket is in memory",
            None,
            tracked.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_code() {
        let m = Metrics::default();
        m.rejected(&Rejection::RateLimited { retry_after_ms: 1 });
        m.rejected(&Rejection::RateLimited { retry_after_ms: 2 });
        m.rejected(&Rejection::InvalidAccuracy { accuracy_m: -1.0 });
        m.produced(EventKind::Position);
        m.produce_error(true);
        let s = m.snapshot(3, 0);
        assert_eq!(s.rejected.get("rate_limited"), 2);
        assert_eq!(s.rejected.get("invalid_accuracy"), 1);
        assert_eq!(s.rejected.get("no_such_code"), 0);
        assert_eq!(s.rejected.total(), 3);
        assert_eq!(s.rejected.iter().count(), REJECTION_CODES.len());
        assert_eq!((s.accepted, s.produce_errors_retryable), (1, 1));
        assert_eq!(s.rate_limit_tracked_users, 3);
    }
}
