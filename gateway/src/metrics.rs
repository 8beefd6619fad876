//! The gateway's metrics, served as Prometheus text on the admin port's `/metrics`.

use nearby_common::metrics::{Counter, Family, Gauge, Label, Registry};

/// Counters and gauges of one gateway (cheap to clone: each metric is shared).
#[derive(Debug)]
pub struct Metrics {
    /// Where they are registered.
    pub registry: Registry,
    /// Sockets open now (set when scraped).
    pub connections: Gauge<i64>,
    /// Position reports by `via` (`socket`, `upload`) and `result` (`accepted`, or the error
    /// code: `invalid_coordinates`, `rate_limited`, `unavailable`, ...).
    pub reports: Family<Label, Counter>,
    /// Deliveries read from this gateway's topic, by `kind` (`friend_location`, `friend_left`).
    pub deliveries: Family<Label, Counter>,
    /// Records read from this gateway's delivery topic.
    pub delivery_records: Counter,
    /// Delivery topic failures by `kind` (`consume`, `undecodable`).
    pub delivery_errors: Family<Label, Counter>,
    /// Frames dropped from full outboxes (slow clients; newest wins).
    pub outbox_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nearby_gateway");
        let m = Metrics {
            registry: Registry::default(),
            connections: Gauge::default(),
            reports: Family::default(),
            deliveries: Family::default(),
            delivery_records: Counter::default(),
            delivery_errors: Family::default(),
            outbox_dropped: Counter::default(),
        };
        registry.register("connections", "Sockets open", m.connections.clone());
        registry.register(
            "reports",
            "Position reports by how they came and what became of them",
            m.reports.clone(),
        );
        registry.register(
            "deliveries",
            "Deliveries read from this gateway's topic, by kind",
            m.deliveries.clone(),
        );
        registry.register(
            "delivery_records",
            "Records read from this gateway's delivery topic",
            m.delivery_records.clone(),
        );
        registry.register(
            "delivery_errors",
            "Delivery topic failures by kind",
            m.delivery_errors.clone(),
        );
        registry.register(
            "outbox_dropped",
            "Frames dropped from full client queues",
            m.outbox_dropped.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Counts a report.
    pub fn report(&self, via: &'static str, result: &str) {
        self.reports
            .get_or_create(&vec![
                ("via", via.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    /// Counts `n` of something in a one-label family.
    pub fn count(family: &Family<Label, Counter>, key: &'static str, value: &str, n: u64) {
        family
            .get_or_create(&vec![(key, value.to_owned())])
            .inc_by(n);
    }
}
