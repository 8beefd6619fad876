//! Records on the topics of a test: producing them as the project's producers do (keyed, the
//! Java-compatible partitioner) or plainly, and reading them back decoded, from the start to
//! the end a topic has now ([`topic_records`]) or from an offset of one partition
//! ([`TestTopic::read`]).

use std::time::{Duration, Instant};

use nearby_common::kafka;
use nearby_schemas::LocationEvent;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::names::unique;
use crate::stack::brokers;

/// Partitions of a [`TestTopic`]: more than one, so keys really are placed.
pub const PARTITIONS: i32 = 3;

/// Produces `values` to `topic` in order, without keys, each acked before the next.
pub async fn produce_values(topic: &str, values: &[Vec<u8>]) {
    let producer: FutureProducer = kafka::producer_config(&brokers())
        .create()
        .expect("producer");
    for value in values {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(value),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produced");
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

/// Every record on `<prefix>.location-updates`, read from the start up to the end it has now
/// (its high watermarks): after an upload answered, that is everything it produced.
pub async fn topic_records(prefix: &str) -> Vec<LocationEvent> {
    partition_records(prefix, None).await
}

/// Like [`topic_records`], of one partition only (`Some`) or of all.
pub async fn partition_records(prefix: &str, only: Option<i32>) -> Vec<LocationEvent> {
    let topic = format!("{prefix}.location-updates");
    // rdkafka's BaseConsumer blocks: keep it off the runtime that serves the stages.
    tokio::task::spawn_blocking(move || read_to_end(&topic, only))
        .await
        .expect("reader")
}

fn read_to_end(topic: &str, only: Option<i32>) -> Vec<LocationEvent> {
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = kafka::consumer_config(&brokers(), &unique("test-read-"))
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("metadata");
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        if only.is_some_and(|o| o != p.id()) {
            continue;
        }
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .expect("watermarks");
        if high > low {
            ends.push((p.id(), high));
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("tpl");
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next: Vec<(i32, i64)> = ends.iter().map(|(p, _)| (*p, 0)).collect();
    while next.iter().zip(&ends).any(|((_, at), (_, end))| at < end) {
        assert!(
            Instant::now() < deadline,
            "did not read the topic to its end"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("record");
            let at = next
                .iter_mut()
                .find(|(p, _)| *p == m.partition())
                .expect("a partition with records");
            at.1 = m.offset() + 1;
            out.push(
                nearby_schemas::decode::<LocationEvent>(m.payload().expect("payload"))
                    .expect("decodes"),
            );
        }
    }
    out
}

/// A location topic of one test's own, `test.ingest.<random>.location-updates` with
/// [`PARTITIONS`] partitions; [`TestTopic::delete`] removes it.
#[derive(Debug)]
pub struct TestTopic {
    /// The topic's name.
    pub name: String,
    /// The brokers it is on.
    pub brokers: String,
}

impl TestTopic {
    /// Creates the topic.
    pub async fn create() -> Self {
        let topics = nearby_common::Topics::new(&unique("test.ingest.")).expect("valid prefix");
        let name = topics.location_updates();
        crate::topics::create_topic(&name, PARTITIONS).await;
        Self {
            name,
            brokers: brokers(),
        }
    }

    /// Deletes the topic.
    pub async fn delete(self) {
        crate::topics::delete_topic(&self.name).await;
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

/// One record read back by [`TestTopic::read`].
#[derive(Debug)]
pub struct Record {
    /// Its key (a user id).
    pub key: String,
    /// Its offset in the partition.
    pub offset: i64,
    /// The decoded event.
    pub event: LocationEvent,
}
