//! `LatestLocations`: every active user's latest position and live connection, from all
//! partitions, in about 50 bytes a user.
//!
//! Layout: users live in numbered slots of one vector of 32-byte [`Entry`]s (what the fan-out
//! loop reads about a friend: id, time, position, gateway; two per cache line), with the session
//! fingerprint beside it in a vector of its own, since only connects and disconnects read it. A
//! hash index maps a user id to its slot and stores nothing but the 4-byte slot: the id it is
//! compared with is the entry's. Freed slots are reused, so the vectors stay as long as the
//! largest number of users held at once.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use nearby_common::UserId;

use crate::gateways::{GatewayIdx, Gateways, NOT_CONNECTED};
use crate::point::Point;

/// A user's place in the table; also their place in the other per-user vectors of fanout.
pub(crate) type Slot = u32;

/// The session fingerprint of a user with no connection.
const NO_SESSION: u32 = 0;

/// What fan-out reads about one user: 32 bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) user_id: UserId,
    /// With a position, its report time; without one (a connection only), the last sign of
    /// life: the later of the last position's time and the connection's.
    pub(crate) ts: i64,
    /// [`Point::NOWHERE`] while the user has no position.
    pub(crate) point: Point,
    /// [`NOT_CONNECTED`] while the user has no live connection.
    pub(crate) gateway: GatewayIdx,
}

impl Entry {
    pub(crate) fn has_position(&self) -> bool {
        self.point != Point::NOWHERE
    }
}

/// The latest position and connection of every user fanout knows of: active users (a
/// position younger than the TTL) and connected users who have not reported one yet.
#[derive(Debug)]
pub struct LatestLocations {
    entries: Vec<Entry>,
    /// Per slot: a 32-bit fingerprint of the session id of the user's latest `Connected`.
    sessions: Vec<u32>,
    index: HashTable<Slot>,
    hasher: DefaultHashBuilder,
    free: Vec<Slot>,
    gateways: Gateways,
}

/// What the table holds about one user (see [`LatestLocations::get`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserState<'a> {
    /// The latest position and its report time, if the user has one (it may be older than
    /// the TTL until the next sweep: see [`crate::Fanout::is_active`]).
    pub position: Option<(Point, i64)>,
    /// The gateway of the user's live connection, if any.
    pub gateway: Option<&'a str>,
}

impl Default for LatestLocations {
    fn default() -> Self {
        LatestLocations::new()
    }
}

impl LatestLocations {
    /// An empty table.
    pub fn new() -> LatestLocations {
        LatestLocations {
            entries: Vec::new(),
            sessions: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            free: Vec::new(),
            gateways: Gateways::default(),
        }
    }

    /// How many users the table holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the table holds no user.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// What the table holds about `user`, if anything.
    pub fn get(&self, user: UserId) -> Option<UserState<'_>> {
        let entry = &self.entries[self.slot_of(user)? as usize];
        Some(UserState {
            position: entry.has_position().then_some((entry.point, entry.ts)),
            gateway: (entry.gateway != NOT_CONNECTED).then(|| &**self.gateways.name(entry.gateway)),
        })
    }

    /// How many gateways hold a connection of some user in the table.
    pub fn gateway_count(&self) -> usize {
        self.gateways.len()
    }

    /// Bytes the table has allocated (vectors and index at their capacity), for sizing.
    pub fn allocated_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>()
            + self.sessions.capacity() * size_of::<u32>()
            + self.index.allocation_size()
            + self.free.capacity() * size_of::<Slot>()
    }

    /// The number of slots in use or free: the length the per-slot vectors must have.
    pub(crate) fn slot_count(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn slot_of(&self, user: UserId) -> Option<Slot> {
        let entries = &self.entries;
        self.index
            .find(self.hasher.hash_one(user), |&slot| {
                entries[slot as usize].user_id == user
            })
            .copied()
    }

    pub(crate) fn entry(&self, slot: Slot) -> &Entry {
        &self.entries[slot as usize]
    }

    pub(crate) fn entry_mut(&mut self, slot: Slot) -> &mut Entry {
        &mut self.entries[slot as usize]
    }

    /// All slots, for the fan-out loop to index without a bounds-checked call per friend.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn gateway_name(&self, gateway: GatewayIdx) -> &Arc<str> {
        self.gateways.name(gateway)
    }

    /// Adds `user` (who must not be in the table) with no position and no connection.
    pub(crate) fn insert(&mut self, user: UserId, ts: i64) -> Slot {
        let entry = Entry {
            user_id: user,
            ts,
            point: Point::NOWHERE,
            gateway: NOT_CONNECTED,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = entry;
                self.sessions[slot as usize] = NO_SESSION;
                slot
            }
            None => {
                self.entries.push(entry);
                self.sessions.push(NO_SESSION);
                Slot::try_from(self.entries.len() - 1).expect("fewer than 4 billion users")
            }
        };
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hasher.hash_one(user), slot, |&s| {
            hasher.hash_one(entries[s as usize].user_id)
        });
        slot
    }

    /// Removes the user in `slot`, releasing their gateway; the slot is reused later.
    pub(crate) fn remove(&mut self, slot: Slot) {
        let entry = self.entries[slot as usize];
        self.gateways.release(entry.gateway);
        // The slot itself identifies the index entry: no need to compare ids.
        if let Ok(found) = self
            .index
            .find_entry(self.hasher.hash_one(entry.user_id), |&s| s == slot)
        {
            found.remove();
        }
        self.entries[slot as usize].gateway = NOT_CONNECTED;
        self.entries[slot as usize].point = Point::NOWHERE;
        self.free.push(slot);
    }

    /// Records the user's latest connection, replacing any earlier one.
    pub(crate) fn connect(&mut self, slot: Slot, gateway: &str, session: &str) {
        let new = self.gateways.acquire(gateway);
        // Acquire before release: reconnecting to the same gateway must not forget it between.
        self.gateways.release(self.entries[slot as usize].gateway);
        self.entries[slot as usize].gateway = new;
        self.sessions[slot as usize] = self.session_fingerprint(session);
    }

    /// Clears the user's connection if `session` (on `gateway`, when the event says) is the
    /// latest one; a disconnect of an older session changes nothing. Returns whether it cleared.
    pub(crate) fn disconnect(&mut self, slot: Slot, gateway: Option<&str>, session: &str) -> bool {
        let current = self.entries[slot as usize].gateway;
        if current == NOT_CONNECTED
            || self.sessions[slot as usize] != self.session_fingerprint(session)
            || gateway.is_some_and(|g| **self.gateways.name(current) != *g)
        {
            return false;
        }
        self.gateways.release(current);
        self.entries[slot as usize].gateway = NOT_CONNECTED;
        self.sessions[slot as usize] = NO_SESSION;
        true
    }

    /// 32 bits of the session id: two sessions of one user colliding is a one-in-four-billion
    /// chance, and the gateway id is compared too.
    fn session_fingerprint(&self, session: &str) -> u32 {
        let bits = self.hasher.hash_one(session) as u32;
        if bits == NO_SESSION { 1 } else { bits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_half_a_cache_line() {
        assert_eq!(size_of::<Entry>(), 32);
    }

    #[test]
    fn inserts_finds_and_reuses_slots() {
        let mut table = LatestLocations::new();
        let a = table.insert(10, 0);
        let b = table.insert(20, 0);
        assert_eq!(table.slot_of(10), Some(a));
        assert_eq!(table.slot_of(20), Some(b));
        assert_eq!(table.slot_of(30), None);
        table.remove(a);
        assert_eq!(table.slot_of(10), None);
        assert_eq!(table.len(), 1);
        let c = table.insert(30, 0);
        assert_eq!(c, a, "the freed slot is reused");
        assert_eq!(table.slot_of(30), Some(c));
        assert_eq!(table.slot_of(20), Some(b));
    }

    #[test]
    fn only_the_latest_session_disconnects() {
        let mut table = LatestLocations::new();
        let slot = table.insert(1, 0);
        table.connect(slot, "gw-1", "s1");
        table.connect(slot, "gw-2", "s2");
        assert_eq!(table.gateway_count(), 1, "gw-1 is forgotten");
        assert!(!table.disconnect(slot, Some("gw-1"), "s1"));
        assert_eq!(table.get(1).unwrap().gateway, Some("gw-2"));
        assert!(!table.disconnect(slot, Some("gw-1"), "s2"), "wrong gateway");
        assert!(table.disconnect(slot, None, "s2"));
        assert_eq!(table.get(1).unwrap().gateway, None);
        assert_eq!(table.gateway_count(), 0);
    }
}
