//! What the end-to-end tests share: the stack's address from the environment that
//! `stack/stack.sh env` prints, random names so runs never collide, a throw-away location
//! topic, and a reader that brings a partition's records back decoded.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use nearby_common::kafka::{self, TopicSpec};
use nearby_schemas::LocationEvent;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Partitions of each test's topic: more than one, so keys really are placed.
pub const PARTITIONS: i32 = 3;

/// Kafka bootstrap servers of the running stack.
pub fn kafka_brokers() -> String {
    std::env::var("NEARBY_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A fresh name: `prefix` and 16 random hex digits.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..16])
}

/// A random non-negative user id.
pub fn random_user() -> i64 {
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 1) as i64
}

/// A location topic of its own for one test; [`TestTopic::delete`] removes it.
pub struct TestTopic {
    pub name: String,
    pub brokers: String,
    admin: AdminClient<DefaultClientContext>,
}

impl TestTopic {
    /// Creates `test.ingest.<random>.location-updates` with [`PARTITIONS`] partitions.
    pub async fn create() -> Self {
        let brokers = kafka_brokers();
        let topics = nearby_common::Topics::new(&unique("test.ingest.")).expect("valid prefix");
        let name = topics.location_updates();
        let admin = kafka::admin_client(&brokers).expect("admin client");
        kafka::ensure_topics(
            &admin,
            &[TopicSpec {
                name: name.clone(),
                partitions: PARTITIONS,
                replication: 1,
                retention: Duration::from_secs(3600),
            }],
        )
        .await
        .expect("topic created (is the stack up? `stack/stack.sh status`)");
        Self {
            name,
            brokers,
            admin,
        }
    }

    /// Deletes the topic.
    pub async fn delete(self) {
        kafka::delete_topics(&self.admin, &[&self.name])
            .await
            .expect("cleanup");
    }

    /// The low and high watermarks of a partition (the high one is the next offset).
    pub fn watermarks(&self, partition: i32) -> (i64, i64) {
        let consumer: BaseConsumer = kafka::client_config(&self.brokers)
            .create()
            .expect("consumer");
        consumer
            .fetch_watermarks(&self.name, partition, Duration::from_secs(10))
            .expect("watermarks")
    }

    /// Reads `count` records of `partition` from `from` on, decoded, with their keys and
    /// offsets. Fails the test if they do not all come back within 30 s.
    pub fn read(&self, partition: i32, from: Offset, count: usize) -> Vec<Record> {
        let consumer: BaseConsumer = kafka::consumer_config(&self.brokers, &unique("test-ingest-"))
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.name, partition, from)
            .expect("assign");
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut records = Vec::with_capacity(count);
        while records.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} records came back from partition {partition}",
                records.len()
            );
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = msg.expect("consume");
            let key = String::from_utf8(msg.key().expect("a key").to_vec()).expect("utf-8 key");
            let event = nearby_schemas::decode(msg.payload().expect("a value")).expect("decodes");
            records.push(Record {
                key,
                offset: msg.offset(),
                event,
            });
        }
        records
    }
}

/// One record read back.
#[derive(Debug)]
pub struct Record {
    pub key: String,
    pub offset: i64,
    pub event: LocationEvent,
}
