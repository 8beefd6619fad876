//! Which partitions of the location topic this instance owns: a consumer in the fanout group
//! that fetches nothing (its partitions are paused as soon as they are assigned) and exists to
//! take part in the group's assignment and to commit how far fan-out got.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{info, warn};

/// The set of owned partitions, shared with the run loop.
pub type Owned = Arc<RwLock<BTreeSet<i32>>>;

/// The table reader's next offset per partition, shared with the run loop (which writes it
/// after each step) so a revoke can commit how far fan-out got.
pub type Progress = Arc<Mutex<HashMap<i32, i64>>>;

/// What the group consumer shares with the run loop.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The partitions owned now.
    pub owned: Owned,
    /// Raised at the first assignment (an instance may own no partition and still be in).
    pub joined: Arc<std::sync::atomic::AtomicBool>,
    /// How far the table reader got, committed from here.
    pub progress: Progress,
    /// Partitions newly assigned, for the run loop to refresh (see [`crate::Fanout::refresh`]).
    pub assigned: tokio::sync::mpsc::UnboundedSender<Vec<i32>>,
}

/// Keeps [`Owned`] in step with the group's assignment.
#[derive(Debug)]
pub struct OwnershipContext {
    shared: Shared,
    topic: String,
}

impl ClientContext for OwnershipContext {}

impl OwnershipContext {
    /// The table reader's progress in each of `partitions`, as offsets to commit.
    fn progress_of(&self, partitions: impl IntoIterator<Item = i32>) -> TopicPartitionList {
        let progress = self
            .shared
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            if let Some(next) = progress.get(&p) {
                let _ = tpl.add_partition_offset(&self.topic, p, rdkafka::Offset::Offset(*next));
            }
        }
        tpl
    }
}

impl ConsumerContext for OwnershipContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        // Stop fanning out the revoked partitions first, then record how far this instance got
        // (synchronously: the new owner may read the commit as soon as this returns).
        {
            let mut owned = self.shared.owned.write().unwrap_or_else(|p| p.into_inner());
            for e in tpl.elements() {
                owned.remove(&e.partition());
            }
        }
        let done = self.progress_of(tpl.elements().iter().map(|e| e.partition()));
        if done.count() > 0
            && let Err(e) = consumer.commit(&done, CommitMode::Sync)
        {
            warn!(error = %e, "commit on revoke failed");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Incremental (cooperative) assignment: partitions are added and revoked one by one;
        // revoked ones left `owned` in `pre_rebalance`, before their commit.
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        self.shared
            .joined
            .store(true, std::sync::atomic::Ordering::Release);
        // Paused: this consumer never fetches; the table reader sees every record.
        let _ = consumer.pause(tpl);
        let added: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let mut owned = self.shared.owned.write().unwrap_or_else(|p| p.into_inner());
        owned.extend(&added);
        info!(owned = ?*owned, "fanout partitions assigned");
        // The loop may be gone (stopping): nothing to refresh then.
        let _ = self.shared.assigned.send(added);
    }
}

/// Joins `group` on `topic`, keeping `shared` in step with the assignment. Poll the consumer
/// to keep the membership. A member silent for `session_timeout` (killed) loses its
/// partitions to the others.
pub fn join(
    brokers: &str,
    group: &str,
    topic: &str,
    session_timeout: std::time::Duration,
    shared: Shared,
) -> KafkaResult<StreamConsumer<OwnershipContext>> {
    let mut config = nearby_common::kafka::consumer_config(brokers, group);
    // Offsets are committed explicitly from the table reader's progress.
    config
        .set("enable.auto.commit", "false")
        .set(
            "session.timeout.ms",
            session_timeout.as_millis().to_string(),
        )
        // A member learns of a rebalance from a heartbeat's answer, so the heartbeat interval
        // bounds how long a partition of a leaving or joining instance goes without an owner:
        // once a second (at most a third of the session timeout, as Kafka advises) keeps that
        // pause short for one small request a second.
        .set(
            "heartbeat.interval.ms",
            (session_timeout.as_millis() / 3).min(1000).to_string(),
        );
    let consumer: StreamConsumer<OwnershipContext> =
        config.create_with_context(OwnershipContext {
            shared,
            topic: topic.to_owned(),
        })?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Commits the progress of the partitions still owned.
pub fn commit(consumer: &StreamConsumer<OwnershipContext>, mode: CommitMode) -> KafkaResult<()> {
    let ctx = consumer.context();
    let owned = ctx
        .shared
        .owned
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let tpl = ctx.progress_of(owned);
    if tpl.count() == 0 {
        return Ok(());
    }
    consumer.commit(&tpl, mode)
}
