//! Kafka client setup shared by every stage: the base client configuration, the producer that
//! places keys where Java clients would, the at-least-once consumer, and idempotent topic creation.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, Result};

/// How long an admin or metadata request may take before it fails.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings every client shares.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Partitions added to a topic are seen within 10 s (librdkafka's default is 5 min):
        // producers spread keys over them and consumer groups share them that soon. A metadata
        // request every 10 s per client costs the broker next to nothing.
        .set("topic.metadata.refresh.interval.ms", "10000")
        // A broker back from a restart is reached again within a second (librdkafka's backoff
        // doubles up to 10 s by default: after a 23 s outage, deliveries resumed only 10 s
        // after the broker answered, and reports sent at its death timed out). One connection
        // attempt a second per client while a broker is down costs nothing.
        .set("reconnect.backoff.max.ms", "1000");
    config
}

/// A producer configuration for keyed records.
///
/// `murmur2_random` is librdkafka's name for the Java producer's default partitioner, so a key
/// lands on the partition any Java (or Kafka Streams) client would pick; per-key order holds
/// because the producer is idempotent (no reordering on retry with up to 5 requests in flight).
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // No batching delay: at the default load (reports ~6 ms apart) a 5 ms linger batched
        // little and added its 5 ms to every report's way to a screen (p50 11.5 -> 4.3 ms with
        // linger 0 at ingest and fanout, the CPU within the noise). At high rates librdkafka
        // still batches what queues while a request is in flight (docs/PERFORMANCE.md).
        .set("linger.ms", "0")
        .set("compression.type", "lz4");
    config
}

/// A consumer configuration for at-least-once processing: offsets are stored by the caller only
/// after its output is written, and committed in the background from what was stored.
pub fn consumer_config(brokers: &str, group_id: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky");
    config
}

/// Assigns `consumer` every partition of `topic`, each from the end it has now, read before the
/// assignment: every record produced once this returns is read, none before. For topics whose
/// older records are stale to this reader (deliveries, change notices), and where no group
/// shares the work (each reader needs them all).
pub fn assign_from_end<X, C>(consumer: &C, topic: &str) -> Result<()>
where
    X: rdkafka::consumer::ConsumerContext,
    C: rdkafka::consumer::Consumer<X>,
{
    let metadata = consumer.fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), ADMIN_TIMEOUT)?;
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Offset(high))?;
        }
    }
    if tpl.count() == 0 {
        return Err(Error::Kafka(rdkafka::error::KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        )));
    }
    consumer.assign(&tpl)?;
    Ok(())
}

/// The next record of `consumer`, or `None` once `shutdown` is cancelled. Shutdown is looked at
/// first (`biased`): a reader that is always busy still stops at once, and a record read after
/// the stop was asked for would be worthless (its socket, its cache entry is going away).
pub async fn recv_or_stop<'c, X: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &'c rdkafka::consumer::StreamConsumer<X>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'c>>> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        msg = consumer.recv() => Some(msg),
    }
}

/// An admin client for topic management.
pub fn admin_client(brokers: &str) -> Result<AdminClient<DefaultClientContext>> {
    Ok(client_config(brokers).create()?)
}

/// Asks the cluster for its metadata, to fail fast (with the address) when no broker answers.
/// Blocks the calling thread for up to `timeout`.
pub fn probe(
    admin: &AdminClient<DefaultClientContext>,
    brokers: &str,
    timeout: Duration,
) -> Result<()> {
    admin
        .inner()
        .fetch_metadata(None, timeout)
        .map(|_| ())
        .map_err(|source| Error::Unreachable {
            brokers: brokers.to_owned(),
            timeout,
            source,
        })
}

/// What a topic should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic's name.
    pub name: String,
    /// Partition count at creation.
    pub partitions: i32,
    /// Replication factor at creation.
    pub replication: i32,
    /// `retention.ms`: how long records are kept.
    pub retention: Duration,
}

/// What [`ensure_topics`] found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    /// The topic did not exist and was created as asked.
    Created(TopicSpec),
    /// The topic existed; its current partition count and retention are reported, and left
    /// unchanged (changing partitions moves keys, so that is a deliberate, separate step).
    Exists {
        /// The spec that was asked for.
        asked: TopicSpec,
        /// Its partition count on the broker.
        partitions: i32,
        /// Its `retention.ms` on the broker, if the broker reported one.
        retention_ms: Option<i64>,
    },
}

/// Creates each topic that does not exist yet; an existing one is described and left as it is,
/// so the call can be repeated safely.
pub async fn ensure_topics(
    admin: &AdminClient<DefaultClientContext>,
    specs: &[TopicSpec],
) -> Result<Vec<TopicOutcome>> {
    let retention: Vec<String> = specs
        .iter()
        .map(|s| s.retention.as_millis().to_string())
        .collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&retention)
        .map(|(s, ms)| {
            NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            )
            .set("retention.ms", ms)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin.create_topics(&new_topics, &opts).await?;
    let mut outcomes = Vec::with_capacity(specs.len());
    for (spec, result) in specs.iter().zip(results) {
        match result {
            Ok(_) => outcomes.push(TopicOutcome::Created(spec.clone())),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let (partitions, retention_ms) = describe_topic(admin, &spec.name).await?;
                outcomes.push(TopicOutcome::Exists {
                    asked: spec.clone(),
                    partitions,
                    retention_ms,
                });
            }
            Err((topic, code)) => return Err(Error::Topic { topic, code }),
        }
    }
    Ok(outcomes)
}

/// The partition count and `retention.ms` of an existing topic.
pub async fn describe_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<(i32, Option<i64>)> {
    let partitions = partition_count(admin, topic)?;
    let opts = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
        .await?;
    let mut retention_ms = None;
    for resource in configs {
        let resource = resource.map_err(|code| Error::Topic {
            topic: topic.to_owned(),
            code,
        })?;
        if resource.specifier == OwnedResourceSpecifier::Topic(topic.to_owned()) {
            retention_ms = resource
                .get("retention.ms")
                .and_then(|e| e.value.as_deref())
                .and_then(|v| v.parse().ok());
        }
    }
    Ok((partitions, retention_ms))
}

/// The number of partitions of `topic`, from a metadata request.
pub fn partition_count(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<i32> {
    let metadata = admin.inner().fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::Topic {
            topic: topic.to_owned(),
            code: RDKafkaErrorCode::UnknownTopicOrPartition,
        });
    };
    if let Some(err) = t.error() {
        return Err(Error::Topic {
            topic: topic.to_owned(),
            code: err.into(),
        });
    }
    i32::try_from(t.partitions().len()).map_err(|_| Error::Topic {
        topic: topic.to_owned(),
        code: RDKafkaErrorCode::InvalidPartitions,
    })
}

/// Deletes topics (tests clean up after themselves with this). Missing topics are not an error.
pub async fn delete_topics(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[&str],
) -> Result<()> {
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    for result in admin.delete_topics(topics, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => return Err(Error::Topic { topic, code }),
        }
    }
    Ok(())
}

/// How far a consumer group is behind on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (`None`: it never committed here).
    pub committed: Option<i64>,
    /// The partition's log start and end (high watermark).
    pub low: i64,
    /// The high watermark.
    pub high: i64,
    /// Records not yet committed: high − committed (from the log start when nothing is).
    pub lag: i64,
}

/// `group`'s lag on each partition of `topic`, read with a consumer that carries the group's id
/// but never subscribes: it does not join the group or move its offsets. Blocking (a few
/// metadata and offset requests).
pub fn group_lag(brokers: &str, group: &str, topic: &str) -> Result<Vec<PartitionLag>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = {
        let mut config = client_config(brokers);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false");
        config.create()?
    };
    let metadata = consumer.fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    partitions.sort_unstable();
    let mut asked = rdkafka::TopicPartitionList::new();
    for &p in &partitions {
        asked.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(asked, ADMIN_TIMEOUT)?;
    partitions
        .into_iter()
        .map(|p| {
            let (low, high) = consumer.fetch_watermarks(topic, p, ADMIN_TIMEOUT)?;
            let committed = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(rdkafka::Offset::Offset(o)) => Some(o),
                _ => None,
            };
            Ok(PartitionLag {
                partition: p,
                committed,
                low,
                high,
                lag: (high - committed.unwrap_or(low)).max(0),
            })
        })
        .collect()
}
