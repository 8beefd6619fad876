//! The Kafka side of ingest: one idempotent, murmur2-partitioned producer for the location
//! topic, a bounded queue whose "full" means "not ready, wait a little", and a send that
//! resolves only when the broker has acked the record.

use std::time::Duration;

use nearby_common::producer::AckedProducer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::Instant;

use crate::config::IngestConfig;
use crate::error::{IngestError, Result, is_retryable_produce_error};

/// How long to sleep between tries while the producer queue is full. Short: a batch leaves
/// the queue within milliseconds (`linger.ms` is 0) when the brokers keep up.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(10);

/// Where an acked record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// The location topic's producer.
pub(crate) struct LocationProducer {
    producer: AckedProducer,
    topic: String,
    queue_full_wait: Duration,
}

impl std::fmt::Debug for LocationProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocationProducer")
            .field("topic", &self.topic)
            .field("queue_full_wait", &self.queue_full_wait)
            .finish_non_exhaustive()
    }
}

impl LocationProducer {
    /// A producer for `topic` on `brokers`: the shared keyed-producer settings plus ingest's
    /// bounds on its queue and on how long a record may take to be delivered.
    pub(crate) fn new(brokers: &str, topic: String, config: &IngestConfig) -> Result<Self> {
        let mut client = nearby_common::kafka::producer_config(brokers);
        client
            .set(
                "queue.buffering.max.messages",
                config.ingest_queue_max_messages.to_string(),
            )
            .set(
                "message.timeout.ms",
                config.ingest_delivery_timeout.as_millis().to_string(),
            );
        let producer = AckedProducer::acked(&client).map_err(IngestError::Client)?;
        Ok(Self {
            producer,
            topic,
            queue_full_wait: config.ingest_queue_full_wait,
        })
    }

    /// Records handed to librdkafka and not yet acknowledged (queued or in flight).
    pub(crate) fn queued(&self) -> usize {
        self.producer.in_flight()
    }

    /// The topic this producer writes to.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces one record and waits for the broker's ack.
    ///
    /// Ordering: the record is handed to librdkafka synchronously on the first poll of this
    /// future, before any await, so records of one key enter the queue in the order the calls
    /// were made; the idempotent producer then keeps that order on the partition, retries
    /// included. Only while the queue is full does a call wait before enqueueing, and a caller
    /// that awaits each call (one task per user) still enqueues in order.
    pub(crate) async fn send(&self, key: &str, payload: &[u8]) -> Result<Written> {
        let mut deadline = None;
        let delivery = loop {
            match self.producer.send(&self.topic, key, payload) {
                Ok(delivery) => break delivery,
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    // Full is "not ready": wait for librdkafka to send a batch, but only for
                    // a bounded time, so a stalled cluster turns into errors, not a pile of
                    // waiting callers.
                    let deadline =
                        *deadline.get_or_insert_with(|| Instant::now() + self.queue_full_wait);
                    if Instant::now() >= deadline {
                        return Err(IngestError::QueueFull {
                            waited: self.queue_full_wait,
                        });
                    }
                    tokio::time::sleep(QUEUE_FULL_RETRY.min(self.queue_full_wait)).await;
                }
                Err(source) => return Err(self.produce_error(source)),
            }
        };
        match delivery.await {
            Ok((partition, offset)) => Ok(Written { partition, offset }),
            Err(source) => Err(self.produce_error(source)),
        }
    }

    /// Waits up to `timeout` for every queued record to be delivered (at shutdown: dropping
    /// the producer purges whatever is still queued).
    pub(crate) async fn flush(&self, timeout: Duration) -> Result<()> {
        // librdkafka's flush blocks its thread, so it runs where blocking is allowed.
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush_blocking(timeout))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
            .map_err(|source| self.produce_error(source))
    }

    fn produce_error(&self, source: KafkaError) -> IngestError {
        IngestError::Produce {
            topic: self.topic.clone(),
            retryable: is_retryable_produce_error(&source),
            source,
        }
    }
}
