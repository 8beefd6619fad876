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
    /// `reconnect` frames sent by a draining gateway.
    pub reconnects_sent: Counter,
    /// 1 while the gateway drains (set when scraped).
    pub draining: Gauge<i64>,
    /// Records on the delivery topic not read yet (set when scraped).
    pub delivery_lag: Gauge<i64>,
    /// Where the delivery reader's client statistics put its lag.
    pub delivery_stats: nearby_common::lag::LagStats,
    /// Location records handed to the producer and not yet acknowledged by Kafka (set when
    /// scraped).
    pub produce_queue: Gauge<i64>,
    /// Frames waiting in the clients' queues, all connections (set when scraped).
    pub outbox_frames: Gauge<i64>,
    /// WebSocket upgrades refused by a limit, by `reason` (`too_many_sockets`).
    pub upgrades_refused: Family<Label, Counter>,
    /// New connections refused before any HTTP, by `reason` (`too_many_connections`).
    pub connections_refused: Family<Label, Counter>,
    /// Sessions ended, by `reason`: `client` (it closed or went), `slow` (took no write for the
    /// send timeout), `flood`, `idle`, `too_big`, `going_away` (drain or shutdown).
    pub sessions_closed: Family<Label, Counter>,
}

impl Metrics {
    /// Registers the JWKS key set's counters (when tokens are checked with one).
    pub fn register_jwks(&mut self, stats: &nearby_common::auth::jwks::JwksStats) {
        let r = &mut self.registry;
        r.register(
            "jwks_fetches",
            "JWKS fetches that replaced the key set",
            stats.fetches.clone(),
        );
        r.register(
            "jwks_fetch_failures",
            "JWKS fetches that failed (the keys held stay)",
            stats.failures.clone(),
        );
        r.register("jwks_keys", "Keys in the JWKS key set", stats.keys.clone());
    }
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
            reconnects_sent: Counter::default(),
            draining: Gauge::default(),
            delivery_lag: Gauge::default(),
            delivery_stats: Default::default(),
            produce_queue: Gauge::default(),
            outbox_frames: Gauge::default(),
            upgrades_refused: Family::default(),
            connections_refused: Family::default(),
            sessions_closed: Family::default(),
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
        registry.register(
            "reconnects_sent",
            "reconnect frames sent while draining",
            m.reconnects_sent.clone(),
        );
        registry.register("draining", "1 while the gateway drains", m.draining.clone());
        registry.register(
            "delivery_lag",
            "Records on this gateway's delivery topic not read yet",
            m.delivery_lag.clone(),
        );
        registry.register(
            "produce_queue",
            "Records handed to the Kafka producer and not acknowledged yet",
            m.produce_queue.clone(),
        );
        registry.register(
            "outbox_frames",
            "Frames waiting in the clients' queues (at most NEARBY_OUTBOX_CAPACITY each)",
            m.outbox_frames.clone(),
        );
        registry.register(
            "upgrades_refused",
            "WebSocket upgrades refused by a limit, by reason",
            m.upgrades_refused.clone(),
        );
        registry.register(
            "connections_refused",
            "New connections refused before any HTTP (NEARBY_CONNECT_RATE_*), by reason",
            m.connections_refused.clone(),
        );
        registry.register(
            "sessions_closed",
            "WebSocket sessions ended, by reason (client, slow, flood, idle, too_big, going_away)",
            m.sessions_closed.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Counts a session's end.
    pub fn session_closed(&self, reason: &str) {
        Self::count(&self.sessions_closed, "reason", reason, 1);
    }

    /// Counts a report.
    pub fn report(&self, via: &'static str, result: &str) {
        self.reports
            .get_or_create(&vec![
                ("via", via.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    /// Counts an upgrade refused for `reason`.
    pub fn upgrade_refused(&self, reason: &str) {
        Self::count(&self.upgrades_refused, "reason", reason, 1);
    }

    /// Counts a connection refused before any HTTP, by `reason`.
    pub fn connection_refused(&self, reason: &str) {
        Self::count(&self.connections_refused, "reason", reason, 1);
    }

    /// Counts `n` of something in a one-label family.
    pub fn count(family: &Family<Label, Counter>, key: &'static str, value: &str, n: u64) {
        family
            .get_or_create(&vec![(key, value.to_owned())])
            .inc_by(n);
    }
}
