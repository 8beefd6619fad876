//! The fanout instance's loop: read every partition's events in order, load friend lists when
//! a user becomes active, apply the core, produce deliveries, write the cache, sweep the expired.
//!
//! [`FanoutService::run`] sets the readers up, then waits on a short `select!` whose arms each
//! hand their news to a method of [`Running`], the loop's state: `on_sweep` (here),
//! `on_assigned` (`takeover.rs`), `on_partitions_grown` (`table.rs`), `on_change` and `on_step`
//! (`events.rs`); `stop` (here) is the orderly stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use nearby_common::clock::now_ms;
use nearby_common::partition::partition_of_user;
use nearby_common::redis_store::LocationCache;
use nearby_common::shutdown::Shutdown;
use nearby_common::stage::{Listeners, Stage};
use nearby_common::users::UserStore;
use rdkafka::consumer::{CommitMode, StreamConsumer};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::checkpoints::Checkpoints;
use super::config::FanoutServiceConfig;
use super::graph::StoreGraph;
use super::ownership;
use super::producer::DeliveryProducer;
use super::{table, takeover};
use crate::{Effects, Fanout, FanoutConfig};

// `Status` lives in `status.rs`; named here too, so `service::run::Status` still resolves.
pub use super::status::Status;

/// How often, at most, the sweep commits the owned partitions' progress to the group.
const COMMIT_EVERY: Duration = Duration::from_secs(5);

/// A fanout instance, connected to the stack.
#[derive(Debug)]
pub struct FanoutService {
    config: FanoutServiceConfig,
    store: UserStore,
    redis: ConnectionManager,
    cache: LocationCache,
    /// Shared with the admin port.
    pub status: Arc<Status>,
}

impl Stage for FanoutService {
    type Config = FanoutServiceConfig;
    type Handle = Arc<Status>;
    const NAME: &'static str = "nearby-fanout";

    fn addresses(config: &Self::Config) -> (Option<std::net::SocketAddr>, std::net::SocketAddr) {
        (None, config.admin_listen)
    }

    fn handle(&self) -> Self::Handle {
        self.status.clone()
    }

    /// Checks the configuration and connects to the CQL store and Redis (waiting for each as
    /// long as `NEARBY_STARTUP_TIMEOUT` allows).
    async fn build(config: FanoutServiceConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let stack = &config.stack;
        let startup = stack.startup();
        let session = startup.cql(&stack.cql_nodes).await?;
        startup
            .retry("the user store's tables", || {
                nearby_common::users::create_schema(&session, &stack.cql_keyspace, 1)
            })
            .await?;
        let store = UserStore::new(session, &stack.cql_keyspace).await?;
        let redis = startup.redis(&stack.redis_url).await?;
        let cache = LocationCache::new(&stack.topic_prefix, config.rules.location_ttl.as_secs());
        Ok(Self {
            config,
            store,
            redis,
            cache,
            status: Arc::default(),
        })
    }

    /// Runs until `shutdown` (fanout's stop is short: the first signal stops it), serving
    /// health, readiness and metrics on the admin listener.
    async fn run(self, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
        let shutdown = shutdown.graceful().clone();
        let stack = self.config.stack.clone();
        let startup = stack.startup();
        let topics = stack.topics()?;
        let topic = topics.location_updates();
        let ttl_ms = self.config.rules.ttl_ms();

        // Served from the start: readiness says "catching up" while the table is rebuilt.
        let admin_task = tokio::spawn(nearby_common::admin::serve(
            listeners.admin,
            self.status.clone(),
            self.config.admin_auth.clone(),
            shutdown.clone(),
        ));

        // The table reader: every partition, from the first offset of the last TTL window.
        // Shared with the partition watcher, which asks it for the topic's metadata.
        let table = Arc::new(table::reader(
            &stack.kafka_brokers,
            &self.config.group_id,
            self.status.lag.clone(),
        )?);
        let start =
            table::assign_from_ttl(&startup, &stack.kafka_brokers, &table, &topic, ttl_ms).await?;

        // Change notices from the end the topic has now: the friend lists loaded from here on
        // already hold the older ones. Assigned before the table is rebuilt, so none falls
        // between the two.
        let changes = nearby_common::friendship::tail_reader_ready(
            &startup,
            &stack.kafka_brokers,
            &format!("{}-{}", self.config.group_id, uuid::Uuid::new_v4().simple()),
            &topics.friendship_events(),
        )
        .await
        .context("reading the friendship events topic")?;

        // Partitions this instance is given (unbounded: one message per rebalance, and the
        // rebalance callback that sends must never block).
        let (assigned_tx, mut assigned_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<i32>>();

        // Partitions added to the topic later: a watcher reads the count now and then.
        let (count_tx, mut count_rx) = tokio::sync::watch::channel(start.partitions);
        let watcher = tokio::spawn(table::watch_partitions(
            table.clone(),
            topic.clone(),
            self.config.partition_check,
            count_tx,
            shutdown.clone(),
        ));

        let fanout = Fanout::new(FanoutConfig {
            radius_m: self.config.rules.radius_m,
            ttl_ms,
            ..FanoutConfig::default()
        })?;
        let graph = StoreGraph::new(self.config.friend_cache_capacity);
        let producer = DeliveryProducer::new(
            &stack.kafka_brokers,
            topics.clone(),
            self.config.delivery_queue,
            self.status.deliveries.clone(),
        )?;
        let mut sweep = tokio::time::interval(self.config.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let takeover_window_ms = takeover::window_ms(self.config.session_timeout)?;

        let Self {
            config,
            store,
            redis,
            cache,
            status,
        } = self;
        let mut running = Running {
            config,
            store,
            redis,
            cache,
            status,
            topic,
            shutdown: shutdown.clone(),
            fanout,
            graph,
            producer,
            effects: Effects::default(),
            checkpoints: Checkpoints::default(),
            // The group is joined only once the table is rebuilt (see `join_once_rebuilt`):
            // until then this instance owns nothing.
            owned: ownership::Owned::default(),
            joined: Arc::new(AtomicBool::new(false)),
            progress: start.progress,
            high: start.high,
            rebuild_started: start.rebuild_started,
            group: None,
            membership: None,
            assigned_tx,
            partition_count: start.partitions,
            takeover_window_ms,
            last_commit: tokio::time::Instant::now(),
        };

        loop {
            tokio::select! {
                // The order of the arms is the order of priority when several are ready.
                // Shutdown first, then the sweep (expiry must not starve behind a busy topic).
                biased;
                () = shutdown.cancelled() => break,
                _ = sweep.tick() => running.on_sweep().await?,
                // Then the group's and the watcher's news, rare and cheap, before the topics'
                // records: under load the table reader is always ready, so an arm after it
                // would wait for a lull.
                Some(assigned) = assigned_rx.recv() => running.on_assigned(assigned).await,
                Ok(()) = count_rx.changed() => {
                    // Copied out, so the watch's lock is not held while the reader is assigned.
                    let count = *count_rx.borrow_and_update();
                    running.on_partitions_grown(&table, count)?;
                }
                // Changes before positions when both are waiting: a report sent after a change
                // returned should meet it applied (the two topics are read independently, so
                // this narrows the window; it cannot close it).
                msg = changes.recv() => running.on_change(msg).await,
                msg = table.recv() => running.on_step(&table, msg).await,
            }
        }

        running.stop(watcher, admin_task).await;
        Ok(())
    }
}

/// The run loop's state: the core, its friend graph and outputs, and what the group consumer
/// shares with the loop. Each arm of the loop calls one of its methods. (Not `Debug`: the
/// group consumer is not.)
pub(super) struct Running {
    pub(super) config: FanoutServiceConfig,
    pub(super) store: UserStore,
    pub(super) redis: ConnectionManager,
    pub(super) cache: LocationCache,
    pub(super) status: Arc<Status>,
    /// The location topic.
    pub(super) topic: String,
    /// The process's stop signal, handed to the membership task.
    pub(super) shutdown: CancellationToken,
    pub(super) fanout: Fanout,
    pub(super) graph: StoreGraph,
    pub(super) producer: DeliveryProducer,
    /// What the current step (a batch of events, a change, a sweep, a refresh) produced.
    pub(super) effects: Effects,
    /// When the table reader read what, for a takeover's refresh.
    pub(super) checkpoints: Checkpoints,
    /// The partitions owned now (written by the group consumer's rebalance callbacks).
    pub(super) owned: ownership::Owned,
    /// Raised by the group consumer at its first assignment.
    pub(super) joined: Arc<AtomicBool>,
    /// The table reader's next offset per partition (committed from by the group consumer).
    pub(super) progress: ownership::Progress,
    /// The end each partition had at start-up: the table is rebuilt once read that far.
    pub(super) high: HashMap<i32, i64>,
    pub(super) rebuild_started: tokio::time::Instant,
    /// The group consumer, once joined.
    pub(super) group: Option<Arc<StreamConsumer<ownership::OwnershipContext>>>,
    /// The task that polls the group consumer, once joined.
    pub(super) membership: Option<JoinHandle<()>>,
    /// Given to the group consumer, which sends the partitions it is assigned.
    pub(super) assigned_tx: UnboundedSender<Vec<i32>>,
    /// The location topic's partitions, as far as this instance knows.
    pub(super) partition_count: i32,
    /// See [`takeover::window_ms`].
    pub(super) takeover_window_ms: i64,
    pub(super) last_commit: tokio::time::Instant,
}

impl Running {
    /// The sweep's tick: expire the users gone quiet, update the status, join the group once
    /// the table is rebuilt, and commit now and then.
    pub(super) async fn on_sweep(&mut self) -> anyhow::Result<()> {
        // A copy: the rebalance callbacks write the set, and hold its lock only that long.
        let owned_now = self.owned.read().unwrap_or_else(|p| p.into_inner()).clone();
        let partition_count = self.partition_count;
        self.fanout.sweep(
            now_ms(),
            |u| owned_now.contains(&partition_of_user(u, partition_count)),
            &mut self.effects,
        );
        self.flush().await;
        self.status
            .table_users
            .store(self.fanout.table().len() as u64, Ordering::Relaxed);
        // Marks as old as a killed owner's last commit usually is; an older commit
        // refreshes the whole partition, which is right after a long gap.
        self.checkpoints
            .trim(now_ms() - 2 * self.takeover_window_ms);
        let caught_up = self.caught_up();
        if caught_up && self.group.is_none() {
            self.join_once_rebuilt()?;
        }
        self.status.ready.store(
            caught_up && self.joined.load(Ordering::Acquire),
            Ordering::Release,
        );
        self.status
            .owned_partitions
            .store(owned_now.len() as u64, Ordering::Relaxed);
        self.status
            .delivery_queue
            .store(self.producer.queued() as u64, Ordering::Relaxed);
        // Asynchronous: the loop does not wait for the coordinator. A revoke commits
        // synchronously (in the rebalance callback); this commit only bounds how far back a
        // takeover after this instance is killed must refresh.
        if let Some(group) = &self.group
            && self.last_commit.elapsed() >= COMMIT_EVERY
        {
            if let Err(e) = ownership::commit(group, CommitMode::Async) {
                warn!(error = %e, "commit failed");
            }
            self.last_commit = tokio::time::Instant::now();
        }
        Ok(())
    }

    /// Whether the table reader has reached the end every partition had at start-up.
    fn caught_up(&self) -> bool {
        let next = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.high
            .iter()
            .all(|(p, h)| next.get(p).copied().unwrap_or(0) >= *h)
    }

    /// Joins the group, now that the table is rebuilt. Not before: an instance that owned
    /// partitions before it knew every active user's position would miss deliveries (a
    /// friend it does not know yet is not found in range).
    fn join_once_rebuilt(&mut self) -> anyhow::Result<()> {
        info!(
            users = self.fanout.table().len(),
            rebuild_ms = self.rebuild_started.elapsed().as_millis() as u64,
            "table rebuilt: joining the group"
        );
        let consumer = Arc::new(ownership::join(
            &self.config.stack.kafka_brokers,
            &self.config.group_id,
            &self.topic,
            self.config.session_timeout,
            ownership::Shared {
                owned: self.owned.clone(),
                joined: self.joined.clone(),
                progress: self.progress.clone(),
                assigned: self.assigned_tx.clone(),
            },
        )?);
        // A task of its own: the membership must be polled (heartbeats, rebalances) even
        // while the loop waits on a step's friend lists or the producer.
        self.membership = Some(tokio::spawn(keep_membership(
            consumer.clone(),
            self.shutdown.clone(),
        )));
        self.group = Some(consumer);
        Ok(())
    }

    /// The orderly stop: not ready, the deliveries made go out, the progress is committed, the
    /// group is left, and the watcher and the admin port end.
    pub(super) async fn stop(mut self, watcher: JoinHandle<()>, admin_task: JoinHandle<()>) {
        info!("fanout stopping");
        self.status.ready.store(false, Ordering::Release);
        // Deliveries already made go out before the group hears of the departure.
        self.producer.flush(Duration::from_secs(5));
        if let Some(group) = &self.group
            && let Err(e) = ownership::commit(group, CommitMode::Sync)
        {
            warn!(error = %e, "final commit failed");
        }
        if let Some(m) = self.membership.take() {
            m.abort();
        }
        // Dropping the group consumer leaves the group at once (its partitions go to the
        // others now, not after the session timeout).
        drop(self.group.take());
        watcher.abort();
        let _ = admin_task.await;
        info!("fanout stopped");
    }
}

/// Polls the group consumer: that keeps the membership alive and runs the rebalance
/// callbacks. Its partitions are paused, so no record comes back.
async fn keep_membership(
    group: Arc<StreamConsumer<ownership::OwnershipContext>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            r = group.recv() => if let Err(e) = r { warn!(error = %e, "group consumer"); },
        }
    }
}
