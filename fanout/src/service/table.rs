//! The table reader: a consumer with no group that reads every partition of the location topic
//! from the first offset of `now - TTL`, where it starts and the end it must reach before the
//! table counts as rebuilt, and the watcher that notices partitions added to the topic later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nearby_common::clock::now_ms;
use nearby_common::lag::LagStats;
use nearby_common::startup::Startup;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ownership;
use super::run::Running;

/// How often the table reader's statistics (its per-partition lag) are refreshed.
const LAG_STATS_EVERY: Duration = Duration::from_secs(5);

/// How long a metadata or offsets request may take at start-up.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the table reader was put at start-up.
#[derive(Debug)]
pub(super) struct TableStart {
    /// The location topic's partitions at start-up.
    pub(super) partitions: i32,
    /// The end each partition had at start-up: the table is rebuilt once it is read that far.
    pub(super) high: HashMap<i32, i64>,
    /// The next offset to read per partition (shared with the group consumer, which commits
    /// it on revoke).
    pub(super) progress: ownership::Progress,
    /// When the reader was assigned (the rebuild's duration is logged from here).
    pub(super) rebuild_started: tokio::time::Instant,
}

/// The table reader, not assigned yet. Every instance reads every partition, so it has no
/// group to share them in: the group id is its own (a fresh uuid) and nothing is committed.
pub(super) fn reader(
    brokers: &str,
    group_id: &str,
    lag: LagStats,
) -> anyhow::Result<StreamConsumer<LagStats>> {
    let mut c = nearby_common::kafka::client_config(brokers);
    nearby_common::lag::with_lag_stats(&mut c, LAG_STATS_EVERY);
    c.set(
        "group.id",
        format!("{group_id}-table-{}", uuid::Uuid::new_v4().simple()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("auto.offset.reset", "earliest")
    // The broker answers a fetch as soon as one record is there (fetch.min.bytes 1):
    // the wait only bounds how often an idle reader asks again.
    .set("fetch.wait.max.ms", "100");
    Ok(c.create_with_context(lag)?)
}

/// Assigns `table` every partition of `topic` from the first offset of the last TTL window,
/// waiting (as long as `startup` allows) for the topic and its offsets.
pub(super) async fn assign_from_ttl(
    startup: &Startup,
    brokers: &str,
    table: &Arc<StreamConsumer<LagStats>>,
    topic: &str,
    ttl_ms: i64,
) -> anyhow::Result<TableStart> {
    // A topic created this instant has partitions without a leader for a moment: waited
    // for, as the offsets below are (a leader just elected may not answer at once).
    let partitions = startup.topic(brokers, topic).await?;
    let (start, high) = startup
        .retry(
            &format!("the offsets of (now - TTL) in topic {topic}"),
            || {
                let (table, topic) = (table.clone(), topic.to_owned());
                async move {
                    // Offsets requests block their thread: off the runtime's workers.
                    tokio::task::spawn_blocking(move || {
                        start_and_end(&table, &topic, partitions, ttl_ms)
                    })
                    .await
                    .map_err(|e| nearby_common::Error::Blocking(e.to_string()))?
                }
            },
        )
        .await?;
    table.assign(&start)?;
    let progress = ownership::Progress::default();
    {
        let mut next = progress.lock().unwrap_or_else(|p| p.into_inner());
        for e in start.elements() {
            // No offset at `now - TTL` (nothing that recent): the partition's end.
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => high.get(&e.partition()).copied().unwrap_or(0),
            };
            next.insert(e.partition(), at);
        }
    }
    let rebuild_started = tokio::time::Instant::now();
    info!(%topic, partitions, "table reader assigned from now - TTL");
    Ok(TableStart {
        partitions,
        high,
        progress,
        rebuild_started,
    })
}

/// Where the table reader starts in each partition (the first offset of `now - ttl`) and the
/// end each partition has now (the table is rebuilt once it is read that far). Blocking.
fn start_and_end(
    table: &StreamConsumer<LagStats>,
    topic: &str,
    partitions: i32,
    ttl_ms: i64,
) -> nearby_common::Result<(TopicPartitionList, HashMap<i32, i64>)> {
    let mut wanted = TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition_offset(topic, p, Offset::Offset(now_ms() - ttl_ms))?;
    }
    let start = table.offsets_for_times(wanted, KAFKA_TIMEOUT)?;
    let mut high = HashMap::new();
    for p in 0..partitions {
        let (_, h) = table.fetch_watermarks(topic, p, KAFKA_TIMEOUT)?;
        high.insert(p, h);
    }
    Ok((start, high))
}

/// How many partitions `topic` has now (0 if it does not exist): the watcher's count.
fn partitions_of<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topic: &str,
) -> anyhow::Result<i32> {
    let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
    let n = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    Ok(i32::try_from(n)?)
}

/// Reads the partition count of `topic` every `every` and sends it when it grows.
/// Asks with `reader`, the table reader itself (no other connection to the brokers).
/// A task of its own, so the run loop never waits on a metadata request.
pub(super) async fn watch_partitions(
    reader: Arc<StreamConsumer<LagStats>>,
    topic: String,
    every: Duration,
    count: tokio::sync::watch::Sender<i32>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        // A metadata request blocks its thread (briefly): off the runtime's workers.
        let (reader, t) = (reader.clone(), topic.clone());
        match tokio::task::spawn_blocking(move || partitions_of(&*reader, &t)).await {
            Ok(Ok(n)) if n > *count.borrow() => {
                let _ = count.send(n);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "partition count not read"),
            Err(e) => warn!(error = %e, "partition watcher failed"),
        }
    }
}

impl Running {
    /// The watcher saw the location topic grow to `count` partitions: the table reader reads
    /// the new ones too (and their progress starts at 0, for the group's commits).
    pub(super) fn on_partitions_grown(
        &mut self,
        table: &StreamConsumer<LagStats>,
        count: i32,
    ) -> anyhow::Result<()> {
        if count > self.partition_count {
            // New partitions are read from their start: every record on them came
            // after they were made, and the table needs them all.
            let mut added = TopicPartitionList::new();
            for p in self.partition_count..count {
                added.add_partition_offset(&self.topic, p, Offset::Beginning)?;
                self.progress
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(p, 0);
            }
            table.incremental_assign(&added)?;
            info!(
                from = self.partition_count,
                to = count,
                "partitions added to the location topic: reading them"
            );
            self.partition_count = count;
        }
        Ok(())
    }
}
