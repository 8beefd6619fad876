//! The fanout instance's loop: read every partition's events in order, load friend lists when
//! a user becomes active, apply the core, produce deliveries, write the cache, sweep the expired.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use nearby_common::clock::now_ms;
use nearby_common::lag::LagStats;
use nearby_common::partition::partition_of_user;
use nearby_common::redis_store::{LatestLocation, LocationCache};
use nearby_common::shutdown::Shutdown;
use nearby_common::stage::Listeners;
use nearby_common::users::UserStore;
use nearby_schemas::{FriendshipEvent, FriendshipKind, LocationBody, LocationEvent};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::checkpoints::Checkpoints;
use super::config::FanoutServiceConfig;
use super::graph::StoreGraph;
use super::ownership;
use super::producer::{DeliveryCounters, DeliveryProducer};
use crate::{Effects, Fanout, FanoutConfig};

/// Added to the session timeout for how far back a takeover refreshes when the group's
/// commit cannot be read: the rebalance after the timeout, heartbeats and clocks (report times
/// are the phones') take a few seconds more.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(10);

/// Report times are the phones' clocks, marks the gateways': a takeover refresh reaches back
/// this much further than the first unfanned record's time.
const CLOCK_SLACK_MS: i64 = 5_000;

/// How often the table reader's statistics (its per-partition lag) are refreshed.
const LAG_STATS_EVERY: Duration = Duration::from_secs(5);

/// How long a metadata or offsets request may take at start-up.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// What the admin port reports.
#[derive(Debug, Default)]
pub struct Status {
    /// The table reader has reached the end the topic had at start-up, and the group assigned.
    pub ready: AtomicBool,
    /// Events applied.
    pub events: AtomicU64,
    /// Events that could not be decoded (skipped).
    pub poison: AtomicU64,
    /// Friendship events applied.
    pub changes: AtomicU64,
    /// Users in the table.
    pub table_users: AtomicU64,
    /// Friend-list loads that failed (the user is linked to nobody until their next activation).
    pub graph_errors: AtomicU64,
    /// What became of the deliveries produced.
    pub deliveries: Arc<DeliveryCounters>,
    /// Partitions of the location topic this instance fans out.
    pub owned_partitions: AtomicU64,
    /// Users whose state was sent again after a takeover of their partition.
    pub refreshed: AtomicU64,
    /// Delivery records queued in the producer, not yet acknowledged.
    pub delivery_queue: AtomicU64,
    /// The table reader's lag per partition (its client's statistics, read at a scrape).
    pub lag: LagStats,
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
async fn watch_partitions(
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

impl FanoutService {
    /// Checks the configuration and connects to the CQL store and Redis (waiting for each as
    /// long as `NEARBY_STARTUP_TIMEOUT` allows).
    pub async fn build(config: FanoutServiceConfig) -> anyhow::Result<Self> {
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
    pub async fn run(mut self, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
        let shutdown = shutdown.graceful().clone();
        let admin = listeners.admin;
        let stack = self.config.stack.clone();
        let startup = stack.startup();
        let topics = stack.topics()?;
        let topic = topics.location_updates();
        let ttl_ms = self.config.rules.ttl_ms();

        let admin_task = tokio::spawn(nearby_common::admin::serve(
            admin,
            self.status.clone(),
            shutdown.clone(),
        ));

        // The table reader: every partition, from the first offset of the last TTL window.
        // Shared with the partition watcher, which asks it for the topic's metadata.
        let table: Arc<StreamConsumer<LagStats>> = {
            let mut c = nearby_common::kafka::client_config(&stack.kafka_brokers);
            nearby_common::lag::with_lag_stats(&mut c, LAG_STATS_EVERY);
            c.set(
                "group.id",
                format!(
                    "{}-table-{}",
                    self.config.group_id,
                    uuid::Uuid::new_v4().simple()
                ),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // The broker answers a fetch as soon as one record is there (fetch.min.bytes 1):
            // the wait only bounds how often an idle reader asks again.
            .set("fetch.wait.max.ms", "100");
            Arc::new(c.create_with_context(self.status.lag.clone())?)
        };
        // A topic created this instant has partitions without a leader for a moment: waited
        // for, as the offsets below are (a leader just elected may not answer at once).
        let partitions = startup.topic(&stack.kafka_brokers, &topic).await?;
        let mut partition_count = partitions;
        let (start, high) = startup
            .retry(
                &format!("the offsets of (now - TTL) in topic {topic}"),
                || {
                    let (table, topic) = (table.clone(), topic.clone());
                    async move {
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
        // The next offset to read per partition (shared with the group consumer, which commits
        // it on revoke).
        let progress = ownership::Progress::default();
        {
            let mut next = progress.lock().unwrap_or_else(|p| p.into_inner());
            for e in start.elements() {
                let at = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => high.get(&e.partition()).copied().unwrap_or(0),
                };
                next.insert(e.partition(), at);
            }
        }
        let rebuild_started = tokio::time::Instant::now();
        info!(%topic, partitions, "table reader assigned from now - TTL");

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

        // The group is joined only once the table is rebuilt: an instance that owned
        // partitions before it knew every active user's position would miss deliveries (a
        // friend it does not know yet is not found in range). Until then it owns nothing.
        let owned = ownership::Owned::default();
        let joined = Arc::new(AtomicBool::new(false));
        let mut group: Option<Arc<StreamConsumer<ownership::OwnershipContext>>> = None;
        // Partitions this instance is given (unbounded: one message per rebalance).
        let (assigned_tx, mut assigned_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<i32>>();
        let mut membership: Option<tokio::task::JoinHandle<()>> = None;

        // Partitions added to the topic later: a watcher reads the count now and then.
        let (count_tx, mut count_rx) = tokio::sync::watch::channel(partitions);
        let watcher = tokio::spawn(watch_partitions(
            table.clone(),
            topic.clone(),
            self.config.partition_check,
            count_tx,
            shutdown.clone(),
        ));

        let mut fanout = Fanout::new(FanoutConfig {
            radius_m: self.config.rules.radius_m,
            ttl_ms,
            ..FanoutConfig::default()
        })?;
        let mut graph = StoreGraph::new(self.config.friend_cache_capacity);
        let mut producer = DeliveryProducer::new(
            &stack.kafka_brokers,
            topics.clone(),
            self.config.delivery_queue,
            self.status.deliveries.clone(),
        )?;
        let mut effects = Effects::default();
        let mut sweep = tokio::time::interval(self.config.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit = tokio::time::Instant::now();
        let mut checkpoints = Checkpoints::default();
        // The longest a partition goes unowned when its instance dies: the session timeout,
        // then the rebalance, heartbeats and clocks.
        let takeover_window_ms =
            i64::try_from((self.config.session_timeout + TAKEOVER_MARGIN).as_millis())?;

        loop {
            tokio::select! {
                // Shutdown first, then the sweep (expiry must not starve behind a busy topic).
                biased;
                () = shutdown.cancelled() => break,
                _ = sweep.tick() => {
                    let owned_now = owned.read().unwrap_or_else(|p| p.into_inner()).clone();
                    fanout.sweep(now_ms(), |u| owned_now.contains(&partition_of_user(u, partition_count)), &mut effects);
                    self.flush(&mut producer, &mut effects).await;
                    self.status.table_users.store(fanout.table().len() as u64, Ordering::Relaxed);
                    // Marks as old as a killed owner's last commit usually is; an older commit
                    // refreshes the whole partition, which is right after a long gap.
                    checkpoints.trim(now_ms() - 2 * takeover_window_ms);
                    let next = progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let caught_up = high.iter().all(|(p, h)| next.get(p).copied().unwrap_or(0) >= *h);
                    if caught_up && group.is_none() {
                        info!(
                            users = fanout.table().len(),
                            rebuild_ms = rebuild_started.elapsed().as_millis() as u64,
                            "table rebuilt: joining the group"
                        );
                        let consumer = Arc::new(ownership::join(
                            &stack.kafka_brokers,
                            &self.config.group_id,
                            &topic,
                            self.config.session_timeout,
                            ownership::Shared {
                                owned: owned.clone(),
                                joined: joined.clone(),
                                progress: progress.clone(),
                                assigned: assigned_tx.clone(),
                            },
                        )?);
                        membership = Some(tokio::spawn(keep_membership(consumer.clone(), shutdown.clone())));
                        group = Some(consumer);
                    }
                    self.status.ready.store(caught_up && joined.load(Ordering::Acquire), Ordering::Release);
                    self.status.owned_partitions.store(owned_now.len() as u64, Ordering::Relaxed);
                    self.status.delivery_queue.store(producer.queued() as u64, Ordering::Relaxed);
                    if let Some(group) = &group && last_commit.elapsed() >= Duration::from_secs(5) {
                        if let Err(e) = ownership::commit(group, CommitMode::Async) {
                            warn!(error = %e, "commit failed");
                        }
                        last_commit = tokio::time::Instant::now();
                    }
                }
                // Partitions taken over: reports read while nobody owned them (an instance
                // killed, a partition just added) were applied to the table but fanned out by
                // no one. Their users' current state goes out again, only where something may
                // have been missed and only since then: a graceful hand-over commits the old
                // owner's progress on revoke, and the reports from that offset on are the ones
                // nobody fanned out.
                Some(assigned) = assigned_rx.recv() => {
                    let Some(g) = &group else { continue };
                    let now = now_ms();
                    let mut since_by_partition = HashMap::new();
                    for (p, since) in missed(g.clone(), &topic, assigned, &progress).await {
                        let since = match since {
                            // The time of the committed offset, less the phones' clock slack.
                            Since::Offset(c) => checkpoints.time_at(p, c).map_or(i64::MIN, |t| t - CLOCK_SLACK_MS),
                            // Never committed (a new partition, a new group), or a commit
                            // older than the marks: every active user of the partition.
                            Since::Start => i64::MIN,
                            // The group did not answer: the longest a gap lasts when an
                            // instance dies.
                            Since::Unknown => now - takeover_window_ms,
                        };
                        info!(partition = p, since, "partition taken over after a gap: its users' state since then sent again");
                        since_by_partition.insert(p, since);
                    }
                    let Some(&earliest) = since_by_partition.values().min() else { continue };
                    let users = fanout.refresh(
                        earliest,
                        |u, ts| since_by_partition.get(&partition_of_user(u, partition_count)).is_some_and(|s| ts >= *s),
                        now,
                        &mut effects,
                    );
                    self.status.refreshed.fetch_add(users as u64, Ordering::Relaxed);
                    self.flush(&mut producer, &mut effects).await;
                }
                Ok(()) = count_rx.changed() => {
                    let count = *count_rx.borrow_and_update();
                    if count > partition_count {
                        // New partitions are read from their start: every record on them came
                        // after they were made, and the table needs them all.
                        let mut added = TopicPartitionList::new();
                        for p in partition_count..count {
                            added.add_partition_offset(&topic, p, Offset::Beginning)?;
                            progress.lock().unwrap_or_else(|p| p.into_inner()).insert(p, 0);
                        }
                        table.incremental_assign(&added)?;
                        info!(from = partition_count, to = count, "partitions added to the location topic: reading them");
                        partition_count = count;
                    }
                }
                // Changes before positions when both are waiting: a report sent after a change
                // returned should meet it applied (the two topics are read independently, so
                // this narrows the window; it cannot close it).
                msg = changes.recv() => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => { warn!(error = %e, "friendship event consume error"); continue; }
                    };
                    let Some(change) = msg.payload().and_then(|b| match nearby_schemas::decode::<FriendshipEvent>(b) {
                        Ok(e) => Some(e),
                        Err(e) => {
                            warn!(error = %e, partition = msg.partition(), offset = msg.offset(), "undecodable friendship event skipped");
                            self.status.poison.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                    }) else { continue };
                    self.apply_change(&change, &mut fanout, &mut graph, &owned, partition_count, &mut effects).await;
                    self.flush(&mut producer, &mut effects).await;
                }
                msg = table.recv() => {
                    // Why steps: events already fetched are taken together (without waiting
                    // for more), so users becoming active have their friend lists read
                    // concurrently, and the step's deliveries and cache writes go out in one
                    // record per gateway and one Redis round trip. Order is kept: the events
                    // are applied one by one in the order they came.
                    let mut step = Vec::with_capacity(16);
                    step.push(msg);
                    while step.len() < self.config.step_events {
                        match table.recv().now_or_never() {
                            Some(m) => step.push(m),
                            None => break,
                        }
                    }
                    let now = now_ms();
                    let mut events = Vec::with_capacity(step.len());
                    let mut read_to: Vec<(i32, i64)> = Vec::with_capacity(step.len());
                    let mut marked: Vec<i32> = Vec::with_capacity(4);
                    for msg in step {
                        let msg = match msg {
                            Ok(m) => m,
                            Err(e) => { warn!(error = %e, "location consume error"); continue; }
                        };
                        let partition = msg.partition();
                        if !marked.contains(&partition) {
                            // One mark per partition and step: its first record's offset and time.
                            marked.push(partition);
                            let at = msg.timestamp().to_millis().unwrap_or(now);
                            checkpoints.mark(partition, msg.offset(), at);
                        }
                        read_to.push((partition, msg.offset() + 1));
                        match msg.payload().map(nearby_schemas::decode::<LocationEvent>) {
                            Some(Ok(event)) => events.push((partition, event)),
                            Some(Err(e)) => {
                                // A poison record is logged, counted and skipped.
                                warn!(error = %e, partition, offset = msg.offset(), "undecodable location event skipped");
                                self.status.poison.fetch_add(1, Ordering::Relaxed);
                            }
                            None => {}
                        }
                    }
                    // Becoming active: read the friend lists afresh (friendships made while
                    // the user was away count), all of the step's at once.
                    let mut activating: Vec<_> = events
                        .iter()
                        .filter(|(_, e)| matches!(e.body, LocationBody::Position(_)) && !fanout.is_active(e.user_id, now))
                        .map(|(_, e)| e.user_id)
                        .collect();
                    activating.sort_unstable();
                    activating.dedup();
                    for (user, e) in graph.load_many(&self.store, &activating, self.config.graph_loads).await {
                        warn!(error = %e, user, "friend list not loaded");
                        self.status.graph_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    let owned_now = owned.read().unwrap_or_else(|p| p.into_inner()).clone();
                    for (partition, event) in &events {
                        fanout.apply(event, owned_now.contains(partition), now, &graph, &mut effects);
                    }
                    self.status.events.fetch_add(events.len() as u64, Ordering::Relaxed);
                    self.flush(&mut producer, &mut effects).await;
                    // Progress moves only once the step's deliveries are queued: a commit (on
                    // revoke, say) never claims an event whose deliveries were not made.
                    progress.lock().unwrap_or_else(|p| p.into_inner()).extend(read_to);
                }
            }
        }

        info!("fanout stopping");
        self.status.ready.store(false, Ordering::Release);
        // Deliveries already made go out before the group hears of the departure.
        producer.flush(Duration::from_secs(5));
        if let Some(group) = &group
            && let Err(e) = ownership::commit(group, CommitMode::Sync)
        {
            warn!(error = %e, "final commit failed");
        }
        if let Some(m) = membership {
            m.abort();
        }
        // Dropping the group consumer leaves the group at once (its partitions go to the
        // others now, not after the session timeout).
        drop(group);
        watcher.abort();
        let _ = admin_task.await;
        info!("fanout stopped");
        Ok(())
    }

    /// Applies one friendship event: the graph's side of it, then the core's.
    async fn apply_change(
        &self,
        change: &FriendshipEvent,
        fanout: &mut Fanout,
        graph: &mut StoreGraph,
        owned: &ownership::Owned,
        partition_count: i32,
        effects: &mut Effects,
    ) {
        let user = change.user_id;
        let matters = matches!(
            change.kind,
            FriendshipKind::Accepted | FriendshipKind::SharingOn | FriendshipKind::SharingOff
        );
        if matters && fanout.has_position(user) && !graph.knows(user) {
            // In the table but dropped from the graph's bounded memory: read it afresh (the
            // store already holds this change).
            if let Err(e) = graph.load(&self.store, user).await {
                warn!(error = %e, user, "friend list not loaded");
                self.status.graph_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        graph.before_change(change);
        let owned_now = owned.read().unwrap_or_else(|p| p.into_inner()).clone();
        fanout.apply_change(
            change,
            now_ms(),
            |u| owned_now.contains(&partition_of_user(u, partition_count)),
            &*graph,
            effects,
        );
        graph.after_change(change);
        self.status.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Produces the deliveries and writes the cache entries in `effects`, then clears it.
    async fn flush(&mut self, producer: &mut DeliveryProducer, effects: &mut Effects) {
        producer.send_all(&effects.deliveries).await;
        if !effects.cache_writes.is_empty() {
            let entries: Vec<_> = effects
                .cache_writes
                .iter()
                .map(|w| {
                    (
                        w.user_id,
                        LatestLocation {
                            lat: w.lat,
                            lon: w.lon,
                            ts: w.ts,
                        },
                        w.expires_at_ms,
                    )
                })
                .collect();
            if let Err(e) = self.cache.set_many_until(&mut self.redis, &entries).await {
                // The cache is rebuilt from the topic; a failed write costs a page entry at most.
                warn!(error = %e, "latest-location cache write failed");
            }
        }
        effects.clear();
    }
}

impl nearby_common::admin::AdminView for Status {
    fn readiness(&self) -> (bool, String) {
        let body = format!(
            "events={} changes={} users={} poison={} graph_errors={}",
            self.events.load(Ordering::Relaxed),
            self.changes.load(Ordering::Relaxed),
            self.table_users.load(Ordering::Relaxed),
            self.poison.load(Ordering::Relaxed),
            self.graph_errors.load(Ordering::Relaxed),
        );
        if self.ready.load(Ordering::Acquire) {
            (true, format!("ready {body}"))
        } else {
            (false, format!("catching up {body}"))
        }
    }

    fn metrics(&self) -> String {
        metrics(self)
    }
}

/// Fanout's counters as Prometheus text.
fn metrics(s: &Status) -> String {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let d = &s.deliveries;
    let lag: Vec<(String, i64)> = s
        .lag
        .lag()
        .iter()
        .map(|(p, n)| (p.to_string(), *n))
        .collect();
    nearby_common::metrics::Snapshot::new("nearby_fanout")
        .gauge(
            "ready",
            "1 once the table is rebuilt and partitions are assigned",
            i64::from(s.ready.load(Ordering::Acquire)),
        )
        .counter("events", "Location events applied", get(&s.events))
        .counter("poison", "Undecodable events skipped", get(&s.poison))
        .counter("changes", "Friendship events applied", get(&s.changes))
        .gauge(
            "table_users",
            "Users in the latest-position table",
            i64::try_from(get(&s.table_users)).unwrap_or(i64::MAX),
        )
        .counter(
            "graph_errors",
            "Friend-list loads that failed",
            get(&s.graph_errors),
        )
        .counter(
            "deliveries_produced",
            "Deliveries acked by Kafka",
            get(&d.delivered),
        )
        .counter(
            "delivery_records",
            "Delivery records (one per step and gateway) acked by Kafka",
            get(&d.records),
        )
        .counter(
            "deliveries_failed",
            "Deliveries Kafka did not take after retries, or not encodable",
            get(&d.failed),
        )
        .counter(
            "deliveries_queue_full",
            "Deliveries dropped because the producer's queue stayed full",
            get(&d.queue_full),
        )
        .gauge(
            "delivery_queue",
            "Delivery records queued in the producer, not yet acknowledged",
            i64::try_from(get(&s.delivery_queue)).unwrap_or(i64::MAX),
        )
        .counter(
            "refreshed",
            "Users whose state was sent again when their partition was taken over",
            get(&s.refreshed),
        )
        .gauge(
            "owned_partitions",
            "Partitions of the location topic this instance fans out",
            i64::try_from(get(&s.owned_partitions)).unwrap_or(i64::MAX),
        )
        .gauges(
            "lag",
            "Records of the location topic not read yet, per partition",
            "partition",
            &lag,
        )
        .render()
}
