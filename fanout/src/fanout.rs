//! `Fanout`: the state machine that turns location events into deliveries and cache writes.
//!
//! It is pure and synchronous: the caller feeds it each partition's events in log order, says
//! whether it owns the event's partition, and passes the time; it gets back what to produce.
//! Every instance applies every event (so its table covers all active users), but only the
//! owner of a user's partition fans that user's updates out, so each delivery is made once.

use std::sync::Arc;

use nearby_common::UserId;
use nearby_common::geo::{NEARBY_RADIUS_M, is_valid_position};
use nearby_schemas::{
    Delivery, DeliveryPayload, FriendLeft, FriendLocation, FriendshipEvent, FriendshipKind,
    LeftReason, LocationBody, LocationEvent, PositionReport,
};

use crate::active_friends::ActiveFriends;
use crate::error::{Error, Result};
use crate::expiry::ExpiryQueue;
use crate::friend_graph::FriendGraph;
use crate::gateways::{GatewayIdx, NOT_CONNECTED};
use crate::latest_locations::{Entry, LatestLocations, Slot};
use crate::point::{Point, Radius, round_cm};

/// The product rules fanout applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FanoutConfig {
    /// Friends at most this far apart (great-circle metres) see each other: 5 miles.
    pub radius_m: f64,
    /// A user is active while their latest position report is younger than this (ms): 10 min.
    pub ttl_ms: i64,
    /// A connection with no active position is forgotten after this long without a sign of
    /// life (ms), in case its `Disconnected` was lost with its gateway: 1 hour.
    pub connection_ttl_ms: i64,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            radius_m: NEARBY_RADIUS_M,
            ttl_ms: 10 * 60 * 1000,
            connection_ttl_ms: 60 * 60 * 1000,
        }
    }
}

/// What fanout asks the world to do; [`Fanout::apply`] and [`Fanout::sweep`] append to it, the
/// caller produces it and clears it (reusing it saves an allocation per event).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    /// Records for the recipients' gateway delivery topics, in the order to produce them.
    pub deliveries: Vec<RoutedDelivery>,
    /// Latest-location cache entries to write.
    pub cache_writes: Vec<CacheWrite>,
}

impl Effects {
    /// Empties both lists, keeping their memory.
    pub fn clear(&mut self) {
        self.deliveries.clear();
        self.cache_writes.clear();
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty() && self.cache_writes.is_empty()
    }
}

/// A delivery and the gateway holding its recipient's connection (its topic is
/// `<prefix>.deliveries.<gateway_id>`).
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedDelivery {
    /// The recipient's gateway.
    pub gateway_id: Arc<str>,
    /// The record to produce, keyed by `delivery.recipient_id`.
    pub delivery: Delivery,
}

/// A user's latest position for the Redis latest-location cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheWrite {
    /// The user.
    pub user_id: UserId,
    /// Latitude, WGS84 degrees, as reported.
    pub lat: f64,
    /// Longitude, WGS84 degrees, as reported.
    pub lon: f64,
    /// The report time, Unix epoch ms.
    pub ts: i64,
    /// When the user stops being active (`ts` + TTL): expire the key then (`PXAT`), so the
    /// cache and fanout drop the user together.
    pub expires_at_ms: i64,
}

/// What [`Fanout::apply`] made of an event (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A newer position of an active user.
    Moved,
    /// A position of a user who was not active: they are active now, linked to their active
    /// friends.
    Activated,
    /// A position no newer than the one held: ignored (an older report never replaces a newer
    /// one; an equal time is a duplicate).
    NotNewer,
    /// A position already older than the TTL: ignored, it would be inactive at once.
    Expired,
    /// A position that is not a valid WGS84 point, or a connect without a gateway: ignored.
    Invalid,
    /// A connection recorded.
    Connected,
    /// The latest connection closed.
    Disconnected,
    /// A disconnect of a session that is not the user's latest connection: ignored.
    StaleDisconnect,
}

impl Applied {
    /// Whether the event changed nothing.
    pub fn is_ignored(self) -> bool {
        matches!(
            self,
            Applied::NotNewer | Applied::Expired | Applied::Invalid | Applied::StaleDisconnect
        )
    }
}

/// Fanout's state: every active user's latest position and connection, the links between
/// active friends, and when each user expires.
#[derive(Debug)]
pub struct Fanout {
    config: FanoutConfig,
    radius: Radius,
    table: LatestLocations,
    active: ActiveFriends,
    expiry: ExpiryQueue,
    /// Reused buffers: a friend list being linked, slots a sweep looked at too early, the
    /// entries of a mover's friends.
    friend_ids: Vec<UserId>,
    gathered: Vec<Entry>,
    deferred: Vec<Slot>,
}

impl Fanout {
    /// An empty fanout with these rules; an error says which value is out of range.
    pub fn new(config: FanoutConfig) -> Result<Fanout> {
        let half_circumference = std::f64::consts::PI * nearby_common::geo::EARTH_RADIUS_M;
        if !(config.radius_m > 0.0 && config.radius_m <= half_circumference) {
            return Err(Error::Config(format!(
                "radius_m is {}; it must be more than 0 and at most {half_circumference:.0} m",
                config.radius_m
            )));
        }
        if config.ttl_ms <= 0 || config.connection_ttl_ms <= 0 {
            return Err(Error::Config(format!(
                "ttl_ms ({}) and connection_ttl_ms ({}) must be positive",
                config.ttl_ms, config.connection_ttl_ms
            )));
        }
        Ok(Fanout {
            config,
            radius: Radius::from_m(config.radius_m),
            table: LatestLocations::new(),
            active: ActiveFriends::default(),
            expiry: ExpiryQueue::default(),
            friend_ids: Vec::new(),
            deferred: Vec::new(),
            gathered: Vec::new(),
        })
    }

    /// The rules in force.
    pub fn config(&self) -> &FanoutConfig {
        &self.config
    }

    /// The table of latest positions and connections.
    pub fn table(&self) -> &LatestLocations {
        &self.table
    }

    /// Whether `user` has a position younger than the TTL at `now_ms`.
    pub fn is_active(&self, user: UserId, now_ms: i64) -> bool {
        self.table
            .slot_of(user)
            .is_some_and(|slot| self.is_live(self.table.entry(slot), now_ms))
    }

    /// Whether `user` has a position in the table (active, or aged and not swept yet).
    pub fn has_position(&self, user: UserId) -> bool {
        self.positioned(user).is_some()
    }

    /// How many pairs of friends are linked as active (each pair once).
    pub fn active_pair_count(&self) -> usize {
        self.active.pair_count()
    }

    /// Bytes held by the table, the active-friend links and the expiry queue, for sizing.
    pub fn allocated_bytes(&self) -> usize {
        self.table.allocated_bytes() + self.active.allocated_bytes() + self.expiry.allocated_bytes()
    }

    /// Applies one event of the location topic, taken in its partition's log order.
    ///
    /// Every instance applies every event, so its table covers all partitions; `owned` says
    /// whether this instance owns the event's partition, and only then does it produce
    /// deliveries and cache writes (appended to `out`). `graph` is read when the user becomes
    /// active.
    pub fn apply<G: FriendGraph + ?Sized>(
        &mut self,
        event: &LocationEvent,
        owned: bool,
        now_ms: i64,
        graph: &G,
        out: &mut Effects,
    ) -> Applied {
        match &event.body {
            LocationBody::Position(report) => {
                self.apply_position(event, report, owned, now_ms, graph, out)
            }
            LocationBody::Connected(connected) => match &event.gateway_id {
                Some(gateway) => {
                    self.connect(event.user_id, event.ts, gateway, &connected.session_id)
                }
                None => Applied::Invalid,
            },
            LocationBody::Disconnected(disconnected) => self.disconnect(
                event.user_id,
                event.gateway_id.as_deref(),
                &disconnected.session_id,
            ),
        }
    }

    /// Drops the users whose position has reached the TTL at `now_ms`, and returns how many.
    ///
    /// Every instance drops them from its table; for each one that `owns` says this instance
    /// owns (by the partition of the user's key), it tells each active, connected friend who
    /// had the user within the radius that the user left (`INACTIVE`). Cheap to call often:
    /// it looks only at the users due.
    pub fn sweep(
        &mut self,
        now_ms: i64,
        mut owns: impl FnMut(UserId) -> bool,
        out: &mut Effects,
    ) -> usize {
        let mut expired = 0;
        let mut deferred = std::mem::take(&mut self.deferred);
        while let Some(slot) = self.expiry.pop_due(now_ms) {
            let entry = *self.table.entry(slot);
            if entry.has_position() {
                if self.is_live(&entry, now_ms) {
                    // Updated since it was queued, or due later within this second.
                    deferred.push(slot);
                    continue;
                }
                // Announce before unlinking: the friends to tell are found through the links.
                if owns(entry.user_id) {
                    self.announce_inactive(slot, &entry, now_ms, out);
                }
                self.active.unlink_all(slot);
                self.table.entry_mut(slot).point = Point::NOWHERE;
                expired += 1;
                if entry.gateway == NOT_CONNECTED {
                    self.remove(slot);
                } else {
                    // Still connected: keep the gateway for the next report, for a while.
                    deferred.push(slot);
                }
            } else if entry.ts.saturating_add(self.config.connection_ttl_ms) > now_ms {
                deferred.push(slot);
            } else {
                self.remove(slot);
            }
        }
        // Re-schedule after the loop: a slot due later within this second would pop again.
        for slot in deferred.drain(..) {
            let entry = self.table.entry(slot);
            let life = if entry.has_position() {
                self.config.ttl_ms
            } else {
                self.config.connection_ttl_ms
            };
            self.expiry.schedule(slot, entry.ts.saturating_add(life));
        }
        self.deferred = deferred;
        expired
    }

    /// Sends again the current state of each active user whose last report is at or after
    /// `since_ms` and for whom `due(user, report time)` says so (their partition was taken
    /// over, and they reported since its gap began): every active friend in range gets the
    /// user's position, every active friend out of range a `friend_left` (`out_of_range`), and
    /// the user's cache entry is written again. One pass over the table, whatever the number
    /// of partitions: `since_ms` is the earliest time any of them asks for.
    ///
    /// For partitions just taken over: deliveries are at most once across an ownership change
    /// (reports read while nobody owned the partition, after an instance was killed or the
    /// partition was added, were applied to the table but fanned out by no one), and this puts
    /// the friends' screens right at once instead of at each user's next report. Both kinds of
    /// frame are idempotent for a client (it keeps the newest `updated_at`; a `friend_left` for
    /// someone not on its list changes nothing). Returns how many users it sent.
    pub fn refresh(
        &self,
        since_ms: i64,
        mut due: impl FnMut(UserId, i64) -> bool,
        now_ms: i64,
        out: &mut Effects,
    ) -> usize {
        let entries = self.table.entries();
        let mut sent = 0;
        for (slot, me) in entries.iter().enumerate() {
            if !me.has_position() || me.ts < since_ms || !self.is_live(me, now_ms) {
                continue;
            }
            if !due(me.user_id, me.ts) {
                continue;
            }
            sent += 1;
            let (lat, lon) = me.point.to_degrees();
            out.cache_writes.push(CacheWrite {
                user_id: me.user_id,
                lat,
                lon,
                ts: me.ts,
                expires_at_ms: me.ts.saturating_add(self.config.ttl_ms),
            });
            let slot = Slot::try_from(slot).expect("slots fit a Slot");
            for &friend_slot in self.active.of(slot) {
                let friend = &entries[friend_slot as usize];
                if !self.is_live(friend, now_ms) {
                    continue;
                }
                if self.radius.contains(me.point, friend.point) {
                    let payload = DeliveryPayload::FriendLocation(FriendLocation {
                        friend_id: me.user_id,
                        lat,
                        lon,
                        distance_m: round_cm(me.point.distance_m(friend.point)),
                        updated_at: me.ts,
                    });
                    self.deliver(out, friend, payload);
                } else {
                    self.deliver(out, friend, left(me.user_id, LeftReason::OutOfRange));
                }
            }
        }
        sent
    }

    /// Applies one record of the friendship events topic, taken in its partition's order.
    ///
    /// Every instance applies every change to its links; deliveries *about* a user come only
    /// from the owner of that user's partition (`owns`), the same instance that fans out the
    /// user's positions, so a friend never gets a position after the `friend_left` that ends
    /// it. The caller updates `graph` for accepted friendships and sharing switches *before*
    /// this call, and for removals *after* it (the removal is told only to pairs the graph
    /// still shows as friends).
    pub fn apply_change<G: FriendGraph + ?Sized>(
        &mut self,
        change: &FriendshipEvent,
        now_ms: i64,
        owns: impl Fn(UserId) -> bool,
        graph: &G,
        out: &mut Effects,
    ) {
        let user = change.user_id;
        match (change.kind, change.other_id) {
            (FriendshipKind::Accepted, Some(other)) => {
                self.accepted(user, other, now_ms, &owns, graph, out)
            }
            (FriendshipKind::Removed, Some(other)) => {
                self.removed(user, other, now_ms, &owns, graph, out)
            }
            (FriendshipKind::SharingOff, _) => self.sharing_off(user, now_ms, &owns, out),
            (FriendshipKind::SharingOn, _) => self.sharing_on(user, now_ms, &owns, graph, out),
            // A pending request shares nothing; profile changes are the gateways' business.
            _ => {}
        }
    }

    /// `user` and `other` are friends now: link them if both are in the table and share, and
    /// if both are active and in range, `other` gets `user`'s position (the other side's
    /// record brings `user` theirs).
    fn accepted<G: FriendGraph + ?Sized>(
        &mut self,
        user: UserId,
        other: UserId,
        now_ms: i64,
        owns: &impl Fn(UserId) -> bool,
        graph: &G,
        out: &mut Effects,
    ) {
        let (Some(a), Some(b)) = (self.positioned(user), self.positioned(other)) else {
            return;
        };
        if a == b || !graph.shares_location(user) || !graph.shares_location(other) {
            return;
        }
        // The first of the pair's two records links them; the second finds them linked.
        if !self.active.of(a).contains(&b) {
            self.active.link(a, b);
        }
        if owns(user) {
            self.tell_position(a, b, now_ms, out);
        }
    }

    /// `user` and `other` are no longer friends (or a request ended): unlink them, and if they
    /// were friends who could see each other, `other` is told `user` left (`UNFRIENDED`).
    fn removed<G: FriendGraph + ?Sized>(
        &mut self,
        user: UserId,
        other: UserId,
        now_ms: i64,
        owns: &impl Fn(UserId) -> bool,
        graph: &G,
        out: &mut Effects,
    ) {
        let (Some(a), Some(b)) = (self.positioned(user), self.positioned(other)) else {
            return;
        };
        // Whether they were linked is known only to the first of the two records (it unlinks);
        // whether they were friends, the graph still says for both (it is updated after).
        let were_friends = graph.are_friends(user, other);
        self.active.unlink(a, b);
        if owns(user)
            && were_friends
            && graph.shares_location(user)
            && graph.shares_location(other)
            && self.in_range_and_live(a, b, now_ms)
        {
            let recipient = *self.table.entry(b);
            self.deliver(out, &recipient, left(user, LeftReason::Unfriended));
        }
    }

    /// `user` stopped sharing: each friend who could see them is told they left, they are told
    /// each such friend left (sharing is both ways), and their links go.
    fn sharing_off(
        &mut self,
        user: UserId,
        now_ms: i64,
        owns: &impl Fn(UserId) -> bool,
        out: &mut Effects,
    ) {
        let Some(slot) = self.positioned(user) else {
            return;
        };
        let me = *self.table.entry(slot);
        for &friend_slot in self.active.of(slot) {
            if !self.in_range_and_live(slot, friend_slot, now_ms) {
                continue;
            }
            let friend = self.table.entry(friend_slot);
            if owns(user) {
                self.deliver(out, friend, left(user, LeftReason::SharingOff));
            }
            if owns(friend.user_id) {
                self.deliver(out, &me, left(friend.user_id, LeftReason::SharingOff));
            }
        }
        self.active.unlink_all(slot);
    }

    /// `user` shares again: linked anew with their friends in the table who share, and each
    /// active pair in range sees each other at once.
    fn sharing_on<G: FriendGraph + ?Sized>(
        &mut self,
        user: UserId,
        now_ms: i64,
        owns: &impl Fn(UserId) -> bool,
        graph: &G,
        out: &mut Effects,
    ) {
        let Some(slot) = self.positioned(user) else {
            return;
        };
        // Any links left are from before (a repeated record): start over, so none is doubled.
        self.active.unlink_all(slot);
        self.link(slot, user, graph);
        let linked = self.active.of(slot).to_vec();
        for friend_slot in linked {
            if owns(user) {
                self.tell_position(slot, friend_slot, now_ms, out);
            }
            let friend = self.table.entry(friend_slot).user_id;
            if owns(friend) {
                self.tell_position(friend_slot, slot, now_ms, out);
            }
        }
    }

    /// The slot of `user` if they have a position (active, or aged and not swept yet).
    fn positioned(&self, user: UserId) -> Option<Slot> {
        self.table
            .slot_of(user)
            .filter(|&slot| self.table.entry(slot).has_position())
    }

    /// Whether both are active at `now_ms` and within the radius of each other.
    fn in_range_and_live(&self, a: Slot, b: Slot, now_ms: i64) -> bool {
        let (a, b) = (self.table.entry(a), self.table.entry(b));
        self.is_live(a, now_ms) && self.is_live(b, now_ms) && self.radius.contains(a.point, b.point)
    }

    /// Sends `subject`'s position to `recipient` if both are active and in range.
    fn tell_position(&self, subject: Slot, recipient: Slot, now_ms: i64, out: &mut Effects) {
        if !self.in_range_and_live(subject, recipient, now_ms) {
            return;
        }
        let (me, to) = (self.table.entry(subject), self.table.entry(recipient));
        let (lat, lon) = me.point.to_degrees();
        self.deliver(
            out,
            to,
            DeliveryPayload::FriendLocation(FriendLocation {
                friend_id: me.user_id,
                lat,
                lon,
                distance_m: round_cm(me.point.distance_m(to.point)),
                updated_at: me.ts,
            }),
        );
    }

    fn apply_position<G: FriendGraph + ?Sized>(
        &mut self,
        event: &LocationEvent,
        report: &PositionReport,
        owned: bool,
        now_ms: i64,
        graph: &G,
        out: &mut Effects,
    ) -> Applied {
        let (user, ts) = (event.user_id, event.ts);
        if !is_valid_position(report.lat, report.lon) {
            return Applied::Invalid;
        }
        if ts.saturating_add(self.config.ttl_ms) <= now_ms {
            return Applied::Expired;
        }
        let new = Point::from_degrees(report.lat, report.lon);
        // The previous position counts only while active (one aged past the TTL, not swept
        // yet, makes this an activation). Links are made only when there was no position at
        // all: a user not swept yet is still linked.
        let (slot, previous, needs_links) = match self.table.slot_of(user) {
            Some(slot) => {
                let entry = self.table.entry(slot);
                if !entry.has_position() {
                    (slot, None, true)
                } else if ts <= entry.ts {
                    return Applied::NotNewer;
                } else {
                    let previous = self.is_live(entry, now_ms).then_some(entry.point);
                    (slot, previous, false)
                }
            }
            None => (self.insert(user, ts), None, true),
        };
        let entry = self.table.entry_mut(slot);
        entry.point = new;
        entry.ts = ts;
        // Link after storing the position and before fanning out, so the loop below sees the
        // friends who were already active.
        if needs_links {
            self.link(slot, user, graph);
        }
        // Usually a no-op: the queued deadline is earlier, and the sweep re-checks then.
        self.expiry
            .schedule(slot, ts.saturating_add(self.config.ttl_ms));
        if owned {
            out.cache_writes.push(CacheWrite {
                user_id: user,
                lat: report.lat,
                lon: report.lon,
                ts,
                expires_at_ms: ts.saturating_add(self.config.ttl_ms),
            });
            // The buffer is lent out so the loop can read the rest of `self` meanwhile.
            let mut gathered = std::mem::take(&mut self.gathered);
            self.fan_out_move(slot, previous, report, now_ms, &mut gathered, out);
            self.gathered = gathered;
        }
        if previous.is_some() {
            Applied::Moved
        } else {
            Applied::Activated
        }
    }

    /// The fan-out of one user's move from `previous` (if they were active) to `report`, now
    /// stored in `slot`: each active friend is compared with the old and the new position.
    fn fan_out_move(
        &self,
        slot: Slot,
        previous: Option<Point>,
        report: &PositionReport,
        now_ms: i64,
        gathered: &mut Vec<Entry>,
        out: &mut Effects,
    ) {
        let entries = self.table.entries();
        let me = entries[slot as usize];
        // Gather the friends' entries first: they are scattered over the table, and a loop that
        // only copies lets the processor fetch many at once instead of one per distance test.
        gathered.clear();
        gathered.extend(
            self.active
                .of(slot)
                .iter()
                .map(|&friend_slot| entries[friend_slot as usize]),
        );
        for friend in gathered.iter() {
            if !self.is_live(friend, now_ms) {
                continue; // aged past the TTL, not swept yet: inactive
            }
            let now_in = self.radius.contains(me.point, friend.point);
            let was_in = previous.is_some_and(|p| self.radius.contains(p, friend.point));
            if now_in {
                let distance_m = round_cm(me.point.distance_m(friend.point));
                self.deliver(
                    out,
                    friend,
                    DeliveryPayload::FriendLocation(FriendLocation {
                        friend_id: me.user_id,
                        lat: report.lat,
                        lon: report.lon,
                        distance_m,
                        updated_at: me.ts,
                    }),
                );
                if !was_in {
                    // Came into range: the mover learns of the friend now too, rather than at
                    // the friend's next report.
                    let (lat, lon) = friend.point.to_degrees();
                    self.deliver(
                        out,
                        &me,
                        DeliveryPayload::FriendLocation(FriendLocation {
                            friend_id: friend.user_id,
                            lat,
                            lon,
                            distance_m,
                            updated_at: friend.ts,
                        }),
                    );
                }
            } else if was_in {
                self.deliver(out, friend, left(me.user_id, LeftReason::OutOfRange));
                self.deliver(out, &me, left(friend.user_id, LeftReason::OutOfRange));
            }
        }
    }

    /// Tells the active, connected friends who had the expiring user in range that they left.
    fn announce_inactive(&self, slot: Slot, gone: &Entry, now_ms: i64, out: &mut Effects) {
        let entries = self.table.entries();
        for &friend_slot in self.active.of(slot) {
            let friend = &entries[friend_slot as usize];
            if self.is_live(friend, now_ms) && self.radius.contains(gone.point, friend.point) {
                self.deliver(out, friend, left(gone.user_id, LeftReason::Inactive));
            }
        }
    }

    /// Queues `payload` for `recipient` if connected; a user with no connection gets nothing
    /// (their next first page comes from the cache).
    fn deliver(&self, out: &mut Effects, recipient: &Entry, payload: DeliveryPayload) {
        let gateway: GatewayIdx = recipient.gateway;
        if gateway == NOT_CONNECTED {
            return;
        }
        out.deliveries.push(RoutedDelivery {
            gateway_id: self.table.gateway_name(gateway).clone(),
            delivery: Delivery {
                recipient_id: recipient.user_id,
                payload,
            },
        });
    }

    fn connect(&mut self, user: UserId, ts: i64, gateway: &str, session: &str) -> Applied {
        let slot = match self.table.slot_of(user) {
            Some(slot) => slot,
            None => {
                let slot = self.insert(user, ts);
                self.expiry
                    .schedule(slot, ts.saturating_add(self.config.connection_ttl_ms));
                slot
            }
        };
        // The latest connect wins: per-user order on the topic makes "latest" well defined.
        self.table.connect(slot, gateway, session);
        let entry = self.table.entry_mut(slot);
        if !entry.has_position() {
            entry.ts = entry.ts.max(ts);
        }
        Applied::Connected
    }

    fn disconnect(&mut self, user: UserId, gateway: Option<&str>, session: &str) -> Applied {
        let Some(slot) = self.table.slot_of(user) else {
            return Applied::StaleDisconnect;
        };
        if !self.table.disconnect(slot, gateway, session) {
            return Applied::StaleDisconnect;
        }
        if !self.table.entry(slot).has_position() {
            self.remove(slot);
        }
        Applied::Disconnected
    }

    /// Links a user who just got a position with each friend who has one, both ways. Users who
    /// do not share their location are not linked (the place where sharing off suppresses).
    fn link<G: FriendGraph + ?Sized>(&mut self, slot: Slot, user: UserId, graph: &G) {
        if !graph.shares_location(user) {
            return;
        }
        let mut friend_ids = std::mem::take(&mut self.friend_ids);
        friend_ids.clear();
        graph.friends_of(user, &mut friend_ids);
        for &friend in &friend_ids {
            if friend == user {
                continue;
            }
            if let Some(friend_slot) = self.table.slot_of(friend)
                && self.table.entry(friend_slot).has_position()
                && graph.shares_location(friend)
            {
                self.active.link(slot, friend_slot);
            }
        }
        self.friend_ids = friend_ids;
    }

    fn insert(&mut self, user: UserId, ts: i64) -> Slot {
        let slot = self.table.insert(user, ts);
        self.active.grow_to(self.table.slot_count());
        self.expiry.grow_to(self.table.slot_count());
        slot
    }

    fn remove(&mut self, slot: Slot) {
        self.active.unlink_all(slot);
        self.expiry.forget(slot);
        self.table.remove(slot);
    }

    fn is_live(&self, entry: &Entry, now_ms: i64) -> bool {
        entry.has_position() && entry.ts.saturating_add(self.config.ttl_ms) > now_ms
    }
}

fn left(friend_id: UserId, reason: LeftReason) -> DeliveryPayload {
    DeliveryPayload::FriendLeft(FriendLeft { friend_id, reason })
}
