//! What the end-to-end tests share: the stack's addresses from the environment that
//! `stack/stack.sh env` prints, and random names so runs never collide.

#![allow(dead_code)]

/// Kafka bootstrap servers of the running stack.
pub fn kafka_brokers() -> String {
    std::env::var("NEARBY_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// CQL contact points of the running stack.
pub fn cql_nodes() -> Vec<String> {
    std::env::var("NEARBY_CQL_NODES")
        .unwrap_or_else(|_| "127.0.0.1:9042".into())
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Redis URL of the running stack.
pub fn redis_url() -> String {
    std::env::var("NEARBY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A fresh name: `prefix` and 16 random hex digits, valid as a topic, keyspace or key.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..16])
}
