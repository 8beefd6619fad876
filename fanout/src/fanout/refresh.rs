//! The takeover re-send: [`Fanout::refresh`] sends again the current state of the users of
//! partitions this instance was just given, whose reports nobody may have fanned out.

use nearby_common::UserId;
use nearby_schemas::{DeliveryPayload, FriendLocation, LeftReason};

use super::{CacheWrite, Effects, Fanout, left};
use crate::latest_locations::Slot;
use crate::point::round_cm;

impl Fanout {
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
}
