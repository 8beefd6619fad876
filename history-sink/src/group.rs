//! `SinkContext`: the sink's part in its consumer group — which partitions this instance holds,
//! the positions it stored in them, a commit of those positions when a rebalance takes
//! partitions away, and the lag of each held partition from librdkafka's statistics.
//!
//! Every callback here runs on the thread polling the consumer, inside the run loop's
//! `recv()`, so nothing here runs at the same time as the loop: the locks are never contended.
//! They do as little as possible; the one blocking call is the commit of revoked partitions.
//!
//! The lag is [`LagFrom::Stored`] from librdkafka's statistics (see `nearby_common::lag`): a
//! partition the sink has stored nothing in yet (just assigned, its first records queued behind
//! other partitions' during a catch-up) counts from the group's committed offset. Statistics
//! are delivered by the same polling as records, and the loop stops polling while every write
//! slot is taken (the CQL store down or slow): the lag then keeps its last value until writes
//! move again, and the `in_flight` gauge at its maximum with `retries` rising tells that state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use nearby_common::lag::{LagFrom, lag_by_partition};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::status::SinkStatus;

/// How often librdkafka emits its statistics, which carry each partition's lag (its
/// granularity is one second).
pub const STATISTICS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The consumer's context: the group's callbacks and the statistics.
#[derive(Debug)]
pub struct SinkContext {
    topic: String,
    status: Arc<SinkStatus>,
    /// Per held partition, the last position stored for commit (every row before it is
    /// written). Only partitions of the current assignment: a revoked one is removed.
    stored: Mutex<BTreeMap<i32, i64>>,
    /// Partitions revoked, for the run loop to forget their writes still in flight.
    revoked: mpsc::UnboundedSender<Vec<i32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SinkContext {
    /// A context for a consumer of `topic` that reports into `status`; revoked partitions are
    /// sent on `revoked`.
    pub fn new(
        topic: String,
        status: Arc<SinkStatus>,
        revoked: mpsc::UnboundedSender<Vec<i32>>,
    ) -> Self {
        Self {
            topic,
            status,
            stored: Mutex::default(),
            revoked,
        }
    }

    /// Records that `position` was stored for `partition`.
    pub fn stored(&self, partition: i32, position: i64) {
        lock(&self.stored).insert(partition, position);
    }

    /// The positions stored in the partitions held now.
    pub fn stored_positions(&self) -> BTreeMap<i32, i64> {
        lock(&self.stored).clone()
    }

    /// The partitions of this context's topic in `tpl`.
    fn partitions_of(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(rdkafka::topic_partition_list::TopicPartitionListElem::partition)
            .collect()
    }
}

impl ClientContext for SinkContext {
    fn stats(&self, statistics: Statistics) {
        // Counted from the positions stored for commit: what is written, not what is read.
        let lag = lag_by_partition(&statistics, Some(&self.topic), LagFrom::Stored);
        *lock(&self.status.lag) = lag.into_iter().collect();
    }
}

impl ConsumerContext for SinkContext {
    /// Before partitions are taken away: commit, synchronously, the positions stored in them,
    /// so their next owner starts right after the last row written here.
    ///
    /// librdkafka does the same on its own when `enable.auto.commit=true` (our setting): when
    /// it removes partitions from the assignment it commits their stored offsets ("unassigned
    /// partitions" in `rd_kafka_assignment_serve_removals`), and the group waits for that commit
    /// before it rejoins; it skips it when the assignment was lost, and it resets the stored
    /// offsets of removed partitions so a later commit never carries them. The commit here makes
    /// the hand-over independent of the auto-commit setting and logs its outcome; committing the
    /// same offsets twice is harmless. A write of a revoked partition that ends later stores
    /// nothing: `store_offsets` fails for a partition not assigned, and the loop forgets the
    /// partition's writes ([`crate::Progress::forget`]).
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let positions: Vec<(i32, i64)> = {
            let mut stored = lock(&self.stored);
            self.partitions_of(revoked)
                .into_iter()
                .filter_map(|p| stored.remove(&p).map(|o| (p, o)))
                .collect()
        };
        if positions.is_empty() {
            return;
        }
        if consumer.assignment_lost() {
            // The group has moved on without us (session timed out): a commit would be refused.
            warn!(partitions = ?positions, "assignment lost: stored positions not committed; the next owners read again from the last commit");
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &(partition, position) in &positions {
            let _ = tpl.add_partition_offset(&self.topic, partition, Offset::Offset(position));
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                info!(partitions = ?positions, "revoked partitions: stored positions committed")
            }
            Err(e) => {
                warn!(error = %e, partitions = ?positions, "revoked partitions: commit failed; the next owners read again from the last commit")
            }
        }
    }

    /// After a rebalance: the set of held partitions, and readiness (the first assignment, even
    /// of no partition, means the group has taken this instance in).
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let held = {
            let mut held = lock(&self.status.partitions);
            match rebalance {
                Rebalance::Assign(tpl) => {
                    held.extend(self.partitions_of(tpl));
                    self.status.joined.store(true, Ordering::Relaxed);
                }
                Rebalance::Revoke(tpl) => {
                    let revoked = self.partitions_of(tpl);
                    for p in &revoked {
                        held.remove(p);
                    }
                    // The loop may be gone already (the consumer closes after it).
                    let _ = self.revoked.send(revoked);
                }
                Rebalance::Error(e) => {
                    warn!(error = %e, "rebalance failed");
                    return;
                }
            }
            held.clone()
        };
        info!(partitions = ?held, "history sink partitions held");
    }
}

/// The held partitions, for the metrics: their count and, per partition, the lag.
pub fn held_and_lag(status: &SinkStatus) -> (BTreeSet<i32>, Vec<(String, i64)>) {
    let held = lock(&status.partitions).clone();
    let lag = lock(&status.lag)
        .iter()
        .filter(|(p, _)| held.contains(p))
        .map(|(p, lag)| (p.to_string(), *lag))
        .collect();
    (held, lag)
}
