//! The sink's configuration (flags or `NEARBY_*` variables, defaults everywhere).

use std::net::SocketAddr;
use std::time::Duration;

use nearby_common::StackArgs;

/// Everything a sink instance needs.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "nearby-history-sink",
    version,
    about = "Location history sink of Nearby Friends"
)]
pub struct SinkConfig {
    /// Consumer group of the sink instances (its committed offsets are what a replay moves).
    #[arg(
        long,
        env = "NEARBY_HISTORY_GROUP",
        default_value = "nearby-history-sink"
    )]
    pub group_id: String,

    /// A stable name for this instance in the group (Kafka static membership): a restarted
    /// instance with the same name takes its partitions back at once instead of waiting for the
    /// group to notice the old one is gone. Unset: a new member at each start.
    #[arg(long, env = "NEARBY_HISTORY_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// How long the group waits for a silent instance before giving its partitions to others.
    #[arg(long, env = "NEARBY_HISTORY_SESSION_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub session_timeout: Duration,

    /// Address of the operators' port (health, readiness, counters).
    #[arg(
        long,
        env = "NEARBY_HISTORY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9082"
    )]
    pub admin_listen: SocketAddr,

    /// Most rows being written at once; reading pauses while this many are in flight.
    #[arg(long, env = "NEARBY_HISTORY_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,

    /// First wait before a failed write is tried again (it doubles up to the maximum).
    #[arg(long, env = "NEARBY_HISTORY_RETRY_MIN", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub retry_min: Duration,

    /// Longest wait between tries of a failed write. Writes are retried until they succeed or
    /// the sink stops: nothing is acknowledged that was not written.
    #[arg(long, env = "NEARBY_HISTORY_RETRY_MAX", default_value = "5s", value_parser = humantime::parse_duration)]
    pub retry_max: Duration,

    /// How long a stop waits for the writes in flight before leaving them to the next reader.
    #[arg(long, env = "NEARBY_HISTORY_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// CQL replication factor of the keyspace, if the sink creates it.
    #[arg(long, env = "NEARBY_CQL_REPLICATION", default_value_t = 1)]
    pub replication: u32,

    /// Who may read `/metrics` on the admin port.
    #[command(flatten)]
    pub admin_auth: nearby_common::admin::AdminAuth,

    /// Where the stack is.
    #[command(flatten)]
    pub stack: StackArgs,
}

impl SinkConfig {
    /// Checks the rules between fields.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_in_flight == 0 {
            return Err("NEARBY_HISTORY_MAX_IN_FLIGHT must be at least 1".into());
        }
        if self.retry_min.is_zero() || self.retry_min > self.retry_max {
            return Err(
                "NEARBY_HISTORY_RETRY_MIN must be positive and at most NEARBY_HISTORY_RETRY_MAX"
                    .into(),
            );
        }
        Ok(())
    }
}
