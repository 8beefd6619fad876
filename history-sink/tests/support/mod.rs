//! What the sink's tests share: where the stack is, fresh names, and a fresh location topic.

#![allow(dead_code)] // each test file uses its own share of these

use std::time::Duration;

/// The stack's addresses (`stack/stack.sh env`), with the local defaults.
pub fn brokers() -> String {
    std::env::var("NEARBY_KAFKA_BROKERS").unwrap_or("127.0.0.1:9092".into())
}

/// The CQL contact point.
pub fn nodes() -> String {
    std::env::var("NEARBY_CQL_NODES").unwrap_or("127.0.0.1:9042".into())
}

/// A fresh name: `prefix` and 12 random hex digits.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Creates `<prefix>.location-updates` with `partitions` and returns its name.
pub async fn location_topic(brokers: &str, prefix: &str, partitions: i32) -> String {
    let topic = format!("{prefix}.location-updates");
    let admin = nearby_common::kafka::admin_client(brokers).unwrap();
    nearby_common::kafka::ensure_topics(
        &admin,
        &[nearby_common::kafka::TopicSpec {
            name: topic.clone(),
            partitions,
            replication: 1,
            retention: Duration::from_secs(3600),
        }],
    )
    .await
    .unwrap();
    topic
}
