//! The records of the two topics, applied: location events a step at a time (friend lists
//! loaded for users becoming active, then the core), friendship events one by one; and the
//! flush that produces a step's deliveries and writes its cache entries.

use std::sync::atomic::Ordering;

use futures::FutureExt;
use nearby_common::UserId;
use nearby_common::clock::now_ms;
use nearby_common::lag::LagStats;
use nearby_common::partition::partition_of_user;
use nearby_common::redis_store::LatestLocation;
use nearby_schemas::{FriendshipEvent, FriendshipKind, LocationBody, LocationEvent};
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use tracing::warn;

use super::run::Running;
use crate::FriendGraph;

impl Running {
    /// A record of the friendship events topic: decoded (a bad one is logged, counted and
    /// skipped), applied, and its deliveries flushed.
    pub(super) async fn on_change(&mut self, msg: KafkaResult<BorrowedMessage<'_>>) {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "friendship event consume error");
                return;
            }
        };
        let Some(change) = msg.payload().and_then(|b| {
            match nearby_schemas::decode::<FriendshipEvent>(b) {
                Ok(e) => Some(e),
                Err(e) => {
                    warn!(error = %e, partition = msg.partition(), offset = msg.offset(), "undecodable friendship event skipped");
                    self.status.poison.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        }) else {
            return;
        };
        self.apply_change(&change).await;
        self.flush().await;
    }

    /// Applies one friendship event: the graph's side of it, then the core's.
    async fn apply_change(&mut self, change: &FriendshipEvent) {
        let user = change.user_id;
        let matters = matches!(
            change.kind,
            FriendshipKind::Accepted | FriendshipKind::SharingOn | FriendshipKind::SharingOff
        );
        if matters && self.fanout.has_position(user) && !self.graph.knows(user) {
            // In the table but dropped from the graph's bounded memory: read it afresh (the
            // store already holds this change).
            if let Err(e) = self.graph.load(&self.store, user).await {
                warn!(error = %e, user, "friend list not loaded");
                self.status.graph_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.graph.before_change(change);
        // A copy: the rebalance callbacks write the set, and hold its lock only that long.
        let owned_now = self.owned.read().unwrap_or_else(|p| p.into_inner()).clone();
        let partition_count = self.partition_count;
        self.fanout.apply_change(
            change,
            now_ms(),
            |u| owned_now.contains(&partition_of_user(u, partition_count)),
            &self.graph,
            &mut self.effects,
        );
        self.graph.after_change(change);
        self.status.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// A step of location events: `first`, read from `table`, and those `table` has fetched
    /// already (up to `step_events`). Each is applied in the order it came; the step's
    /// deliveries and cache writes are flushed together, then its progress recorded.
    pub(super) async fn on_step(
        &mut self,
        table: &StreamConsumer<LagStats>,
        first: KafkaResult<BorrowedMessage<'_>>,
    ) {
        // Why steps: events already fetched are taken together (without waiting
        // for more), so users becoming active have their friend lists read
        // concurrently, and the step's deliveries and cache writes go out in one
        // record per gateway and one Redis round trip. Order is kept: the events
        // are applied one by one in the order they came.
        let mut step = Vec::with_capacity(16);
        step.push(first);
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
                Err(e) => {
                    warn!(error = %e, "location consume error");
                    continue;
                }
            };
            let partition = msg.partition();
            if !marked.contains(&partition) {
                // One mark per partition and step: its first record's offset and time.
                marked.push(partition);
                let at = msg.timestamp().to_millis().unwrap_or(now);
                self.checkpoints.mark(partition, msg.offset(), at);
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
        // Becoming active: read the friend lists afresh (friendships made while the user was
        // away count), all of the step's at once. Active users the graph does not hold (a
        // load that failed, or dropped from its bounded memory) are read again too: until
        // then the graph takes them for friendless and not sharing.
        let (mut activating, mut late) = (Vec::new(), Vec::new());
        for (_, e) in &events {
            if !matches!(e.body, LocationBody::Position(_)) {
                continue;
            }
            if !self.fanout.is_active(e.user_id, now) {
                activating.push(e.user_id);
            } else if !self.graph.knows(e.user_id) {
                late.push(e.user_id);
            }
        }
        for list in [&mut activating, &mut late] {
            list.sort_unstable();
            list.dedup();
        }
        self.load(&[activating.as_slice(), late.as_slice()].concat())
            .await;
        // Their active friends the graph does not hold, so that no link waits for a friend's
        // sharing flag; those were missing links too, so they are relinked with the late.
        let unknown_friends = self.unknown_active_friends(&[&activating, &late], now);
        self.load(&unknown_friends).await;
        late.extend(unknown_friends);
        // A copy, once per step: the rebalance callbacks write the set, and hold its lock
        // only that long (a revoke that comes during the step is seen by the next one).
        let owned_now = self.owned.read().unwrap_or_else(|p| p.into_inner()).clone();
        let partition_count = self.partition_count;
        for user in late {
            if self.graph.knows(user) {
                self.fanout.relink(
                    user,
                    now,
                    |u| owned_now.contains(&partition_of_user(u, partition_count)),
                    &self.graph,
                    &mut self.effects,
                );
            }
        }
        for (partition, event) in &events {
            self.fanout.apply(
                event,
                owned_now.contains(partition),
                now,
                &self.graph,
                &mut self.effects,
            );
        }
        self.status
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.flush().await;
        // Progress moves only once the step's deliveries are queued: a commit (on
        // revoke, say) never claims an event whose deliveries were not made.
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(read_to);
    }

    /// Reads the friend lists and sharing flags of `users` into the graph; a failure is logged
    /// and counted (the user stays unknown, so not shown, and is read again on their next
    /// report).
    async fn load(&mut self, users: &[UserId]) {
        if users.is_empty() {
            return;
        }
        for (user, e) in self
            .graph
            .load_many(&self.store, users, self.config.graph_loads)
            .await
        {
            warn!(error = %e, user, "friend list not loaded");
            self.status.graph_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The friends of `users` who are active and whom the graph does not hold, each once.
    fn unknown_active_friends(&self, users: &[&[UserId]], now: i64) -> Vec<UserId> {
        let (mut out, mut friends) = (Vec::new(), Vec::new());
        for &user in users.iter().copied().flatten() {
            friends.clear();
            self.graph.friends_of(user, &mut friends);
            out.extend(
                friends
                    .iter()
                    .filter(|&&f| self.fanout.is_active(f, now) && !self.graph.knows(f)),
            );
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Produces the deliveries and writes the cache entries in `effects`, then clears it.
    pub(super) async fn flush(&mut self) {
        self.producer.send_all(&self.effects.deliveries).await;
        if !self.effects.cache_writes.is_empty() {
            let entries: Vec<_> = self
                .effects
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
        self.effects.clear();
    }
}
