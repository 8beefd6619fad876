//! Produces deliveries to the recipients' gateway topics without waiting for each ack: the
//! producer's own bounded queue batches them, and failures are counted by the delivery callback.
//!
//! One fanout step (a report, a change, a sweep) becomes one `DeliveryBatch` record per gateway
//! holding all of that step's deliveries for it, in order: a report's friends cost the gateway
//! one record to fetch and decode instead of one each. Every record goes to partition 0 of the
//! gateway's topic, so the gateway reads them in the order fanout made them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nearby_common::Topics;
use nearby_common::producer::Polled;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use tracing::warn;

use nearby_schemas::DeliveryBatch;

use crate::RoutedDelivery;

/// Most deliveries in one record; a larger step is split (in order) over several records, which
/// keeps a record far below the broker's 1 MB default (a delivery is about 45 bytes).
pub const MAX_BATCH: usize = 1000;

/// Counts what happened to produced deliveries.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Deliveries acked by the broker.
    pub delivered: AtomicU64,
    /// Records (batches) acked by the broker.
    pub records: AtomicU64,
    /// Deliveries that failed after librdkafka's retries (or could not be encoded).
    pub failed: AtomicU64,
    /// Deliveries refused because the local queue stayed full.
    pub queue_full: AtomicU64,
}

/// The producer's context: counts outcomes.
#[derive(Debug, Clone)]
pub struct CountingContext(pub Arc<DeliveryCounters>);

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    /// How many deliveries the record holds.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, count: usize) {
        let count = count as u64;
        match result {
            Ok(_) => {
                self.0.records.fetch_add(1, Ordering::Relaxed);
                self.0.delivered.fetch_add(count, Ordering::Relaxed)
            }
            Err((e, _)) => {
                warn!(error = %e, count, "deliveries not produced");
                self.0.failed.fetch_add(count, Ordering::Relaxed)
            }
        };
    }
}

/// `deliveries` grouped by gateway in one pass (a step may reach many gateways), the gateways
/// in order of first appearance and each group in step order.
fn by_gateway(deliveries: &[RoutedDelivery]) -> Vec<(&Arc<str>, DeliveryBatch)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<(&Arc<str>, DeliveryBatch)> = Vec::new();
    // Runs of one gateway are the rule (a gateway holds many of a user's friends; every
    // delivery of a bench's backlog goes to one): the previous delivery's group is tried first,
    // by pointer (gateway ids are interned) and then by value, before the map is hashed — the
    // map's hashing and string compares were a fifth of fanout's CPU at saturation.
    let mut last: Option<usize> = None;
    for d in deliveries {
        let at = match last {
            Some(i) if Arc::ptr_eq(groups[i].0, &d.gateway_id) || *groups[i].0 == d.gateway_id => i,
            _ => *index.entry(&*d.gateway_id).or_insert_with(|| {
                groups.push((&d.gateway_id, DeliveryBatch::default()));
                groups.len() - 1
            }),
        };
        last = Some(at);
        groups[at].1.deliveries.push(d.delivery);
    }
    groups
}

/// The delivery producer.
pub struct DeliveryProducer {
    producer: Polled<CountingContext>,
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
    /// Outcomes are counted in `counters`.
    pub fn new(
        brokers: &str,
        topics: Topics,
        queue: usize,
        counters: Arc<DeliveryCounters>,
    ) -> rdkafka::error::KafkaResult<Self> {
        let mut config = nearby_common::kafka::producer_config(brokers);
        // No batching delay (`linger.ms` 0) comes with `producer_config`: deliveries are on
        // their way to a screen, and a step's are one record per gateway already.
        config.set("queue.buffering.max.messages", queue.to_string());
        let producer = Polled::new(&config, CountingContext(counters.clone()))?;
        Ok(Self {
            producer,
            topics,
            topic_of: HashMap::new(),
            buf: Vec::with_capacity(4096),
            counters,
        })
    }

    /// Records queued in the producer and not yet acknowledged.
    pub fn queued(&self) -> usize {
        self.producer.in_flight()
    }

    /// Queues `deliveries` (one fanout step's, in order) as one record per gateway, split in
    /// records of at most [`MAX_BATCH`]. The order among one gateway's deliveries is kept;
    /// deliveries to different gateways are independent.
    pub async fn send_all(&mut self, deliveries: &[RoutedDelivery]) {
        for (gateway, batch) in by_gateway(deliveries) {
            if batch.deliveries.len() <= MAX_BATCH {
                self.send_record(gateway, &batch).await;
            } else {
                for chunk in batch.deliveries.chunks(MAX_BATCH) {
                    let part = DeliveryBatch {
                        deliveries: chunk.to_vec(),
                    };
                    self.send_record(gateway, &part).await;
                }
            }
        }
    }

    /// Queues `record` on `gateway`'s topic. A full queue is retried briefly (the
    /// background thread drains it), then counted and dropped: a stale position is worth less
    /// than a stalled partition.
    async fn send_record(&mut self, gateway: &Arc<str>, record: &DeliveryBatch) {
        let count = record.deliveries.len();
        let topic = match self.topic_of.get(gateway) {
            Some(t) => t.clone(),
            None => match self.topics.deliveries(gateway) {
                Ok(t) => {
                    self.topic_of.insert(gateway.clone(), t.clone());
                    t
                }
                Err(e) => {
                    warn!(error = %e, "gateway id cannot name a topic; deliveries dropped");
                    self.counters
                        .failed
                        .fetch_add(count as u64, Ordering::Relaxed);
                    return;
                }
            },
        };
        self.buf.clear();
        DeliveryBatch::encode_deliveries(&record.deliveries, &mut self.buf);
        for attempt in 0..50 {
            // Partition 0 always: the gateway reads its topic in this order (a topic made with
            // more partitions still works; the others stay empty).
            // No key (null): the partition is chosen here, not by hashing.
            let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&topic, count)
                .partition(0)
                .payload(&self.buf);
            match self.producer.producer().send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if attempt < 49 =>
                {
                    // Back-pressure: give the producer thread time to drain (about 100 ms in all).
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    warn!(error = %e, "deliveries not queued");
                    self.counters
                        .queue_full
                        .fetch_add(count as u64, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Waits (bounded) for queued deliveries to be sent.
    pub fn flush(&self, timeout: std::time::Duration) {
        let _ = self.producer.flush_blocking(timeout);
    }
}

#[cfg(test)]
mod tests {
    use nearby_schemas::{Delivery, DeliveryPayload, FriendLeft, LeftReason};

    use super::*;

    fn to(gateway: &str, recipient: i64) -> RoutedDelivery {
        RoutedDelivery {
            gateway_id: Arc::from(gateway),
            delivery: Delivery {
                recipient_id: recipient,
                payload: DeliveryPayload::FriendLeft(FriendLeft {
                    friend_id: 1,
                    reason: LeftReason::OutOfRange,
                }),
            },
        }
    }

    #[test]
    fn groups_keep_each_gateways_order() {
        // Separate Arcs with equal names are one gateway, in a run or not; one Arc in a run too.
        let c = Arc::<str>::from("c");
        let to_c = |recipient| RoutedDelivery {
            gateway_id: c.clone(),
            ..to("c", recipient)
        };
        let step = [
            to("a", 1),
            to("a", 7),
            to("b", 2),
            to("a", 3),
            to_c(4),
            to_c(8),
            to("b", 5),
            to("a", 6),
        ];
        let groups: Vec<(String, Vec<i64>)> = by_gateway(&step)
            .into_iter()
            .map(|(g, b)| {
                (
                    g.to_string(),
                    b.deliveries.iter().map(|d| d.recipient_id).collect(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            [
                ("a".to_owned(), vec![1, 7, 3, 6]),
                ("b".to_owned(), vec![2, 5]),
                ("c".to_owned(), vec![4, 8]),
            ]
        );
        assert!(by_gateway(&[]).is_empty());
    }
}
