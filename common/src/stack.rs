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
}

impl StackArgs {
    /// The topic names under this configuration's prefix.
    pub fn topics(&self) -> crate::Result<crate::Topics> {
        crate::Topics::new(&self.topic_prefix)
    }
}
