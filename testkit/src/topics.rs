//! Topics of a test's own: the location and friendship topics under a fresh prefix (what
//! `nearby-admin topics create` makes in a deployment), one topic alone, and their removal.

use std::time::Duration;

use nearby_common::kafka::{self, TopicSpec};

use crate::stack::brokers;

/// How long test topics keep records: a day, longer than any test's record timestamps go back.
const RETENTION: Duration = Duration::from_secs(86_400);

/// Creates `topics` (names) with `partitions` each; returns at once, before the broker has
/// elected their leaders (a stage waits for them at start-up).
pub async fn create(topics: &[String], partitions: i32) {
    create_on(&brokers(), topics, partitions).await;
}

/// Creates `topics` with `partitions` each on the cluster at `brokers` (a broker of the test's
/// own, [`crate::own`]).
pub async fn create_on(brokers: &str, topics: &[String], partitions: i32) {
    let admin = kafka::admin_client(brokers).expect("admin client");
    let specs: Vec<TopicSpec> = topics
        .iter()
        .map(|name| TopicSpec {
            name: name.clone(),
            partitions,
            replication: 1,
            retention: RETENTION,
        })
        .collect();
    kafka::ensure_topics(&admin, &specs)
        .await
        .expect("topics created (is the stack up? `stack/stack.sh status`)");
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(topic: &str, partitions: i32) {
    create(&[topic.to_owned()], partitions).await;
}

/// Creates `<prefix>.location-updates` and `<prefix>.friendship-events`, `partitions` each.
pub async fn create_topics(prefix: &str, partitions: i32) {
    create(
        &[
            format!("{prefix}.location-updates"),
            format!("{prefix}.friendship-events"),
        ],
        partitions,
    )
    .await;
}

/// Creates `<prefix>.location-updates` with `partitions` and returns its name.
pub async fn location_topic(prefix: &str, partitions: i32) -> String {
    let topic = format!("{prefix}.location-updates");
    create_topic(&topic, partitions).await;
    topic
}

/// Deletes `topics`; fails the test if the broker refuses.
pub async fn delete(topics: &[&str]) {
    let admin = kafka::admin_client(&brokers()).expect("admin client");
    kafka::delete_topics(&admin, topics)
        .await
        .expect("topics deleted");
}

/// Deletes `topic`.
pub async fn delete_topic(topic: &str) {
    delete(&[topic]).await;
}

/// Deletes the location and friendship topics under `prefix`, whether they exist or not.
pub async fn delete_topics(prefix: &str) {
    let admin = kafka::admin_client(&brokers()).expect("admin client");
    let (a, b) = (
        format!("{prefix}.location-updates"),
        format!("{prefix}.friendship-events"),
    );
    let _ = kafka::delete_topics(&admin, &[&a, &b]).await;
}
