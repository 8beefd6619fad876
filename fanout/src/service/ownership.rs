//! Which partitions of the location topic this instance owns: a consumer in the fanout group
//! that fetches nothing (its partitions are paused as soon as they are assigned) and exists to
//! take part in the group's assignment and to commit how far fan-out got.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::info;

/// The set of owned partitions, shared with the run loop.
pub type Owned = Arc<RwLock<BTreeSet<i32>>>;

/// Keeps [`Owned`] in step with the group's assignment.
#[derive(Debug)]
pub struct OwnershipContext {
    owned: Owned,
    joined: Arc<std::sync::atomic::AtomicBool>,
}

impl ClientContext for OwnershipContext {}

impl ConsumerContext for OwnershipContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Incremental (cooperative) assignment: partitions are added and revoked one by one.
        let mut owned = self.owned.write().unwrap_or_else(|p| p.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.joined
                    .store(true, std::sync::atomic::Ordering::Release);
                // Paused: this consumer never fetches; the table reader sees every record.
                let _ = consumer.pause(tpl);
                for e in tpl.elements() {
                    owned.insert(e.partition());
                }
            }
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    owned.remove(&e.partition());
                }
            }
            Rebalance::Error(_) => {}
        }
        info!(owned = ?*owned, "fanout partitions assigned");
    }
}

/// Joins `group` on `topic`; returns the consumer (poll it to keep membership), the set, and a
/// flag raised at the first assignment (an instance may own no partition and still be in).
pub fn join(
    brokers: &str,
    group: &str,
    topic: &str,
) -> KafkaResult<(
    StreamConsumer<OwnershipContext>,
    Owned,
    Arc<std::sync::atomic::AtomicBool>,
)> {
    let owned = Owned::default();
    let joined = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut config = nearby_common::kafka::consumer_config(brokers, group);
    // Offsets are committed explicitly from the table reader's progress.
    config.set("enable.auto.commit", "false");
    let consumer: StreamConsumer<OwnershipContext> =
        config.create_with_context(OwnershipContext {
            owned: owned.clone(),
            joined: joined.clone(),
        })?;
    consumer.subscribe(&[topic])?;
    Ok((consumer, owned, joined))
}

/// Commits `positions` (next offsets to read) for the partitions still owned.
pub fn commit(
    consumer: &StreamConsumer<OwnershipContext>,
    owned: &Owned,
    topic: &str,
    positions: &[(i32, i64)],
) -> KafkaResult<()> {
    let owned = owned.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut tpl = TopicPartitionList::new();
    for (p, next) in positions {
        if owned.contains(p) {
            tpl.add_partition_offset(topic, *p, rdkafka::Offset::Offset(*next))?;
        }
    }
    if tpl.count() == 0 {
        return Ok(());
    }
    consumer.commit(&tpl, rdkafka::consumer::CommitMode::Async)
}
