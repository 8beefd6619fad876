//! `Fanout`: the state machine that turns location events into deliveries and cache writes.
//!
//! It is pure and synchronous: the caller feeds it each partition's events in log order, says
//! whether it owns the event's partition, and passes the time; it gets back what to produce.
//! Every instance applies every event (so its table covers all active users), but only the
//! owner of a user's partition fans that user's updates out, so each delivery is made once.
//!
//! This file holds the rules, what fanout hands back, its state and [`Fanout::apply`] with the
//! bookkeeping every role shares (connections, linking, delivering). The roles, each an
//! `impl Fanout` of its own: a position's fan-out (`positions`), friendship changes
//! (`changes`), expiry (`sweep`) and the re-send for a taken-over partition (`refresh`).

mod changes;
mod positions;
mod refresh;
mod sweep;

use std::sync::Arc;

use nearby_common::UserId;
use nearby_common::geo::NEARBY_RADIUS_M;
use nearby_schemas::{
    Delivery, DeliveryPayload, FriendLeft, FriendLocation, LeftReason, LocationBody, LocationEvent,
};

use crate::active_friends::ActiveFriends;
use crate::error::{Error, Result};
use crate::expiry::ExpiryQueue;
use crate::friend_graph::FriendGraph;
use crate::gateways::{GatewayIdx, NOT_CONNECTED};
use crate::latest_locations::{Entry, LatestLocations, Slot};
use crate::point::Radius;

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

    /// The deliveries `recipient` gets, with their gateway.
    pub fn to(&self, recipient: UserId) -> Vec<&RoutedDelivery> {
        self.deliveries
            .iter()
            .filter(|d| d.delivery.recipient_id == recipient)
            .collect()
    }

    /// The friend entries `recipient` gets.
    pub fn locations_to(&self, recipient: UserId) -> Vec<FriendLocation> {
        self.to(recipient)
            .into_iter()
            .filter_map(|d| match &d.delivery.payload {
                DeliveryPayload::FriendLocation(location) => Some(*location),
                DeliveryPayload::FriendLeft(_) => None,
            })
            .collect()
    }

    /// The `friend_left` messages `recipient` gets.
    pub fn lefts_to(&self, recipient: UserId) -> Vec<FriendLeft> {
        self.to(recipient)
            .into_iter()
            .filter_map(|d| match &d.delivery.payload {
                DeliveryPayload::FriendLeft(left) => Some(*left),
                DeliveryPayload::FriendLocation(_) => None,
            })
            .collect()
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

    /// The slot of `user` if they have a position (active, or aged and not swept yet).
    fn positioned(&self, user: UserId) -> Option<Slot> {
        self.table
            .slot_of(user)
            .filter(|&slot| self.table.entry(slot).has_position())
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
