//! What the admin integration tests share: random names, a topic of their own, a producer that
//! sets each record's timestamp, and running the `nearby-admin` binary.

use std::process::{Command, Output};
use std::time::Duration;

use nearby_common::kafka::{self, TopicSpec};
use nearby_schemas::{LocationBody, LocationEvent, PositionReport};
use rdkafka::producer::{FutureProducer, FutureRecord};

pub fn brokers() -> String {
    std::env::var("NEARBY_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn redis_url() -> String {
    std::env::var("NEARBY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A topic prefix no other run uses.
pub fn unique_prefix() -> String {
    format!("test.{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Epoch ms now.
pub fn now_ms() -> i64 {
    nearby_admin::replay::time::now_ms()
}

/// Creates `topic` with `partitions` partitions and a day of retention.
pub async fn create_topic(topic: &str, partitions: i32) {
    let admin = kafka::admin_client(&brokers()).expect("admin client");
    kafka::ensure_topics(
        &admin,
        &[TopicSpec {
            name: topic.to_owned(),
            partitions,
            replication: 1,
            retention: Duration::from_secs(86_400),
        }],
    )
    .await
    .expect("topic created");
}

pub async fn delete_topic(topic: &str) {
    let admin = kafka::admin_client(&brokers()).expect("admin client");
    kafka::delete_topics(&admin, &[topic])
        .await
        .expect("topic deleted");
}

/// A position report of `user` at `ts`.
pub fn position(user: i64, ts: i64, lat: f64, lon: f64) -> LocationEvent {
    LocationEvent {
        user_id: user,
        gateway_id: Some("gw-a".into()),
        ts,
        received_at: ts + 40,
        body: LocationBody::Position(PositionReport {
            lat,
            lon,
            accuracy_m: Some(12.5),
        }),
    }
}

/// Produces each `(key, value, record timestamp)` in order, as the project's producers do
/// (keyed, Java-compatible partitioner), and returns where each landed: `(partition, offset)`.
pub async fn produce(topic: &str, records: &[(String, Vec<u8>, i64)]) -> Vec<(i32, i64)> {
    let producer: FutureProducer = kafka::producer_config(&brokers())
        .create()
        .expect("producer");
    let mut at = Vec::with_capacity(records.len());
    for (key, value, ts) in records {
        let delivery = producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(value)
                    .timestamp(*ts),
                Duration::from_secs(30),
            )
            .await
            .expect("record produced");
        at.push((delivery.partition, delivery.offset));
    }
    at
}

/// Produces location events keyed by their user, with the given record timestamps.
pub async fn produce_events(topic: &str, events: &[(LocationEvent, i64)]) -> Vec<(i32, i64)> {
    let records: Vec<(String, Vec<u8>, i64)> = events
        .iter()
        .map(|(e, ts)| {
            (
                e.user_id.to_string(),
                nearby_schemas::to_vec(e).expect("encodes"),
                *ts,
            )
        })
        .collect();
    produce(topic, &records).await
}

/// Runs `nearby-admin` with the stack's addresses and `prefix`.
pub fn admin(prefix: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nearby-admin"))
        .env("NEARBY_KAFKA_BROKERS", brokers())
        .env("NEARBY_REDIS_URL", redis_url())
        .env("NEARBY_TOPIC_PREFIX", prefix)
        .args(args)
        .output()
        .expect("nearby-admin runs")
}

/// The standard output of a run that must have succeeded.
pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "nearby-admin failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}
