//! A position report applied: stored, linked to the active friends on activation, and its
//! move fanned out to each of them (the hot path).

use nearby_common::geo::is_valid_position;
use nearby_schemas::{DeliveryPayload, FriendLocation, LeftReason, LocationEvent, PositionReport};

use super::{Applied, CacheWrite, Effects, Fanout, left};
use crate::friend_graph::FriendGraph;
use crate::latest_locations::{Entry, Slot};
use crate::point::{Point, round_cm};

impl Fanout {
    /// [`Fanout::apply`] for a position report: a newer one is stored (an older one never
    /// replaces it), and the owner of its partition writes the cache and fans the move out.
    pub(super) fn apply_position<G: FriendGraph + ?Sized>(
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
}
