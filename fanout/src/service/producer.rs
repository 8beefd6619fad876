//! Produces deliveries to the recipients' gateway topics without waiting for each ack: the
//! producer's own bounded queue batches them, and failures are counted by the delivery callback.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nearby_common::Topics;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use tracing::warn;

use crate::RoutedDelivery;

/// Counts what happened to produced deliveries.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Acked by the broker.
    pub delivered: AtomicU64,
    /// Failed after librdkafka's retries.
    pub failed: AtomicU64,
    /// Refused because the local queue stayed full.
    pub queue_full: AtomicU64,
}

/// The producer's context: counts outcomes.
#[derive(Debug, Clone)]
pub struct CountingContext(pub Arc<DeliveryCounters>);

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        match result {
            Ok(_) => self.0.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                warn!(error = %e, "delivery not produced");
                self.0.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// The delivery producer.
pub struct DeliveryProducer {
    producer: ThreadedProducer<CountingContext>,
    topics: Topics,
    topic_of: HashMap<Arc<str>, String>,
    buf: Vec<u8>,
    /// Outcome counters.
    pub counters: Arc<DeliveryCounters>,
}

impl std::fmt::Debug for DeliveryProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryProducer")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl DeliveryProducer {
    /// A producer on `brokers` whose local queue holds at most `queue` records.
    pub fn new(brokers: &str, topics: Topics, queue: usize) -> rdkafka::error::KafkaResult<Self> {
        let counters = Arc::new(DeliveryCounters::default());
        let mut config = nearby_common::kafka::producer_config(brokers);
        config
            .set("queue.buffering.max.messages", queue.to_string())
            // Deliveries are on their way to a screen: little batching delay.
            .set("linger.ms", "2");
        let producer = config.create_with_context(CountingContext(counters.clone()))?;
        Ok(Self {
            producer,
            topics,
            topic_of: HashMap::new(),
            buf: Vec::with_capacity(128),
            counters,
        })
    }

    /// Queues one delivery on its gateway's topic, keyed by the recipient. A full queue is
    /// retried briefly (the background thread drains it), then counted and dropped: a stale
    /// position is worth less than a stalled partition.
    pub async fn send(&mut self, routed: &RoutedDelivery) {
        let topic = match self.topic_of.get(&routed.gateway_id) {
            Some(t) => t.clone(),
            None => match self.topics.deliveries(&routed.gateway_id) {
                Ok(t) => {
                    self.topic_of.insert(routed.gateway_id.clone(), t.clone());
                    t
                }
                Err(e) => {
                    warn!(error = %e, "gateway id cannot name a topic; delivery dropped");
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        };
        self.buf.clear();
        if let Err(e) = nearby_schemas::encode(&routed.delivery, &mut self.buf) {
            warn!(error = %e, "delivery not encodable; dropped");
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let key = routed.delivery.recipient_id.to_string();
        for attempt in 0..50 {
            let record = BaseRecord::to(&topic).key(&key).payload(&self.buf);
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if attempt < 49 =>
                {
                    // Back-pressure: give the producer thread time to drain (about 100 ms in all).
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    warn!(error = %e, "delivery not queued");
                    self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Waits (bounded) for queued deliveries to be sent.
    pub fn flush(&self, timeout: std::time::Duration) {
        let _ = rdkafka::producer::Producer::flush(&self.producer, timeout);
    }
}
