//! The product rules, as the people involved would see them: who gets which friend entry or
//! `friend_left`, at which gateway, with which distance and time.

use nearby_common::geo::haversine_m;
use nearby_fanout::{Applied, Effects, Fanout, FanoutConfig, InMemoryFriendGraph};
use nearby_schemas::{FriendLeft, LeftReason, LocationEvent};
use nearby_testkit::events::*;
use nearby_testkit::fanout::close;

const ANA: i64 = 1;
const BEN: i64 = 2;
const CAROL: i64 = 3;
const TTL: i64 = 10 * 60 * 1000;

/// One fanout instance that owns every partition, with Ana, Ben and Carol; Ana and Ben are
/// friends, Carol is a stranger to both. Ana is on gateway `gw-a`, Ben on `gw-b`, Carol on
/// `gw-c`.
struct World {
    fanout: Fanout,
    graph: InMemoryFriendGraph,
    out: Effects,
}

impl World {
    fn new() -> World {
        let mut graph = InMemoryFriendGraph::new();
        graph.befriend(ANA, BEN);
        let mut world = World {
            fanout: Fanout::new(FanoutConfig::default()).unwrap(),
            graph,
            out: Effects::default(),
        };
        world.apply(&connected(ANA, T0, "gw-a", "a1"), T0);
        world.apply(&connected(BEN, T0, "gw-b", "b1"), T0);
        world.apply(&connected(CAROL, T0, "gw-c", "c1"), T0);
        world
    }

    /// Applies an event of an owned partition at `now`; `self.out` holds what it produced.
    fn apply(&mut self, event: &LocationEvent, now: i64) -> Applied {
        self.apply_as(event, true, now)
    }

    fn apply_as(&mut self, event: &LocationEvent, owned: bool, now: i64) -> Applied {
        self.out.clear();
        self.fanout
            .apply(event, owned, now, &self.graph, &mut self.out)
    }

    fn sweep(&mut self, now: i64, owns: impl FnMut(i64) -> bool) -> usize {
        self.out.clear();
        self.fanout.sweep(now, owns, &mut self.out)
    }
}

#[test]
fn friends_2km_apart_both_see_each_other() {
    let mut w = World::new();
    let ben_at = north_of(PARIS, 2_000.0);
    assert_eq!(
        w.apply(&position(BEN, T0 + 1_000, ben_at), T0 + 1_000),
        Applied::Activated
    );
    assert!(
        w.out.deliveries.is_empty(),
        "Ana is not active yet: nobody to tell"
    );

    assert_eq!(
        w.apply(&position(ANA, T0 + 5_000, PARIS), T0 + 5_000),
        Applied::Activated
    );
    let exact = haversine_m(PARIS.0, PARIS.1, ben_at.0, ben_at.1);

    // Ben sees Ana, at gateway gw-b, with Ana's report time.
    let to_ben = w.out.to(BEN);
    assert_eq!(to_ben.len(), 1);
    assert_eq!(&*to_ben[0].gateway_id, "gw-b");
    let ana_for_ben = w.out.locations_to(BEN)[0];
    assert_eq!(ana_for_ben.friend_id, ANA);
    assert_eq!((ana_for_ben.lat, ana_for_ben.lon), PARIS);
    assert_eq!(ana_for_ben.updated_at, T0 + 5_000);
    assert!(
        close(ana_for_ben.distance_m, exact),
        "{} vs {exact}",
        ana_for_ben.distance_m
    );

    // And Ana sees Ben at once, with Ben's report time, without waiting for his next report.
    let to_ana = w.out.to(ANA);
    assert_eq!(to_ana.len(), 1);
    assert_eq!(&*to_ana[0].gateway_id, "gw-a");
    let ben_for_ana = w.out.locations_to(ANA)[0];
    assert_eq!(ben_for_ana.friend_id, BEN);
    assert_eq!(ben_for_ana.updated_at, T0 + 1_000);
    assert!(haversine_m(ben_for_ana.lat, ben_for_ana.lon, ben_at.0, ben_at.1) < 0.01);
    assert!(close(ben_for_ana.distance_m, exact));
    // Two decimals at most.
    assert_eq!(
        ben_for_ana.distance_m,
        (ben_for_ana.distance_m * 100.0).round() / 100.0
    );

    // Ana moves 100 m within range: Ben gets her new position; Ana, who has Ben, gets nothing.
    let ana_next = north_of(PARIS, 100.0);
    assert_eq!(
        w.apply(&position(ANA, T0 + 35_000, ana_next), T0 + 35_000),
        Applied::Moved
    );
    assert!(w.out.to(ANA).is_empty());
    let moved = w.out.locations_to(BEN);
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].updated_at, T0 + 35_000);
    assert!(close(
        moved[0].distance_m,
        haversine_m(ana_next.0, ana_next.1, ben_at.0, ben_at.1)
    ));
}

#[test]
fn a_friend_12km_away_gets_nothing() {
    let mut w = World::new();
    w.apply(&position(BEN, T0, north_of(PARIS, 12_000.0)), T0);
    w.apply(&position(ANA, T0 + 1_000, PARIS), T0 + 1_000);
    assert!(w.out.deliveries.is_empty());
    w.apply(
        &position(ANA, T0 + 31_000, north_of(PARIS, 50.0)),
        T0 + 31_000,
    );
    assert!(w.out.deliveries.is_empty());
}

#[test]
fn moving_to_5km_brings_both_an_entry_at_once() {
    let mut w = World::new();
    let ben_at = north_of(PARIS, 12_000.0);
    w.apply(&position(BEN, T0, ben_at), T0);
    w.apply(&position(ANA, T0 + 1_000, PARIS), T0 + 1_000);
    assert!(w.out.deliveries.is_empty());

    let ana_at = north_of(PARIS, 7_000.0); // 5 km from Ben
    w.apply(&position(ANA, T0 + 31_000, ana_at), T0 + 31_000);
    let exact = haversine_m(ana_at.0, ana_at.1, ben_at.0, ben_at.1);
    let (for_ben, for_ana) = (w.out.locations_to(BEN), w.out.locations_to(ANA));
    assert_eq!((for_ben.len(), for_ana.len()), (1, 1));
    assert_eq!((for_ben[0].friend_id, for_ana[0].friend_id), (ANA, BEN));
    assert!(close(for_ben[0].distance_m, exact) && close(for_ana[0].distance_m, exact));
    assert_eq!(
        (for_ben[0].updated_at, for_ana[0].updated_at),
        (T0 + 31_000, T0)
    );
}

#[test]
fn moving_out_brings_out_of_range_to_both() {
    let mut w = World::new();
    w.apply(&position(BEN, T0, north_of(PARIS, 2_000.0)), T0);
    w.apply(&position(ANA, T0 + 1_000, PARIS), T0 + 1_000);
    assert_eq!(w.out.deliveries.len(), 2);

    w.apply(
        &position(ANA, T0 + 31_000, north_of(PARIS, 12_000.0)),
        T0 + 31_000,
    );
    let out_of_range = |friend_id| FriendLeft {
        friend_id,
        reason: LeftReason::OutOfRange,
    };
    assert_eq!(w.out.lefts_to(BEN), vec![out_of_range(ANA)]);
    assert_eq!(w.out.lefts_to(ANA), vec![out_of_range(BEN)]);
    assert_eq!(w.out.deliveries.len(), 2);

    // Staying out of range says nothing more.
    w.apply(
        &position(ANA, T0 + 61_000, north_of(PARIS, 13_000.0)),
        T0 + 61_000,
    );
    assert!(w.out.deliveries.is_empty());
}

#[test]
fn a_stranger_100m_away_never_gets_anything() {
    let mut w = World::new();
    w.apply(&position(CAROL, T0, north_of(PARIS, 100.0)), T0);
    w.apply(&position(ANA, T0 + 1_000, PARIS), T0 + 1_000);
    w.apply(
        &position(ANA, T0 + 2_000, north_of(PARIS, 90.0)),
        T0 + 2_000,
    );
    w.apply(
        &position(CAROL, T0 + 3_000, north_of(PARIS, 95.0)),
        T0 + 3_000,
    );
    assert!(w.out.deliveries.is_empty());
    w.sweep(T0 + 3_000 + TTL, |_| true);
    assert!(w.out.deliveries.is_empty());
}

#[test]
fn an_older_report_is_ignored() {
    let mut w = World::new();
    w.apply(&position(BEN, T0, north_of(PARIS, 2_000.0)), T0);
    w.apply(&position(ANA, T0 + 10_000, PARIS), T0 + 10_000);

    // A report from before, arriving late (a background upload), even from far away: ignored.
    for ts in [T0 + 5_000, T0 + 10_000] {
        let late = position(ANA, ts, north_of(PARIS, 20_000.0));
        assert_eq!(w.apply(&late, T0 + 20_000), Applied::NotNewer);
        assert!(w.out.is_empty(), "no cache write, no delivery");
    }
    let (point, ts) = w.fanout.table().get(ANA).unwrap().position.unwrap();
    assert_eq!(ts, T0 + 10_000);
    let (lat, lon) = point.to_degrees();
    assert!(haversine_m(lat, lon, PARIS.0, PARIS.1) < 0.01);

    // A report older than the TTL is not even an activation.
    let stale = position(CAROL, T0, PARIS);
    assert_eq!(w.apply(&stale, T0 + TTL), Applied::Expired);
    assert!(!w.fanout.is_active(CAROL, T0 + TTL));
}

#[test]
fn expiry_sends_inactive_once_and_only_from_the_owner() {
    // Two instances see the same log: the first owns Ana's partition, the second does not.
    let mut owner = World::new();
    let mut other = World::new();
    for w in [&mut owner, &mut other] {
        w.apply_as(
            &position(BEN, T0 + 60_000, north_of(PARIS, 2_000.0)),
            false,
            T0 + 60_000,
        );
    }
    owner.apply(&position(ANA, T0, PARIS), T0 + 60_000);
    other.apply_as(&position(ANA, T0, PARIS), false, T0 + 60_000);
    assert!(other.out.is_empty());
    let owns_ana = |user: i64| user == ANA;
    let owns_nobody = |_: i64| false;

    // Before the TTL nothing happens.
    assert_eq!(owner.sweep(T0 + TTL - 1, owns_ana), 0);
    assert!(owner.out.is_empty());

    // At the TTL, Ben learns from Ana's owner, and only from it, that Ana is inactive.
    assert_eq!(owner.sweep(T0 + TTL, owns_ana), 1);
    assert_eq!(
        owner.out.lefts_to(BEN),
        vec![FriendLeft {
            friend_id: ANA,
            reason: LeftReason::Inactive
        }]
    );
    assert_eq!(owner.out.deliveries.len(), 1);
    assert_eq!(&*owner.out.deliveries[0].gateway_id, "gw-b");
    assert_eq!(
        other.sweep(T0 + TTL, owns_nobody),
        1,
        "the other drops her too"
    );
    assert!(other.out.is_empty());
    for w in [&owner, &other] {
        assert!(!w.fanout.is_active(ANA, T0 + TTL));
        assert_eq!(w.fanout.table().get(ANA).unwrap().position, None);
        assert_eq!(w.fanout.active_pair_count(), 0, "unlinked from Ben");
    }

    // Once: a later sweep says nothing more about Ana.
    assert_eq!(owner.sweep(T0 + TTL + 30_000, owns_ana), 0);
    assert!(owner.out.is_empty());

    // Ben expires too; Ana, inactive, is told nothing.
    assert_eq!(owner.sweep(T0 + 60_000 + TTL, |_| true), 1);
    assert!(owner.out.is_empty());
}

#[test]
fn expiry_tells_only_friends_in_range_and_a_report_keeps_a_user_active() {
    let mut w = World::new();
    w.graph.befriend(ANA, CAROL);
    w.apply(&position(BEN, T0, north_of(PARIS, 2_000.0)), T0);
    w.apply(&position(CAROL, T0, north_of(PARIS, 20_000.0)), T0);
    w.apply(&position(ANA, T0, PARIS), T0);
    // Ben reports again: he stays active past the first deadline.
    w.apply(
        &position(BEN, T0 + 300_000, north_of(PARIS, 2_100.0)),
        T0 + 300_000,
    );
    assert_eq!(
        w.sweep(T0 + TTL, |_| true),
        2,
        "Ana and Carol expire, Ben does not"
    );
    // Ben had Ana in range; Carol (20 km off, and inactive now) is told nothing.
    assert_eq!(w.out.lefts_to(BEN).len(), 1);
    assert_eq!(w.out.deliveries.len(), 1);
    assert!(w.fanout.is_active(BEN, T0 + TTL));
    assert_eq!(w.sweep(T0 + 300_000 + TTL, |_| true), 1);
}

#[test]
fn a_stale_disconnect_does_not_cut_a_newer_connection() {
    let mut w = World::new();
    w.apply(&position(BEN, T0, north_of(PARIS, 2_000.0)), T0);
    // Ben's phone reconnects through gw-2 before gw-b reports the old socket closed.
    w.apply(&connected(BEN, T0 + 1_000, "gw-2", "b2"), T0 + 1_000);
    let stale = disconnected(BEN, T0 + 2_000, "gw-b", "b1");
    assert_eq!(w.apply(&stale, T0 + 2_000), Applied::StaleDisconnect);

    w.apply(&position(ANA, T0 + 3_000, PARIS), T0 + 3_000);
    let to_ben = w.out.to(BEN);
    assert_eq!(to_ben.len(), 1);
    assert_eq!(&*to_ben[0].gateway_id, "gw-2");

    // Closing the current session does cut it.
    let current = disconnected(BEN, T0 + 4_000, "gw-2", "b2");
    assert_eq!(w.apply(&current, T0 + 4_000), Applied::Disconnected);
    assert_eq!(w.fanout.table().get(BEN).unwrap().gateway, None);
}

#[test]
fn a_disconnected_friend_gets_no_deliveries() {
    let mut w = World::new();
    w.apply(&position(BEN, T0, north_of(PARIS, 2_000.0)), T0);
    w.apply(&disconnected(BEN, T0 + 500, "gw-b", "b1"), T0 + 500);
    assert!(
        w.fanout.is_active(BEN, T0 + 500),
        "still active: a report is under 10 min old"
    );

    w.apply(&position(ANA, T0 + 1_000, PARIS), T0 + 1_000);
    assert!(w.out.to(BEN).is_empty());
    assert_eq!(
        w.out.locations_to(ANA).len(),
        1,
        "Ana, connected, still sees Ben"
    );
    w.apply(
        &position(ANA, T0 + 2_000, north_of(PARIS, 12_000.0)),
        T0 + 2_000,
    );
    assert!(w.out.to(BEN).is_empty());
    assert_eq!(w.out.lefts_to(ANA).len(), 1);

    // Reconnected, he gets them again.
    w.apply(&connected(BEN, T0 + 3_000, "gw-b", "b2"), T0 + 3_000);
    w.apply(&position(ANA, T0 + 4_000, PARIS), T0 + 4_000);
    assert_eq!(w.out.locations_to(BEN).len(), 1);
}

#[test]
fn events_of_partitions_not_owned_update_the_table_but_produce_nothing() {
    let mut w = World::new();
    w.apply_as(&position(BEN, T0, north_of(PARIS, 2_000.0)), false, T0);
    w.apply_as(&position(ANA, T0 + 1_000, PARIS), false, T0 + 1_000);
    assert!(w.out.is_empty(), "no delivery, no cache write");
    assert!(w.fanout.is_active(ANA, T0 + 1_000));
    assert_eq!(w.fanout.active_pair_count(), 1);

    // An owned update of Ben then finds Ana through the table.
    w.apply(
        &position(BEN, T0 + 31_000, north_of(PARIS, 1_500.0)),
        T0 + 31_000,
    );
    assert_eq!(w.out.locations_to(ANA).len(), 1);
    assert_eq!(w.out.cache_writes.len(), 1);
}

#[test]
fn owned_reports_write_the_cache_until_the_user_goes_inactive() {
    let mut w = World::new();
    w.apply(&position(ANA, T0, PARIS), T0 + 40);
    assert_eq!(w.out.cache_writes.len(), 1);
    let write = w.out.cache_writes[0];
    assert_eq!(
        (write.user_id, write.lat, write.lon, write.ts),
        (ANA, PARIS.0, PARIS.1, T0)
    );
    assert_eq!(write.expires_at_ms, T0 + TTL);
}

#[test]
fn a_connection_outlives_a_pause_in_reports() {
    let mut w = World::new();
    w.apply(&position(ANA, T0, PARIS), T0);
    w.apply(&position(BEN, T0, north_of(PARIS, 2_000.0)), T0);
    w.sweep(T0 + TTL, |_| true);
    assert_eq!(w.fanout.table().get(BEN).unwrap().gateway, Some("gw-b"));

    // Both report again on the same sockets: they see each other again.
    w.apply(
        &position(BEN, T0 + TTL + 1_000, north_of(PARIS, 2_000.0)),
        T0 + TTL + 1_000,
    );
    w.apply(&position(ANA, T0 + TTL + 2_000, PARIS), T0 + TTL + 2_000);
    assert_eq!(w.out.locations_to(BEN).len(), 1);
    assert_eq!(w.out.locations_to(ANA).len(), 1);

    // A connection that shows no sign of life for an hour is forgotten (its disconnect may
    // have been lost with its gateway).
    let hour = FanoutConfig::default().connection_ttl_ms;
    w.sweep(T0 + hour, |_| true);
    assert!(w.fanout.table().get(CAROL).is_none());
    assert_eq!(w.fanout.table().get(BEN).unwrap().gateway, Some("gw-b"));
    w.sweep(T0 + TTL + 2_000 + hour, |_| true);
    assert!(w.fanout.table().is_empty());
    assert_eq!(w.fanout.table().gateway_count(), 0);
}

#[test]
fn a_user_who_does_not_share_is_left_out_both_ways() {
    let mut w = World::new();
    w.graph.set_sharing(BEN, false);
    w.apply(&position(BEN, T0, north_of(PARIS, 2_000.0)), T0);
    w.apply(&position(ANA, T0 + 1_000, PARIS), T0 + 1_000);
    assert!(w.out.deliveries.is_empty());
    w.apply(
        &position(BEN, T0 + 2_000, north_of(PARIS, 1_000.0)),
        T0 + 2_000,
    );
    assert!(w.out.deliveries.is_empty());
}

#[test]
fn bad_events_are_ignored() {
    let mut w = World::new();
    for at in [(91.0, 0.0), (0.0, f64::NAN), (f64::INFINITY, 0.0)] {
        assert_eq!(w.apply(&position(ANA, T0, at), T0), Applied::Invalid);
    }
    let mut no_gateway = connected(ANA, T0, "gw-a", "a2");
    no_gateway.gateway_id = None;
    assert_eq!(w.apply(&no_gateway, T0), Applied::Invalid);
    assert_eq!(
        w.apply(&disconnected(42, T0, "gw-a", "x"), T0),
        Applied::StaleDisconnect,
        "a user fanout never saw"
    );
    assert!(w.out.is_empty());
    assert!(
        Fanout::new(FanoutConfig {
            radius_m: -1.0,
            ..FanoutConfig::default()
        })
        .is_err()
    );
}

#[test]
fn a_takeover_refresh_repairs_what_nobody_fanned_out() {
    let mut w = World::new();
    let dan = 4;
    w.graph.befriend(ANA, dan);
    w.apply(&connected(dan, T0, "gw-d", "d1"), T0);
    // All three active, Ben and Dan near Ana: each sees the others it is friends with.
    w.apply(
        &position(BEN, T0 + 1_000, north_of(PARIS, 1_000.0)),
        T0 + 1_000,
    );
    w.apply(
        &position(dan, T0 + 1_000, north_of(PARIS, 2_000.0)),
        T0 + 1_000,
    );
    w.apply(&position(ANA, T0 + 2_000, PARIS), T0 + 2_000);
    // Then Ana's partition had no owner (its instance was killed): she moved closer to Ben,
    // Carol reported, and Dan (whose partition is owned elsewhere, so only the table learns
    // of it here) went 20 km away. Nobody told Ana's friends of her move.
    let moved = north_of(PARIS, 500.0);
    w.apply_as(&position(ANA, T0 + 12_000, moved), false, T0 + 12_000);
    w.apply_as(&position(CAROL, T0 + 12_000, PARIS), false, T0 + 12_000);
    w.apply_as(
        &position(dan, T0 + 13_000, north_of(PARIS, 20_000.0)),
        false,
        T0 + 13_000,
    );
    assert!(w.out.deliveries.is_empty());

    // The new owner of Ana's partition (not Dan's, not Ben's) refreshes what came since the
    // gap began.
    w.out.clear();
    let sent = w.fanout.refresh(
        T0 + 5_000,
        |u, _| u == ANA || u == CAROL,
        T0 + 14_000,
        &mut w.out,
    );
    assert_eq!(sent, 2, "Ana and Carol reported since");
    // Ben gets Ana's current position, with its report time and the right distance.
    let to_ben = w.out.locations_to(BEN);
    assert_eq!(to_ben.len(), 1);
    assert_eq!(
        (to_ben[0].friend_id, to_ben[0].updated_at),
        (ANA, T0 + 12_000)
    );
    assert!(
        close(to_ben[0].distance_m, 500.0),
        "{}",
        to_ben[0].distance_m
    );
    // Dan, now out of Ana's range, is told she left; Carol's friends (none) get nothing.
    assert_eq!(
        w.out.lefts_to(dan),
        vec![FriendLeft {
            friend_id: ANA,
            reason: LeftReason::OutOfRange
        }]
    );
    assert!(w.out.to(CAROL).is_empty() && w.out.to(ANA).is_empty());
    // Both entries go to the cache again.
    let cached: Vec<i64> = w.out.cache_writes.iter().map(|c| c.user_id).collect();
    assert_eq!(cached.len(), 2);
    assert!(cached.contains(&ANA) && cached.contains(&CAROL));

    // Nothing older than `since`, and nothing of a partition not owned.
    w.out.clear();
    assert_eq!(
        w.fanout
            .refresh(T0 + 12_500, |u, _| u == ANA, T0 + 14_000, &mut w.out),
        0
    );
    assert!(w.out.deliveries.is_empty() && w.out.cache_writes.is_empty());
}
