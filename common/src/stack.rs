//! Where the stack lives: the addresses of Kafka, the CQL store and Redis, shared by every binary
//! as one `clap` argument group read from flags or `NEARBY_*` environment variables.

/// Addresses of the stack's services. `stack/stack.sh env` prints the matching variables.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// Kafka bootstrap servers, comma-separated `host:port` pairs.
    #[arg(
        long,
        global = true,
        env = "NEARBY_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_brokers: String,

    /// CQL contact points (Cassandra or ScyllaDB), comma-separated `host:port` pairs.
    #[arg(
        long,
        global = true,
        env = "NEARBY_CQL_NODES",
        default_value = "127.0.0.1:9042",
        value_delimiter = ','
    )]
    pub cql_nodes: Vec<String>,

    /// CQL keyspace of the user store and the location history.
    #[arg(
        long,
        global = true,
        env = "NEARBY_CQL_KEYSPACE",
        default_value = "nearby"
    )]
    pub cql_keyspace: String,

    /// Redis URL of the latest-location cache.
    #[arg(
        long,
        global = true,
        env = "NEARBY_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,

    /// Prefix of every topic name (`<prefix>.location-updates`, ...); tests use a random one.
    #[arg(
        long,
        global = true,
        env = "NEARBY_TOPIC_PREFIX",
        default_value = "nearby"
    )]
    pub topic_prefix: String,

    /// How long a stage (or `nearby-admin`) waits at start-up for each thing it needs of the
    /// stack (a topic's leaders, a broker, the CQL store, Redis) before it fails naming it.
    #[arg(
        long,
        global = true,
        env = "NEARBY_STARTUP_TIMEOUT",
        default_value = "60s",
        value_parser = humantime::parse_duration
    )]
    pub startup_timeout: std::time::Duration,
}

impl StackArgs {
    /// Start-up waits bounded by `--startup-timeout`.
    pub fn startup(&self) -> crate::startup::Startup {
        crate::startup::Startup {
            timeout: self.startup_timeout,
        }
    }

    /// The topic names under this configuration's prefix.
    pub fn topics(&self) -> crate::Result<crate::Topics> {
        crate::Topics::new(&self.topic_prefix)
    }
}

/// The product's rules, which every stage must apply alike (the gateway's pages and fanout's
/// deliveries): one definition, so they cannot drift apart.
#[derive(Debug, Clone, clap::Args)]
pub struct RulesArgs {
    /// The nearby radius, metres (5 miles).
    #[arg(long, env = "NEARBY_RADIUS_M", default_value_t = crate::geo::NEARBY_RADIUS_M)]
    pub radius_m: f64,

    /// A user silent this long is inactive: dropped from every list (`friend_left`/`inactive`).
    #[arg(long, env = "NEARBY_LOCATION_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub location_ttl: std::time::Duration,
}

impl RulesArgs {
    /// Checks the values; the message names the setting to fix.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.radius_m.is_finite() && self.radius_m > 0.0) {
            return Err("NEARBY_RADIUS_M must be a positive number of metres".into());
        }
        if self.location_ttl.is_zero() {
            return Err("NEARBY_LOCATION_TTL must be positive".into());
        }
        Ok(())
    }

    /// The TTL in milliseconds.
    pub fn ttl_ms(&self) -> i64 {
        i64::try_from(self.location_ttl.as_millis()).unwrap_or(i64::MAX)
    }
}
