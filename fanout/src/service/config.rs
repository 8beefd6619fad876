//! The fanout service's configuration (flags or `NEARBY_*` variables, defaults everywhere).

use std::net::SocketAddr;
use std::time::Duration;

use nearby_common::StackArgs;

/// Everything a fanout instance needs.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "nearby-fanout",
    version,
    about = "Fan-out stage of Nearby Friends"
)]
pub struct FanoutServiceConfig {
    /// Consumer group that shares the location topic's partitions among fanout instances.
    #[arg(long, env = "NEARBY_FANOUT_GROUP", default_value = "nearby-fanout")]
    pub group_id: String,

    /// Address of the operators' port (health, readiness).
    #[arg(
        long,
        env = "NEARBY_FANOUT_ADMIN_LISTEN",
        default_value = "127.0.0.1:9081"
    )]
    pub admin_listen: SocketAddr,

    /// Who may read `/metrics` on the admin port.
    #[command(flatten)]
    pub admin_auth: nearby_common::admin::AdminAuth,

    /// The product rules (radius, TTL).
    #[command(flatten)]
    pub rules: nearby_common::RulesArgs,

    /// How often users past the TTL are swept out.
    #[arg(long, env = "NEARBY_SWEEP_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,

    /// Most friend lists and sharing flags kept in memory (users); the oldest are dropped
    /// (and read again from the user store when needed).
    #[arg(
        long,
        env = "NEARBY_FRIEND_CACHE_CAPACITY",
        default_value_t = 2_000_000
    )]
    pub friend_cache_capacity: usize,

    /// Most location events handled as one step: the events already fetched are taken together
    /// (up to this many), their friend lists read at once, and their deliveries produced as
    /// one record per gateway and their cache writes as one Redis round trip.
    #[arg(long, env = "NEARBY_STEP_EVENTS", default_value_t = 256)]
    pub step_events: usize,

    /// Friend-list reads from the user store in flight at once within a step (users becoming
    /// active).
    #[arg(long, env = "NEARBY_GRAPH_LOADS", default_value_t = 32)]
    pub graph_loads: usize,

    /// Records the delivery producer may hold unsent before it reports itself full.
    #[arg(long, env = "NEARBY_DELIVERY_QUEUE", default_value_t = 100_000)]
    pub delivery_queue: usize,

    /// How long the group waits for a silent instance (killed, or cut off) before giving its
    /// partitions to the others: the longest pause in deliveries such a failure causes.
    #[arg(long, env = "NEARBY_FANOUT_SESSION_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub session_timeout: Duration,

    /// How often the location topic's partition count is read again: partitions added to the
    /// topic are then read into the table (from their start) and shared in the group.
    #[arg(long, env = "NEARBY_PARTITION_CHECK", default_value = "10s", value_parser = humantime::parse_duration)]
    pub partition_check: Duration,

    /// Where the stack is.
    #[command(flatten)]
    pub stack: StackArgs,
}

impl FanoutServiceConfig {
    /// Checks the rules between fields.
    pub fn validate(&self) -> Result<(), String> {
        self.rules.validate()?;
        if self.sweep_interval.is_zero() || self.sweep_interval >= self.rules.location_ttl {
            return Err(
                "NEARBY_SWEEP_INTERVAL must be positive and shorter than NEARBY_LOCATION_TTL"
                    .into(),
            );
        }
        if self.friend_cache_capacity == 0
            || self.delivery_queue == 0
            || self.step_events == 0
            || self.graph_loads == 0
        {
            return Err("NEARBY_FRIEND_CACHE_CAPACITY, NEARBY_DELIVERY_QUEUE, NEARBY_STEP_EVENTS and NEARBY_GRAPH_LOADS must be positive".into());
        }
        if !(Duration::from_secs(6)..=Duration::from_secs(300)).contains(&self.session_timeout) {
            // The broker's default group.min.session.timeout.ms is 6 s.
            return Err("NEARBY_FANOUT_SESSION_TIMEOUT must be between 6s and 5m".into());
        }
        if self.partition_check.is_zero() {
            return Err("NEARBY_PARTITION_CHECK must be positive".into());
        }
        self.stack
            .topics()
            .map(|_| ())
            .map_err(|e| format!("NEARBY_TOPIC_PREFIX: {e}"))
    }
}
