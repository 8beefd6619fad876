//! What a fanout instance reports on its admin port: [`Status`] (shared with the run loop, which
//! updates it), its readiness line and its counters as Prometheus text.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nearby_common::lag::LagStats;

use super::producer::DeliveryCounters;

/// What the admin port reports.
#[derive(Debug, Default)]
pub struct Status {
    /// The table reader has reached the end the topic had at start-up, and the group assigned.
    pub ready: AtomicBool,
    /// Events applied.
    pub events: AtomicU64,
    /// Events that could not be decoded (skipped).
    pub poison: AtomicU64,
    /// Friendship events applied.
    pub changes: AtomicU64,
    /// Users in the table.
    pub table_users: AtomicU64,
    /// Friend-list loads that failed (the user is linked to nobody until their next activation).
    pub graph_errors: AtomicU64,
    /// What became of the deliveries produced.
    pub deliveries: Arc<DeliveryCounters>,
    /// Partitions of the location topic this instance fans out.
    pub owned_partitions: AtomicU64,
    /// Users whose state was sent again after a takeover of their partition.
    pub refreshed: AtomicU64,
    /// Delivery records queued in the producer, not yet acknowledged.
    pub delivery_queue: AtomicU64,
    /// The table reader's lag per partition (its client's statistics, read at a scrape).
    pub lag: LagStats,
}

impl nearby_common::admin::AdminView for Status {
    fn readiness(&self) -> (bool, String) {
        let body = format!(
            "events={} changes={} users={} poison={} graph_errors={}",
            self.events.load(Ordering::Relaxed),
            self.changes.load(Ordering::Relaxed),
            self.table_users.load(Ordering::Relaxed),
            self.poison.load(Ordering::Relaxed),
            self.graph_errors.load(Ordering::Relaxed),
        );
        if self.ready.load(Ordering::Acquire) {
            (true, format!("ready {body}"))
        } else {
            (false, format!("catching up {body}"))
        }
    }

    fn metrics(&self) -> String {
        metrics(self)
    }
}

/// Fanout's counters as Prometheus text.
fn metrics(s: &Status) -> String {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let d = &s.deliveries;
    let lag: Vec<(String, i64)> = s
        .lag
        .lag()
        .iter()
        .map(|(p, n)| (p.to_string(), *n))
        .collect();
    nearby_common::metrics::Snapshot::new("nearby_fanout")
        .gauge(
            "ready",
            "1 once the table is rebuilt and partitions are assigned",
            i64::from(s.ready.load(Ordering::Acquire)),
        )
        .counter("events", "Location events applied", get(&s.events))
        .counter("poison", "Undecodable events skipped", get(&s.poison))
        .counter("changes", "Friendship events applied", get(&s.changes))
        .gauge(
            "table_users",
            "Users in the latest-position table",
            i64::try_from(get(&s.table_users)).unwrap_or(i64::MAX),
        )
        .counter(
            "graph_errors",
            "Friend-list loads that failed",
            get(&s.graph_errors),
        )
        .counter(
            "deliveries_produced",
            "Deliveries acked by Kafka",
            get(&d.delivered),
        )
        .counter(
            "delivery_records",
            "Delivery records (one per step and gateway) acked by Kafka",
            get(&d.records),
        )
        .counter(
            "deliveries_failed",
            "Deliveries Kafka did not take after retries, or not encodable",
            get(&d.failed),
        )
        .counter(
            "deliveries_queue_full",
            "Deliveries dropped because the producer's queue stayed full",
            get(&d.queue_full),
        )
        .gauge(
            "delivery_queue",
            "Delivery records queued in the producer, not yet acknowledged",
            i64::try_from(get(&s.delivery_queue)).unwrap_or(i64::MAX),
        )
        .counter(
            "refreshed",
            "Users whose state was sent again when their partition was taken over",
            get(&s.refreshed),
        )
        .gauge(
            "owned_partitions",
            "Partitions of the location topic this instance fans out",
            i64::try_from(get(&s.owned_partitions)).unwrap_or(i64::MAX),
        )
        .gauges(
            "lag",
            "Records of the location topic not read yet, per partition",
            "partition",
            &lag,
        )
        .render()
}
