//! Expiry: [`Fanout::sweep`] drops the users whose position reached the TTL (and connections
//! quiet for too long), and the owner tells the friends who had them in range.

use nearby_common::UserId;
use nearby_schemas::LeftReason;

use super::{Effects, Fanout, left};
use crate::gateways::NOT_CONNECTED;
use crate::latest_locations::{Entry, Slot};
use crate::point::Point;

impl Fanout {
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
}
