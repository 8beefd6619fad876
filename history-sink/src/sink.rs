//! `HistorySink`: the consumer loop. Records are read in the group's partitions, each position
//! written to `location_history` by its own task (at most `max_in_flight` at once), retried
//! with backoff until written; an offset is stored for the background commit only when every
//! record before it is written ([`Progress`]), so a crash at any point re-reads, and rewrites
//! as the same rows, only what might not be in the table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nearby_common::history::{HistoryRow, HistoryStore};
use nearby_schemas::{LocationBody, LocationEvent};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::SinkConfig;
use crate::progress::Progress;

/// What the admin port reports.
#[derive(Debug, Default)]
pub struct SinkStatus {
    /// The group has assigned partitions and records flow.
    pub ready: AtomicBool,
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
    /// The second of the last "writes failing" log line (to write one a second at most).
    pub last_warn_s: AtomicU64,
}

/// The wall clock in whole seconds.
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    /// Checks the configuration, connects to the CQL store (retrying with backoff while it
    /// does not answer, until `shutdown`), creates the keyspace and table if missing.
    pub async fn build(config: SinkConfig, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let stack = &config.stack;
        let mut wait = config.retry_min;
        let store = loop {
            let attempt = async {
                let session = nearby_common::cql::connect(&stack.cql_nodes).await?;
                nearby_common::cql::create_keyspace(
                    &session,
                    &stack.cql_keyspace,
                    config.replication,
                )
                .await?;
                nearby_common::history::create_table(&session, &stack.cql_keyspace).await?;
                HistoryStore::new(session, &stack.cql_keyspace).await
            };
            match attempt.await {
                Ok(store) => break store,
                Err(e) => {
                    warn!(error = %e, retry_in = ?wait, "CQL store not ready");
                    tokio::select! {
                        () = shutdown.cancelled() => anyhow::bail!("stopped before the CQL store answered"),
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = next_backoff(wait, config.retry_max);
                }
            }
        };
        Ok(Self {
            config,
            store: Arc::new(store),
            status: Arc::default(),
        })
    }

    /// Runs until `shutdown`, serving the admin port on `admin`; then waits (bounded by the
    /// drain timeout) for the writes in flight and commits what is written.
    pub async fn run(self, admin: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stack = &self.config.stack;
        let topic = stack.topics()?.location_updates();
        let mut client =
            nearby_common::kafka::consumer_config(&stack.kafka_brokers, &self.config.group_id);
        client.set(
            "session.timeout.ms",
            self.config.session_timeout.as_millis().to_string(),
        );
        if let Some(id) = &self.config.instance_id {
            client.set("group.instance.id", id);
        }
        let consumer: StreamConsumer = client.create()?;
        consumer.subscribe(&[&topic])?;
        let admin_task = tokio::spawn(nearby_common::admin::serve(
            admin,
            self.status.clone(),
            shutdown.clone(),
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
        // The last position stored per partition, committed explicitly at the end.
        let mut stored = std::collections::BTreeMap::new();

        loop {
            tokio::select! {
                // Completions first: they free permits and move the committed position.
                biased;
                () = shutdown.cancelled() => break,
                Some((partition, offset)) = done_rx.recv() => {
                    self.finished(&consumer, &topic, &mut progress, &mut stored, partition, offset);
                }
                msg = consumer.recv(), if permits.available_permits() > 0 => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => { warn!(error = %e, "location consume error"); continue; }
                    };
                    self.status.ready.store(true, Ordering::Relaxed);
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
                        self.finished(&consumer, &topic, &mut progress, &mut stored, partition, offset);
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

        info!(
            in_flight = progress.in_flight(),
            "history sink stopping: draining writes"
        );
        let deadline = tokio::time::Instant::now() + self.config.drain_timeout;
        while progress.in_flight() > 0 {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some((partition, offset))) => {
                    self.finished(
                        &consumer,
                        &topic,
                        &mut progress,
                        &mut stored,
                        partition,
                        offset,
                    );
                }
                _ => break,
            }
        }
        // Whatever is still retrying is left to the next reader of its partition.
        abandon.cancel();
        // Commit exactly the positions known safe (not the consumer's read position, which
        // may be past rows never written).
        let mut tpl = TopicPartitionList::new();
        for (partition, position) in &stored {
            let _ = tpl.add_partition_offset(&topic, *partition, Offset::Offset(*position));
        }
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, CommitMode::Sync)
        {
            // A partition revoked meanwhile: its new owner re-reads and rewrites the same rows.
            info!(error = %e, "final commit");
        }
        let _ = admin_task.await;
        info!(
            rows = self.status.rows.load(Ordering::Relaxed),
            "history sink stopped"
        );
        Ok(())
    }

    /// A record is done (written, or nothing to write): store the new safe position, if any.
    fn finished(
        &self,
        consumer: &StreamConsumer,
        topic: &str,
        progress: &mut Progress,
        stored: &mut std::collections::BTreeMap<i32, i64>,
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
            stored.insert(partition, position);
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
        let body = format!(
            "rows={} retries={} poison={} skipped={} in_flight={} stored={}",
            self.rows.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
            self.poison.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
            self.stored.load(Ordering::Relaxed),
        );
        if self.ready.load(Ordering::Relaxed) {
            (true, format!("ready {body}"))
        } else {
            (false, format!("waiting for records {body}"))
        }
    }

    fn metrics(&self) -> String {
        metrics(self)
    }
}

/// The sink's counters as Prometheus text.
fn metrics(s: &SinkStatus) -> String {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    nearby_common::metrics::Snapshot::new("nearby_history_sink")
        .gauge(
            "ready",
            "1 once partitions are assigned and records flow",
            i64::from(s.ready.load(Ordering::Relaxed)),
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
        .render()
}
