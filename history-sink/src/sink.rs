//! `HistorySink`: the consumer loop. Records are read in the group's partitions, each position
//! written to `location_history` by its own task (at most `max_in_flight` at once), retried
//! with backoff until written; an offset is stored for the background commit only when every
//! record before it is written ([`Progress`]), so a crash at any point re-reads, and rewrites
//! as the same rows, only what might not be in the table. The group's side (held partitions,
//! the commit when partitions are revoked, lag) is in [`crate::group`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nearby_common::clock::now_s;
use nearby_common::history::{HistoryRow, HistoryStore};
use nearby_common::shutdown::Shutdown;
use nearby_common::stage::Listeners;
use nearby_schemas::{LocationBody, LocationEvent};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::SinkConfig;
use crate::group::{STATISTICS_INTERVAL, SinkContext};
use crate::progress::Progress;

/// The sink's consumer.
type SinkConsumer = StreamConsumer<SinkContext>;

/// What the admin port reports.
#[derive(Debug, Default)]
pub struct SinkStatus {
    /// The group has assigned this instance its partitions (possibly none) at least once.
    pub joined: AtomicBool,
    /// The instance is stopping (draining its writes): no longer ready.
    pub stopping: AtomicBool,
    /// The partitions of the location topic this instance holds now.
    pub partitions: Mutex<BTreeSet<i32>>,
    /// Per held partition, records not written yet, from librdkafka's latest statistics (see
    /// [`crate::group`]); a partition shows once its first statistics after assignment came.
    pub lag: Mutex<BTreeMap<i32, i64>>,
    /// Rows written (a rewrite after a redelivery counts again).
    pub rows: AtomicU64,
    /// Failed writes that were tried again.
    pub retries: AtomicU64,
    /// Records that could not be decoded (logged, counted, skipped).
    pub poison: AtomicU64,
    /// Records that are not positions (connects, disconnects): nothing to keep.
    pub skipped: AtomicU64,
    /// Writes in flight now.
    pub in_flight: AtomicU64,
    /// Offsets stored for commit.
    pub stored: AtomicU64,
    /// Writes still unconfirmed when a stop's drain ended: left to the partition's next reader.
    pub abandoned: AtomicU64,
    /// The second of the last "writes failing" log line (to write one a second at most).
    pub last_warn_s: AtomicU64,
}

impl SinkStatus {
    /// Ready: taken into the group (its partitions assigned, even if no record came yet) and
    /// not stopping.
    pub fn is_ready(&self) -> bool {
        self.joined.load(Ordering::Relaxed) && !self.stopping.load(Ordering::Relaxed)
    }
}

/// A sink instance, connected to the CQL store.
#[derive(Debug)]
pub struct HistorySink {
    config: SinkConfig,
    store: Arc<HistoryStore>,
    /// Shared with the admin port.
    pub status: Arc<SinkStatus>,
}

/// The next wait of a backoff that starts at `min` and doubles up to `max`.
fn next_backoff(current: Duration, max: Duration) -> Duration {
    (current * 2).min(max)
}

impl HistorySink {
    /// Checks the configuration, connects to the CQL store and creates the keyspace and table
    /// if missing, and waits for the location topic's leaders: each waited for, while it does
    /// not answer yet, as long as `NEARBY_STARTUP_TIMEOUT` allows.
    pub async fn build(config: SinkConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let stack = &config.stack;
        let startup = stack.startup();
        let store = startup
            .retry("the CQL store and the location history table", || async {
                let session = nearby_common::cql::connect(&stack.cql_nodes).await?;
                nearby_common::cql::create_keyspace(
                    &session,
                    &stack.cql_keyspace,
                    config.replication,
                )
                .await?;
                nearby_common::history::create_table(&session, &stack.cql_keyspace).await?;
                HistoryStore::new(session, &stack.cql_keyspace).await
            })
            .await?;
        // Subscribing to a missing topic would wait silently: a missing one is named instead.
        startup
            .topic(&stack.kafka_brokers, &stack.topics()?.location_updates())
            .await?;
        Ok(Self {
            config,
            store: Arc::new(store),
            status: Arc::default(),
        })
    }

    /// Runs until `shutdown` asks for a stop, serving the admin port; then waits (bounded by
    /// the drain timeout, cut short by a stop at once) for the writes in flight and commits
    /// what is written; the writes left are counted as abandoned. An error when the consumer
    /// cannot go on (a fatal Kafka error, such as another instance with the same
    /// `--instance-id`), after the same drain and commit.
    pub async fn run(self, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
        let admin = listeners.admin;
        let (shutdown, cut) = (shutdown.graceful().clone(), shutdown.now().clone());
        let stack = &self.config.stack;
        let topic = stack.topics()?.location_updates();
        let mut client =
            nearby_common::kafka::consumer_config(&stack.kafka_brokers, &self.config.group_id);
        client.set(
            "session.timeout.ms",
            self.config.session_timeout.as_millis().to_string(),
        );
        // The statistics carry each held partition's lag (see `crate::group`).
        nearby_common::lag::with_lag_stats(&mut client, STATISTICS_INTERVAL);
        if let Some(id) = &self.config.instance_id {
            client.set("group.instance.id", id);
        }
        // Partitions revoked in a rebalance come back here, for `progress` to forget.
        let (revoked_tx, mut revoked_rx) = mpsc::unbounded_channel::<Vec<i32>>();
        let consumer: SinkConsumer = client.create_with_context(SinkContext::new(
            topic.clone(),
            self.status.clone(),
            revoked_tx,
        ))?;
        consumer.subscribe(&[&topic])?;
        // The admin port stays up through the stop (readiness off, the drain on `/metrics`) and
        // closes last.
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(nearby_common::admin::serve(
            admin,
            self.status.clone(),
            admin_stop.clone(),
        ));
        info!(%topic, group = %self.config.group_id, keyspace = %stack.cql_keyspace, "history sink started");

        // The bound on writes in flight: the loop reads a record only when a permit is free, so
        // a slow or absent CQL store stops the reading rather than filling memory.
        let permits = Arc::new(Semaphore::new(self.config.max_in_flight));
        // Finished writes come back here; the loop alone touches `progress` and the consumer.
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(i32, i64)>();
        // Cancelled at the end of the drain: writes still retrying give up, uncommitted.
        let abandon = CancellationToken::new();
        let mut progress = Progress::default();
        // Why the run ends early, if it does.
        let mut failure = None;

        loop {
            tokio::select! {
                // Revocations before completions (a completion of a revoked partition must not
                // move its position), completions before reading: they free permits and move
                // the committed position. Rebalance callbacks run inside `recv`.
                biased;
                () = shutdown.cancelled() => break,
                Some(revoked) = revoked_rx.recv() => {
                    let dropped: usize = revoked.iter().map(|&p| progress.forget(p)).sum();
                    if dropped > 0 {
                        info!(partitions = ?revoked, writes = dropped, "revoked partitions: their writes in flight will not be committed here");
                    }
                }
                Some((partition, offset)) = done_rx.recv() => {
                    self.finished(&consumer, &topic, &mut progress, partition, offset);
                }
                msg = consumer.recv(), if permits.available_permits() > 0 => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => {
                            if let Some((code, reason)) = consumer.client().fatal_error() {
                                error!(error = %e, ?code, %reason, "fatal consumer error: stopping");
                                failure = Some(anyhow::anyhow!("fatal consumer error: {code:?}: {reason}"));
                                break;
                            }
                            warn!(error = %e, "location consume error");
                            continue;
                        }
                    };
                    let (partition, offset) = (msg.partition(), msg.offset());
                    progress.begin(partition, offset);
                    let row = match msg.payload().map(nearby_schemas::decode::<LocationEvent>) {
                        Some(Ok(event)) => match event.body {
                            LocationBody::Position(r) => Some(HistoryRow {
                                user_id: event.user_id,
                                ts: event.ts,
                                lat: r.lat,
                                lon: r.lon,
                                accuracy_m: r.accuracy_m,
                                received_at: event.received_at,
                            }),
                            LocationBody::Connected(_) | LocationBody::Disconnected(_) => {
                                self.status.skipped.fetch_add(1, Ordering::Relaxed);
                                None
                            }
                        },
                        Some(Err(e)) => {
                            // A poison record is logged, counted and skipped: it must not stop
                            // the history of everyone else.
                            warn!(error = %e, partition, offset, "undecodable location event skipped");
                            self.status.poison.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                        None => {
                            self.status.poison.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                    };
                    let Some(row) = row else {
                        self.finished(&consumer, &topic, &mut progress, partition, offset);
                        continue;
                    };
                    let permit = permits.clone().try_acquire_owned().expect("a permit was free");
                    self.status.in_flight.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(write(
                        self.store.clone(),
                        row,
                        (partition, offset),
                        self.status.clone(),
                        (self.config.retry_min, self.config.retry_max),
                        done_tx.clone(),
                        abandon.clone(),
                        permit,
                    ));
                }
            }
        }

        // Not ready from here on: `/readyz` answers 503 ("stopping") until the port closes.
        self.status.stopping.store(true, Ordering::Relaxed);
        info!(
            in_flight = progress.in_flight(),
            "history sink stopping: draining writes"
        );
        let deadline = tokio::time::Instant::now() + self.config.drain_timeout;
        while progress.in_flight() > 0 {
            tokio::select! {
                () = cut.cancelled() => break,
                done = tokio::time::timeout_at(deadline, done_rx.recv()) => match done {
                    Ok(Some((partition, offset))) => {
                        self.finished(&consumer, &topic, &mut progress, partition, offset);
                    }
                    _ => break,
                },
            }
        }
        // Writes that ended just as the drain did still count.
        while let Ok((partition, offset)) = done_rx.try_recv() {
            self.finished(&consumer, &topic, &mut progress, partition, offset);
        }
        // Whatever is still retrying is left to the next reader of its partition.
        abandon.cancel();
        let abandoned = progress.in_flight();
        self.status
            .abandoned
            .fetch_add(abandoned as u64, Ordering::Relaxed);
        if abandoned > 0 {
            warn!(abandoned, drain_timeout = ?self.config.drain_timeout, "drain ended with writes unconfirmed: not committed, the next reader of their partitions writes them again");
        } else {
            info!(abandoned, "drain ended: every write confirmed");
        }
        // Commit exactly the positions known safe (not the consumer's read position, which
        // may be past rows never written).
        let stored = consumer.context().stored_positions();
        let mut tpl = TopicPartitionList::new();
        for (partition, position) in &stored {
            let _ = tpl.add_partition_offset(&topic, *partition, Offset::Offset(*position));
        }
        if tpl.count() > 0 {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => info!(partitions = ?stored, "final commit"),
                // A partition revoked meanwhile: its new owner re-reads and rewrites the same
                // rows.
                Err(e) => warn!(error = %e, partitions = ?stored, "final commit failed"),
            }
        }
        // Leaves the group (the revocation callbacks run once more and commit the same
        // positions again).
        drop(consumer);
        admin_stop.cancel();
        if let Err(e) = admin_task.await {
            failure.get_or_insert(anyhow::anyhow!("admin port task failed: {e}"));
        }
        info!(
            rows = self.status.rows.load(Ordering::Relaxed),
            abandoned,
            failed = failure.is_some(),
            "history sink stopped"
        );
        failure.map_or(Ok(()), Err)
    }

    /// A record is done (written, or nothing to write): store the new safe position, if any.
    fn finished(
        &self,
        consumer: &SinkConsumer,
        topic: &str,
        progress: &mut Progress,
        partition: i32,
        offset: i64,
    ) {
        let Some(position) = progress.finish(partition, offset) else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(topic, partition, Offset::Offset(position))
            .is_err()
        {
            return;
        }
        // Fails for a partition no longer assigned: its new owner re-reads from the last
        // commit, and rewrites the same rows.
        if consumer.store_offsets(&tpl).is_ok() {
            consumer.context().stored(partition, position);
            self.status.stored.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes one row, retrying with backoff until it is written or `abandon` is cancelled; only a
/// written row is reported done.
#[allow(clippy::too_many_arguments)]
async fn write(
    store: Arc<HistoryStore>,
    row: HistoryRow,
    at: (i32, i64),
    status: Arc<SinkStatus>,
    (retry_min, retry_max): (Duration, Duration),
    done: mpsc::UnboundedSender<(i32, i64)>,
    abandon: CancellationToken,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut wait = retry_min;
    loop {
        match store.insert(&row).await {
            Ok(()) => {
                status.rows.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Err(e) => {
                let retries = status.retries.fetch_add(1, Ordering::Relaxed) + 1;
                // Hundreds of writes fail together when the store is down: one line a second.
                let now = now_s();
                if status.last_warn_s.swap(now, Ordering::Relaxed) != now {
                    warn!(error = %e, retries, in_flight = status.in_flight.load(Ordering::Relaxed), "history writes failing; retrying with backoff");
                }
                tokio::select! {
                    () = abandon.cancelled() => {
                        status.in_flight.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                    () = tokio::time::sleep(wait) => {}
                }
                wait = next_backoff(wait, retry_max);
            }
        }
    }
    status.in_flight.fetch_sub(1, Ordering::Relaxed);
    let _ = done.send(at);
}

impl nearby_common::admin::AdminView for SinkStatus {
    fn readiness(&self) -> (bool, String) {
        let (held, lag) = crate::group::held_and_lag(self);
        let body = format!(
            "partitions={} lag={} rows={} retries={} poison={} skipped={} in_flight={} stored={} abandoned={}",
            held.len(),
            lag.iter().map(|(_, n)| n).sum::<i64>(),
            self.rows.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
            self.poison.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
            self.stored.load(Ordering::Relaxed),
            self.abandoned.load(Ordering::Relaxed),
        );
        if self.stopping.load(Ordering::Relaxed) {
            (false, format!("stopping {body}"))
        } else if self.is_ready() {
            (true, format!("ready {body}"))
        } else {
            (false, format!("waiting for partitions {body}"))
        }
    }

    fn metrics(&self) -> String {
        metrics(self)
    }
}

/// The sink's counters as Prometheus text.
fn metrics(s: &SinkStatus) -> String {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (held, lag) = crate::group::held_and_lag(s);
    nearby_common::metrics::Snapshot::new("nearby_history_sink")
        .gauge(
            "ready",
            "1 once the group has assigned this instance its partitions (records or not), 0 again once it stops",
            i64::from(s.is_ready()),
        )
        .gauge(
            "partitions",
            "Partitions of the location topic held by this instance",
            i64::try_from(held.len()).unwrap_or(i64::MAX),
        )
        .gauges(
            "lag",
            "Records not written yet per held partition: high watermark minus the position stored for commit (or where the partition started), from librdkafka statistics (1 s)",
            "partition",
            &lag,
        )
        .counter(
            "rows",
            "Rows written (a rewrite after a redelivery counts again)",
            get(&s.rows),
        )
        .counter("retries", "Failed writes tried again", get(&s.retries))
        .counter("poison", "Undecodable records skipped", get(&s.poison))
        .counter(
            "skipped",
            "Records that are not positions (connects, disconnects)",
            get(&s.skipped),
        )
        .gauge(
            "in_flight",
            "Writes in flight now (at most 256)",
            i64::try_from(get(&s.in_flight)).unwrap_or(i64::MAX),
        )
        .counter("stored", "Offsets stored for commit", get(&s.stored))
        .counter(
            "abandoned",
            "Writes unconfirmed when a stop's drain ended (left to the partition's next reader)",
            get(&s.abandoned),
        )
        .render()
}
