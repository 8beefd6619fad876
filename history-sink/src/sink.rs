//! `HistorySink`: the consumer loop. Records are read in the group's partitions, each position
//! written to `location_history` by its own task (at most `max_in_flight` at once, see
//! [`crate::writer`]), retried with backoff until written; an offset is stored for the
//! background commit only when every record before it is written ([`Progress`]), so a crash at
//! any point re-reads, and rewrites as the same rows, only what might not be in the table. The
//! group's side (held partitions, the commit when partitions are revoked, lag) is in
//! [`crate::group`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use nearby_common::history::{HistoryRow, HistoryStore};
use nearby_common::shutdown::Shutdown;
use nearby_common::stage::{Listeners, Stage};
use nearby_schemas::{LocationBody, LocationEvent};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::SinkConfig;
use crate::group::{STATISTICS_INTERVAL, SinkContext};
use crate::progress::Progress;
use crate::status::SinkStatus;

/// The sink's consumer.
type SinkConsumer = StreamConsumer<SinkContext>;

/// A sink instance, connected to the CQL store.
#[derive(Debug)]
pub struct HistorySink {
    config: SinkConfig,
    store: Arc<HistoryStore>,
    /// Shared with the admin port.
    pub status: Arc<SinkStatus>,
}

impl Stage for HistorySink {
    type Config = SinkConfig;
    type Handle = Arc<SinkStatus>;
    const NAME: &'static str = "nearby-history-sink";

    fn addresses(config: &Self::Config) -> (Option<std::net::SocketAddr>, std::net::SocketAddr) {
        (None, config.admin_listen)
    }

    fn handle(&self) -> Self::Handle {
        self.status.clone()
    }

    /// Checks the configuration, connects to the CQL store and creates the keyspace and table
    /// if missing, and waits for the location topic's leaders: each waited for, while it does
    /// not answer yet, as long as `NEARBY_STARTUP_TIMEOUT` allows.
    async fn build(config: SinkConfig) -> anyhow::Result<Self> {
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
    async fn run(self, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
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
            listeners.admin,
            self.status.clone(),
            self.config.admin_auth.clone(),
            admin_stop.clone(),
        ));
        info!(%topic, group = %self.config.group_id, keyspace = %stack.cql_keyspace, "history sink started");

        // Finished writes come back here; the loop alone touches `progress` and the consumer.
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(i32, i64)>();
        let mut run = Running {
            // The bound on writes in flight: the loop reads a record only when a permit is
            // free, so a slow or absent CQL store stops the reading rather than filling memory.
            permits: Arc::new(Semaphore::new(self.config.max_in_flight)),
            done_tx,
            abandon: CancellationToken::new(),
            progress: Progress::default(),
            consumer: &consumer,
            topic,
            sink: &self,
        };
        let mut failure = None;
        loop {
            tokio::select! {
                // Revocations before completions (a completion of a revoked partition must not
                // move its position), completions before reading: they free permits and move
                // the committed position. Rebalance callbacks run inside `recv`.
                biased;
                () = shutdown.graceful().cancelled() => break,
                Some(revoked) = revoked_rx.recv() => run.on_revoked(&revoked),
                Some((partition, offset)) = done_rx.recv() => run.on_written(partition, offset),
                msg = consumer.recv(), if run.permits.available_permits() > 0 => match msg {
                    Ok(msg) => run.on_record(&msg),
                    Err(e) => if let Some(fatal) = run.on_consume_error(&e) {
                        failure = Some(fatal);
                        break;
                    },
                },
            }
        }

        let abandoned = run.drain(&mut done_rx, shutdown.now()).await;
        run.commit_stored();
        drop(run);
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
}

/// The loop's state: the consumer, what is in flight, and how writes report back.
struct Running<'a> {
    sink: &'a HistorySink,
    consumer: &'a SinkConsumer,
    topic: String,
    progress: Progress,
    permits: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<(i32, i64)>,
    /// Cancelled at the end of the drain: writes still retrying give up, uncommitted.
    abandon: CancellationToken,
}

impl Running<'_> {
    /// Partitions taken away: their writes still in flight will not move any position here.
    fn on_revoked(&mut self, revoked: &[i32]) {
        let dropped: usize = revoked.iter().map(|&p| self.progress.forget(p)).sum();
        if dropped > 0 {
            info!(partitions = ?revoked, writes = dropped, "revoked partitions: their writes in flight will not be committed here");
        }
    }

    /// A record is done (written, or nothing to write): store the new safe position, if any.
    fn on_written(&mut self, partition: i32, offset: i64) {
        let Some(position) = self.progress.finish(partition, offset) else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&self.topic, partition, Offset::Offset(position))
            .is_err()
        {
            return;
        }
        // Fails for a partition no longer assigned: its new owner re-reads from the last
        // commit, and rewrites the same rows.
        if self.consumer.store_offsets(&tpl).is_ok() {
            self.consumer.context().stored(partition, position);
            self.sink.status.stored.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A record read: a position goes to a write task of its own; anything else is done at
    /// once.
    fn on_record(&mut self, msg: &BorrowedMessage<'_>) {
        let (partition, offset) = (msg.partition(), msg.offset());
        self.progress.begin(partition, offset);
        let Some(row) = self.row_of(msg) else {
            self.on_written(partition, offset);
            return;
        };
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .expect("a permit was free");
        let status = &self.sink.status;
        status.in_flight.fetch_add(1, Ordering::Relaxed);
        let config = &self.sink.config;
        tokio::spawn(crate::writer::write(
            self.sink.store.clone(),
            row,
            (partition, offset),
            status.clone(),
            (config.retry_min, config.retry_max),
            self.done_tx.clone(),
            self.abandon.clone(),
            permit,
        ));
    }

    /// The row a record becomes; `None` for a connect or disconnect (counted as skipped) and
    /// for a poison record (logged, counted and skipped: it must not stop the history of
    /// everyone else).
    fn row_of(&self, msg: &BorrowedMessage<'_>) -> Option<HistoryRow> {
        let status = &self.sink.status;
        match msg.payload().map(nearby_schemas::decode::<LocationEvent>) {
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
                    status.skipped.fetch_add(1, Ordering::Relaxed);
                    None
                }
            },
            Some(Err(e)) => {
                warn!(error = %e, partition = msg.partition(), offset = msg.offset(), "undecodable location event skipped");
                status.poison.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                status.poison.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// A consume error: logged and passed over, unless the client says it is fatal (another
    /// instance with the same `--instance-id`, say): then why the run must end.
    fn on_consume_error(&self, e: &rdkafka::error::KafkaError) -> Option<anyhow::Error> {
        if let Some((code, reason)) = self.consumer.client().fatal_error() {
            error!(error = %e, ?code, %reason, "fatal consumer error: stopping");
            return Some(anyhow::anyhow!("fatal consumer error: {code:?}: {reason}"));
        }
        warn!(error = %e, "location consume error");
        None
    }

    /// The stop's drain: waits for the writes in flight until the drain timeout or `cut`, then
    /// abandons the rest (their partitions' next reader writes them again). Returns how many
    /// were abandoned.
    async fn drain(
        &mut self,
        done_rx: &mut mpsc::UnboundedReceiver<(i32, i64)>,
        cut: &CancellationToken,
    ) -> usize {
        let status = &self.sink.status;
        // Not ready from here on: `/readyz` answers 503 ("stopping") until the port closes.
        status.stopping.store(true, Ordering::Relaxed);
        info!(
            in_flight = self.progress.in_flight(),
            "history sink stopping: draining writes"
        );
        let drain_timeout = self.sink.config.drain_timeout;
        let deadline = tokio::time::Instant::now() + drain_timeout;
        while self.progress.in_flight() > 0 {
            tokio::select! {
                () = cut.cancelled() => break,
                done = tokio::time::timeout_at(deadline, done_rx.recv()) => match done {
                    Ok(Some((partition, offset))) => self.on_written(partition, offset),
                    _ => break,
                },
            }
        }
        // Writes that ended just as the drain did still count.
        while let Ok((partition, offset)) = done_rx.try_recv() {
            self.on_written(partition, offset);
        }
        self.abandon.cancel();
        let abandoned = self.progress.in_flight();
        status
            .abandoned
            .fetch_add(abandoned as u64, Ordering::Relaxed);
        if abandoned > 0 {
            warn!(
                abandoned,
                ?drain_timeout,
                "drain ended with writes unconfirmed: not committed, the next reader of their partitions writes them again"
            );
        } else {
            info!(abandoned, "drain ended: every write confirmed");
        }
        abandoned
    }

    /// Commits exactly the positions known safe (not the consumer's read position, which may
    /// be past rows never written).
    fn commit_stored(&self) {
        let stored = self.consumer.context().stored_positions();
        let mut tpl = TopicPartitionList::new();
        for (partition, position) in &stored {
            let _ = tpl.add_partition_offset(&self.topic, *partition, Offset::Offset(*position));
        }
        if tpl.count() > 0 {
            match self.consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => info!(partitions = ?stored, "final commit"),
                // A partition revoked meanwhile: its new owner re-reads and rewrites the same
                // rows.
                Err(e) => warn!(error = %e, partitions = ?stored, "final commit failed"),
            }
        }
    }
}
