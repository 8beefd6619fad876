//! Friendship and sharing changes as the people involved see them: an accepted friend in range
//! appears at once, an unfriended one or one who stops sharing leaves at once, with the right
//! reason, and nothing of theirs follows.

use nearby_common::friendship::{pair_events, solo_event};
use nearby_fanout::{Effects, Fanout, FanoutConfig, InMemoryFriendGraph};
use nearby_schemas::{FriendLeft, FriendshipKind, LeftReason, LocationEvent};
use nearby_testkit::events::*;
use nearby_testkit::fanout::close;

const ANA: i64 = 1;
const BEN: i64 = 2;
const CAROL: i64 = 3;
const DAN: i64 = 4;

/// Ana, Ben, Carol and Dan, each connected on their own gateway; Ana–Ben and Ana–Dan are
/// friends, Carol knows nobody yet.
struct World {
    fanout: Fanout,
    graph: InMemoryFriendGraph,
    out: Effects,
    now: i64,
}

impl World {
    fn new() -> World {
        let mut graph = InMemoryFriendGraph::new();
        graph.befriend(ANA, BEN);
        graph.befriend(ANA, DAN);
        let mut w = World {
            fanout: Fanout::new(FanoutConfig::default()).unwrap(),
            graph,
            out: Effects::default(),
            now: T0,
        };
        for (user, gw) in [(ANA, "gw-a"), (BEN, "gw-b"), (CAROL, "gw-c"), (DAN, "gw-d")] {
            w.apply(&connected(user, T0, gw, "s"));
        }
        w
    }

    fn apply(&mut self, event: &LocationEvent) {
        self.now += 1_000;
        self.out.clear();
        self.fanout
            .apply(event, true, self.now, &self.graph, &mut self.out);
    }

    /// `user` reports `at`, now.
    fn at(&mut self, user: i64, at: (f64, f64)) {
        self.now += 1_000;
        let event = position(user, self.now, at);
        self.out.clear();
        self.fanout
            .apply(&event, true, self.now, &self.graph, &mut self.out);
    }

    /// Applies change records, owning the partitions `owns` says, collecting every output.
    fn change(&mut self, events: &[nearby_schemas::FriendshipEvent], owns: impl Fn(i64) -> bool) {
        self.out.clear();
        let mut step = Effects::default();
        for event in events {
            self.fanout
                .apply_change(event, self.now, &owns, &self.graph, &mut step);
            self.out.deliveries.append(&mut step.deliveries);
        }
    }

    /// Ana, Ben and Dan active around Paris, each within 2 km of the others; Carol too.
    fn all_active() -> World {
        let mut w = World::new();
        w.at(BEN, north_of(PARIS, 1_000.0));
        w.at(DAN, north_of(PARIS, -1_000.0));
        w.at(CAROL, north_of(PARIS, 500.0));
        w.at(ANA, PARIS);
        w
    }
}

fn left(friend_id: i64, reason: LeftReason) -> FriendLeft {
    FriendLeft { friend_id, reason }
}

fn everyone(_: i64) -> bool {
    true
}

#[test]
fn a_request_alone_shares_nothing() {
    let mut w = World::all_active();
    w.change(
        &pair_events(FriendshipKind::Requested, CAROL, ANA, w.now),
        everyone,
    );
    assert!(w.out.deliveries.is_empty());
    w.at(CAROL, north_of(PARIS, 200.0));
    assert!(w.out.to(ANA).is_empty(), "a pending requester sees nothing");
}

#[test]
fn accepting_a_friend_in_range_shows_each_to_the_other_at_once() {
    let mut w = World::all_active();
    assert!(w.out.to(CAROL).is_empty());
    w.graph.befriend(ANA, CAROL);
    w.change(
        &pair_events(FriendshipKind::Accepted, ANA, CAROL, w.now),
        everyone,
    );
    let to_carol = w.out.locations_to(CAROL);
    let to_ana = w.out.locations_to(ANA);
    assert_eq!(to_carol.len(), 1, "{:?}", w.out.deliveries);
    assert_eq!(to_carol[0].friend_id, ANA);
    assert!(close(to_carol[0].distance_m, 500.0));
    assert_eq!(to_ana.len(), 1);
    assert_eq!(to_ana[0].friend_id, CAROL);
    assert_eq!(&*w.out.to(CAROL)[0].gateway_id, "gw-c");
    // Linked once, though both records were applied; later moves go to the new friend.
    assert_eq!(w.fanout.active_pair_count(), 3);
    w.at(ANA, north_of(PARIS, 100.0));
    assert_eq!(w.out.locations_to(CAROL).len(), 1);
}

#[test]
fn accepting_a_friend_out_of_range_shows_nothing_until_they_come_close() {
    let mut w = World::all_active();
    w.at(CAROL, north_of(PARIS, 20_000.0));
    w.graph.befriend(ANA, CAROL);
    w.change(
        &pair_events(FriendshipKind::Accepted, CAROL, ANA, w.now),
        everyone,
    );
    assert!(w.out.deliveries.is_empty());
    w.at(CAROL, north_of(PARIS, 3_000.0));
    assert_eq!(w.out.locations_to(ANA).len(), 1);
    assert_eq!(w.out.locations_to(CAROL).len(), 1);
}

#[test]
fn unfriending_tells_both_sides_and_nothing_follows() {
    let mut w = World::all_active();
    // Either side's owner tells the other side: each record is fanned out by its subject's owner.
    w.change(
        &pair_events(FriendshipKind::Removed, BEN, ANA, w.now),
        everyone,
    );
    w.graph.unfriend(ANA, BEN);
    assert_eq!(w.out.lefts_to(ANA), [left(BEN, LeftReason::Unfriended)]);
    assert_eq!(w.out.lefts_to(BEN), [left(ANA, LeftReason::Unfriended)]);
    assert_eq!(w.out.deliveries.len(), 2);
    w.at(ANA, north_of(PARIS, 50.0));
    assert!(w.out.to(BEN).is_empty());
    assert_eq!(w.out.locations_to(DAN).len(), 1, "Dan is still a friend");
    w.at(BEN, north_of(PARIS, 60.0));
    assert!(w.out.to(ANA).is_empty());
}

#[test]
fn a_withdrawn_request_tells_nobody() {
    let mut w = World::all_active();
    w.change(
        &pair_events(FriendshipKind::Requested, CAROL, ANA, w.now),
        everyone,
    );
    w.change(
        &pair_events(FriendshipKind::Removed, CAROL, ANA, w.now),
        everyone,
    );
    assert!(w.out.deliveries.is_empty());
}

#[test]
fn sharing_off_tells_every_friend_who_had_you_and_empties_your_list() {
    let mut w = World::all_active();
    w.at(DAN, north_of(PARIS, -30_000.0)); // Dan leaves range: he no longer has Ana listed
    w.graph.set_sharing(ANA, false);
    w.change(
        &[solo_event(FriendshipKind::SharingOff, ANA, w.now)],
        everyone,
    );
    assert_eq!(w.out.lefts_to(BEN), [left(ANA, LeftReason::SharingOff)]);
    assert_eq!(w.out.lefts_to(ANA), [left(BEN, LeftReason::SharingOff)]);
    assert!(w.out.to(DAN).is_empty(), "Dan is out of range");
    assert!(w.out.to(CAROL).is_empty(), "Carol is no friend");
    // No report of Ana's reaches anyone, and she gets no one's, while it is off.
    w.at(ANA, north_of(PARIS, 10.0));
    assert!(w.out.deliveries.is_empty());
    w.at(DAN, north_of(PARIS, -1_000.0));
    assert!(w.out.deliveries.is_empty());
    w.at(BEN, north_of(PARIS, 900.0));
    assert!(w.out.deliveries.is_empty());

    // On again: Ana appears to Ben and Dan, and sees them, at once.
    w.graph.set_sharing(ANA, true);
    w.change(
        &[solo_event(FriendshipKind::SharingOn, ANA, w.now)],
        everyone,
    );
    let mut seen_by: Vec<i64> = w
        .out
        .deliveries
        .iter()
        .filter(|d| d.delivery.recipient_id != ANA)
        .map(|d| d.delivery.recipient_id)
        .collect();
    seen_by.sort_unstable();
    assert_eq!(seen_by, [BEN, DAN]);
    let mut ana_sees: Vec<i64> = w
        .out
        .locations_to(ANA)
        .iter()
        .map(|l| l.friend_id)
        .collect();
    ana_sees.sort_unstable();
    assert_eq!(ana_sees, [BEN, DAN]);
    // A repeated record changes nothing but re-sends the same positions.
    w.change(
        &[solo_event(FriendshipKind::SharingOn, ANA, w.now)],
        everyone,
    );
    assert_eq!(w.fanout.active_pair_count(), 2);
    w.at(ANA, north_of(PARIS, 20.0));
    assert_eq!(w.out.deliveries.len(), 2);
}

#[test]
fn each_change_is_told_by_the_owner_of_the_user_it_is_about() {
    let mut w = World::all_active();
    let only_ana = |u: i64| u == ANA;
    w.graph.set_sharing(ANA, false);
    w.change(
        &[solo_event(FriendshipKind::SharingOff, ANA, w.now)],
        only_ana,
    );
    // Ana's owner tells her friends about her; Ben's and Dan's owners tell her about them.
    let recipients: Vec<i64> = w
        .out
        .deliveries
        .iter()
        .map(|d| d.delivery.recipient_id)
        .collect();
    assert!(!recipients.contains(&ANA));
    assert_eq!(recipients.len(), 2);
    w.graph.set_sharing(ANA, true);
    w.change(&[solo_event(FriendshipKind::SharingOn, ANA, w.now)], |u| {
        u != ANA
    });
    assert!(
        w.out
            .deliveries
            .iter()
            .all(|d| d.delivery.recipient_id == ANA)
    );
    assert_eq!(w.out.deliveries.len(), 2);
    // An instance owning nobody still applies the change: the links are there for the owner.
    w.change(
        &pair_events(FriendshipKind::Removed, ANA, BEN, w.now),
        |_| false,
    );
    w.graph.unfriend(ANA, BEN);
    assert!(w.out.deliveries.is_empty());
    w.at(ANA, PARIS);
    assert!(w.out.to(BEN).is_empty());
}

#[test]
fn an_inactive_users_changes_take_effect_when_they_report() {
    let mut w = World::new();
    w.at(BEN, north_of(PARIS, 1_000.0));
    w.graph.set_sharing(ANA, false);
    w.change(
        &[solo_event(FriendshipKind::SharingOff, ANA, w.now)],
        everyone,
    );
    assert!(w.out.deliveries.is_empty());
    w.at(ANA, PARIS);
    assert!(
        w.out.deliveries.is_empty(),
        "not sharing from her first report"
    );
    w.graph.set_sharing(ANA, true);
    w.change(
        &[solo_event(FriendshipKind::SharingOn, ANA, w.now)],
        everyone,
    );
    assert_eq!(w.out.locations_to(BEN).len(), 1);
    assert_eq!(w.out.locations_to(ANA).len(), 1);
}

#[test]
fn a_friend_whose_list_is_read_late_is_hidden_until_then_and_relinked_at_once() {
    // Ben's friend list and sharing flag could not be read: the graph takes him for not
    // sharing (the service's graph fails closed so), and nobody sees him.
    let mut w = World::new();
    w.graph.set_sharing(BEN, false);
    w.at(ANA, PARIS);
    w.at(BEN, north_of(PARIS, 1_000.0));
    assert!(w.out.locations_to(ANA).is_empty(), "{:?}", w.out.deliveries);
    w.at(BEN, north_of(PARIS, 900.0));
    assert!(w.out.locations_to(ANA).is_empty(), "{:?}", w.out.deliveries);

    // Read at last, sharing: linked at once, each sees the other.
    w.graph.set_sharing(BEN, true);
    w.out.clear();
    w.fanout.relink(BEN, w.now, everyone, &w.graph, &mut w.out);
    let (to_ana, to_ben) = (w.out.locations_to(ANA), w.out.locations_to(BEN));
    assert_eq!(to_ana.len(), 1, "{:?}", w.out.deliveries);
    assert_eq!(to_ana[0].friend_id, BEN);
    assert!(close(to_ana[0].distance_m, 900.0));
    assert_eq!((to_ben.len(), to_ben[0].friend_id), (1, ANA));
    w.at(BEN, north_of(PARIS, 800.0));
    assert_eq!(w.out.locations_to(ANA).len(), 1, "his moves follow");

    // Read at last and not sharing: still nobody sees him.
    let mut w = World::new();
    w.graph.set_sharing(BEN, false);
    w.at(ANA, PARIS);
    w.at(BEN, north_of(PARIS, 1_000.0));
    w.out.clear();
    w.fanout.relink(BEN, w.now, everyone, &w.graph, &mut w.out);
    assert!(w.out.deliveries.is_empty(), "{:?}", w.out.deliveries);
    assert_eq!(w.fanout.active_pair_count(), 0);
}
