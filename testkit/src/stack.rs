//! Where the running stack is: the addresses `stack/stack.sh env` exports, with the local
//! defaults the stack listens on when nothing is set.

/// The value of `name`, or `default` when it is not set.
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Kafka bootstrap servers (`NEARBY_KAFKA_BROKERS`).
pub fn brokers() -> String {
    env_or("NEARBY_KAFKA_BROKERS", "127.0.0.1:9092")
}

/// CQL contact points (`NEARBY_CQL_NODES`, comma-separated).
pub fn cql_nodes() -> Vec<String> {
    env_or("NEARBY_CQL_NODES", "127.0.0.1:9042")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// The Redis URL of the latest-location cache (`NEARBY_REDIS_URL`).
pub fn redis_url() -> String {
    env_or("NEARBY_REDIS_URL", "redis://127.0.0.1:6379/")
}
