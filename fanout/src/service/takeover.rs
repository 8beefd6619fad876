//! Partitions taken over: which of them may hold reports nobody fanned out (an owner killed, a
//! partition just added), since when, and the refresh that sends their users' state again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nearby_common::clock::now_ms;
use nearby_common::partition::partition_of_user;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::info;

use super::ownership;
use super::run::Running;

/// Added to the session timeout for how far back a takeover refreshes when the group's
/// commit cannot be read: the rebalance after the timeout, heartbeats and clocks (report times
/// are the phones') take a few seconds more.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(10);

/// Report times are the phones' clocks, marks the gateways': a takeover refresh reaches back
/// this much further than the first unfanned record's time.
const CLOCK_SLACK_MS: i64 = 5_000;

/// The longest a partition goes unowned when its instance dies: the session timeout, then the
/// rebalance, heartbeats and clocks.
pub(super) fn window_ms(session_timeout: Duration) -> anyhow::Result<i64> {
    Ok(i64::try_from(
        (session_timeout + TAKEOVER_MARGIN).as_millis(),
    )?)
}

/// From where a partition taken over may hold reports nobody fanned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Since {
    /// The group's committed offset (the previous owner's progress).
    Offset(i64),
    /// The partition's start: nothing was ever committed there.
    Start,
    /// The committed offset could not be read.
    Unknown,
}

/// Of `assigned`, the partitions where reports may have gone unfanned, and from where: no
/// offset committed, or one behind this instance's table reader (the previous owner was killed,
/// or stopped before it had read as far). A commit at or past the reader's position means
/// every report read there was fanned out already (a graceful hand-over).
async fn missed(
    group: Arc<StreamConsumer<ownership::OwnershipContext>>,
    topic: &str,
    assigned: Vec<i32>,
    progress: &ownership::Progress,
) -> Vec<(i32, Since)> {
    let mut asked = TopicPartitionList::new();
    for p in &assigned {
        asked.add_partition(topic, *p);
    }
    // A request to the group coordinator, which blocks its thread: off the runtime's workers,
    // and short, since the loop waits for it (a timeout refreshes the session-timeout window).
    let committed =
        tokio::task::spawn_blocking(move || group.committed_offsets(asked, Duration::from_secs(5)))
            .await;
    let Ok(Ok(committed)) = committed else {
        return assigned.into_iter().map(|p| (p, Since::Unknown)).collect();
    };
    // A copy: the lock is shared with the rebalance callbacks, held only for the copy.
    let next = progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assigned
        .into_iter()
        .filter_map(|p| {
            let ours = next.get(&p).copied().unwrap_or(0);
            match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(c)) if c >= ours => None,
                Some(Offset::Offset(c)) => Some((p, Since::Offset(c))),
                _ => Some((p, Since::Start)),
            }
        })
        .collect()
}

impl Running {
    /// The group gave this instance `assigned`. Reports read while nobody owned them (an
    /// instance killed, a partition just added) were applied to the table but fanned out by no
    /// one: their users' current state goes out again, only where something may have been
    /// missed and only since then. A graceful hand-over commits the old owner's progress on
    /// revoke, and the reports from that offset on are the ones nobody fanned out.
    pub(super) async fn on_assigned(&mut self, assigned: Vec<i32>) {
        // Assignments come from the group consumer, so it is there once one arrives.
        let Some(g) = &self.group else { return };
        let now = now_ms();
        let mut since_by_partition = HashMap::new();
        for (p, since) in missed(g.clone(), &self.topic, assigned, &self.progress).await {
            let since = match since {
                // The time of the committed offset, less the phones' clock slack.
                Since::Offset(c) => self
                    .checkpoints
                    .time_at(p, c)
                    .map_or(i64::MIN, |t| t - CLOCK_SLACK_MS),
                // Never committed (a new partition, a new group), or a commit
                // older than the marks: every active user of the partition.
                Since::Start => i64::MIN,
                // The group did not answer: the longest a gap lasts when an
                // instance dies.
                Since::Unknown => now - self.takeover_window_ms,
            };
            info!(
                partition = p,
                since, "partition taken over after a gap: its users' state since then sent again"
            );
            since_by_partition.insert(p, since);
        }
        let Some(&earliest) = since_by_partition.values().min() else {
            return;
        };
        let partition_count = self.partition_count;
        // One pass over the table for every partition taken over.
        let users = self.fanout.refresh(
            earliest,
            |u, ts| {
                since_by_partition
                    .get(&partition_of_user(u, partition_count))
                    .is_some_and(|s| ts >= *s)
            },
            now,
            &mut self.effects,
        );
        self.status
            .refreshed
            .fetch_add(users as u64, Ordering::Relaxed);
        self.flush().await;
    }
}
