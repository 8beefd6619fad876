//! Friendship changes applied: accepted, removed, sharing off and on relink the pair or the
//! user, and the owner of the user's partition tells those who see a difference.

use nearby_common::UserId;
use nearby_schemas::{
    DeliveryPayload, FriendLocation, FriendshipEvent, FriendshipKind, LeftReason,
};

use super::{Effects, Fanout, left};
use crate::friend_graph::FriendGraph;
use crate::latest_locations::Slot;
use crate::point::round_cm;

impl Fanout {
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

    /// `user`'s friend list and sharing flag were read late (after a failed load, or after the
    /// bounded graph had dropped them while they were active): link them anew with their
    /// friends in the table who share, as if they had turned sharing on, and each active pair
    /// in range sees each other at once. Nothing when they do not share.
    pub fn relink<G: FriendGraph + ?Sized>(
        &mut self,
        user: UserId,
        now_ms: i64,
        owns: impl Fn(UserId) -> bool,
        graph: &G,
        out: &mut Effects,
    ) {
        if graph.shares_location(user) {
            self.sharing_on(user, now_ms, &owns, graph, out);
        }
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
}
