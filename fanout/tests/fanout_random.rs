//! Random users, friendships, friendship and sharing changes, moves, connects, disconnects and
//! sweeps, checked after every step against a brute-force reference that compares all pairs with the haversine distance.

use std::collections::{BTreeMap, BTreeSet};

use nearby_common::friendship::{pair_events, solo_event};
use nearby_common::geo::{NEARBY_RADIUS_M, haversine_m};
use nearby_fanout::{Effects, Fanout, FanoutConfig, FriendGraph, InMemoryFriendGraph};
use nearby_schemas::{DeliveryPayload, FriendshipEvent, FriendshipKind, LeftReason, LocationEvent};
use nearby_testkit::events::*;
use nearby_testkit::fanout::close;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const USERS: i64 = 40;
const GATEWAYS: [&str; 3] = ["gw-1", "gw-2", "gw-3"];
/// Pairs closer than this to the radius may fall either side (the stored position is
/// quantized to millimetres): the check skips them.
const EDGE_M: f64 = 0.05;

/// Which instance owns which user: this one owns two users in three.
fn owned(user: i64) -> bool {
    user % 3 != 0
}

#[derive(Debug, Default, Clone)]
struct RefUser {
    position: Option<(f64, f64, i64)>,
    connection: Option<(String, String)>,
    last_seen: i64,
}

/// The rules written the slow, obvious way: every friend, every time, haversine on f64.
struct Reference {
    users: BTreeMap<i64, RefUser>,
    config: FanoutConfig,
}

/// One delivery as compared: recipient, gateway, friend it is about, kind, report time.
type Key = (i64, String, i64, &'static str, i64);

#[derive(Default)]
struct Expected {
    keys: Vec<Key>,
    /// Distance and position per (recipient, friend) for friend entries.
    entries: BTreeMap<(i64, i64), (f64, f64, f64)>,
    /// Pairs too close to the radius edge to call.
    edge: BTreeSet<(i64, i64)>,
}

impl Reference {
    fn live(&self, user: i64, now: i64) -> Option<(f64, f64, i64)> {
        let (lat, lon, ts) = self.users.get(&user)?.position?;
        (ts + self.config.ttl_ms > now).then_some((lat, lon, ts))
    }

    fn gateway(&self, user: i64) -> Option<String> {
        Some(self.users.get(&user)?.connection.as_ref()?.0.clone())
    }

    fn apply(
        &mut self,
        event: &LocationEvent,
        owned: bool,
        now: i64,
        graph: &InMemoryFriendGraph,
        expect: &mut Expected,
    ) {
        let user = event.user_id;
        match &event.body {
            nearby_schemas::LocationBody::Position(report) => {
                if event.ts + self.config.ttl_ms <= now {
                    return;
                }
                if let Some((_, _, ts)) = self.users.get(&user).and_then(|u| u.position)
                    && event.ts <= ts
                {
                    return;
                }
                let previous = self.live(user, now);
                let entry = self.users.entry(user).or_default();
                entry.position = Some((report.lat, report.lon, event.ts));
                if !owned {
                    return;
                }
                let (lat, lon) = (report.lat, report.lon);
                if !graph.shares_location(user) {
                    return; // sharing is both ways: nothing to or from them
                }
                for &friend in graph.friends(user) {
                    let Some((flat, flon, fts)) = self.live(friend, now) else {
                        continue;
                    };
                    if !graph.shares_location(friend) {
                        continue;
                    }
                    let d1 = haversine_m(lat, lon, flat, flon);
                    let d0 = previous.map(|(plat, plon, _)| haversine_m(plat, plon, flat, flon));
                    let r = self.config.radius_m;
                    if (d1 - r).abs() < EDGE_M || d0.is_some_and(|d| (d - r).abs() < EDGE_M) {
                        expect.edge.insert((user, friend));
                        continue;
                    }
                    let (now_in, was_in) = (d1 <= r, d0.is_some_and(|d| d <= r));
                    let (to_friend, to_user) = (self.gateway(friend), self.gateway(user));
                    if now_in {
                        if let Some(gw) = to_friend {
                            expect.keys.push((friend, gw, user, "location", event.ts));
                            expect.entries.insert((friend, user), (d1, lat, lon));
                        }
                        if let (false, Some(gw)) = (was_in, to_user) {
                            expect.keys.push((user, gw, friend, "location", fts));
                            expect.entries.insert((user, friend), (d1, flat, flon));
                        }
                    } else if was_in {
                        if let Some(gw) = to_friend {
                            expect.keys.push((friend, gw, user, "out_of_range", 0));
                        }
                        if let Some(gw) = to_user {
                            expect.keys.push((user, gw, friend, "out_of_range", 0));
                        }
                    }
                }
            }
            nearby_schemas::LocationBody::Connected(c) => {
                let entry = self.users.entry(user).or_insert_with(|| RefUser {
                    last_seen: event.ts,
                    ..RefUser::default()
                });
                entry.connection = Some((event.gateway_id.clone().unwrap(), c.session_id.clone()));
                if entry.position.is_none() {
                    entry.last_seen = entry.last_seen.max(event.ts);
                }
            }
            nearby_schemas::LocationBody::Disconnected(d) => {
                let Some(entry) = self.users.get_mut(&user) else {
                    return;
                };
                if entry.connection.as_ref().is_some_and(|(gw, session)| {
                    *session == d.session_id && event.gateway_id.as_ref().is_none_or(|g| g == gw)
                }) {
                    entry.connection = None;
                    if entry.position.is_none() {
                        self.users.remove(&user);
                    }
                }
            }
        }
    }

    /// What a change tells, per the rules: `about`'s position or departure to `to`, if both
    /// are active, within the radius, and `to` is connected; each record by its subject's owner.
    fn tell(&self, about: i64, to: i64, kind: &'static str, now: i64, expect: &mut Expected) {
        let (Some((lat, lon, ts)), Some((tlat, tlon, _)), Some(gw)) =
            (self.live(about, now), self.live(to, now), self.gateway(to))
        else {
            return;
        };
        if !owned(about) {
            return;
        }
        let d = haversine_m(lat, lon, tlat, tlon);
        if (d - self.config.radius_m).abs() < EDGE_M {
            expect.edge.insert((about, to));
        } else if d <= self.config.radius_m {
            if kind == "location" {
                expect.keys.push((to, gw, about, kind, ts));
                expect.entries.insert((to, about), (d, lat, lon));
            } else {
                expect.keys.push((to, gw, about, kind, 0));
            }
        }
    }

    /// What a change is expected to produce, with `graph` as it is before the change.
    fn change(
        &self,
        change: &Change,
        now: i64,
        graph: &InMemoryFriendGraph,
        expect: &mut Expected,
    ) {
        let shares = |u| graph.shares_location(u);
        match *change {
            Change::Accept(a, b) => {
                if shares(a) && shares(b) {
                    self.tell(a, b, "location", now, expect);
                    self.tell(b, a, "location", now, expect);
                }
            }
            Change::Remove(a, b) => {
                if graph.are_friends(a, b) && shares(a) && shares(b) {
                    self.tell(a, b, "unfriended", now, expect);
                    self.tell(b, a, "unfriended", now, expect);
                }
            }
            Change::Sharing(user, on) => {
                for &friend in graph.friends(user) {
                    if !shares(friend) {
                        continue;
                    }
                    if on {
                        self.tell(user, friend, "location", now, expect);
                        self.tell(friend, user, "location", now, expect);
                    } else if shares(user) {
                        self.tell(user, friend, "sharing_off", now, expect);
                        self.tell(friend, user, "sharing_off", now, expect);
                    }
                }
            }
        }
    }

    fn sweep(&mut self, now: i64, graph: &InMemoryFriendGraph, expect: &mut Expected) {
        let (ttl, connection_ttl) = (self.config.ttl_ms, self.config.connection_ttl_ms);
        // Connections that had no position when the sweep began and showed no sign of life.
        self.users.retain(|_, u| {
            u.position.is_some() || u.connection.is_none() || u.last_seen + connection_ttl > now
        });
        let expiring: Vec<i64> = self
            .users
            .iter()
            .filter(|(_, u)| u.position.is_some_and(|(_, _, ts)| ts + ttl <= now))
            .map(|(&id, _)| id)
            .collect();
        for &user in &expiring {
            let (lat, lon, _) = self.users[&user].position.unwrap();
            if !owned(user) || !graph.shares_location(user) {
                continue;
            }
            for &friend in graph.friends(user) {
                if !graph.shares_location(friend) {
                    continue;
                }
                let (Some((flat, flon, _)), Some(gw)) =
                    (self.live(friend, now), self.gateway(friend))
                else {
                    continue;
                };
                let d = haversine_m(lat, lon, flat, flon);
                if (d - self.config.radius_m).abs() < EDGE_M {
                    expect.edge.insert((user, friend));
                } else if d <= self.config.radius_m {
                    expect.keys.push((friend, gw, user, "inactive", 0));
                }
            }
        }
        for user in expiring {
            let entry = self.users.get_mut(&user).unwrap();
            entry.last_seen = entry.position.take().unwrap().2;
            if entry.connection.is_none() {
                self.users.remove(&user);
            }
        }
    }
}

/// A friendship or sharing change.
#[derive(Debug, Clone, Copy)]
enum Change {
    Accept(i64, i64),
    Remove(i64, i64),
    Sharing(i64, bool),
}

impl Change {
    /// The records the gateway writes for it.
    fn records(self, at: i64) -> Vec<FriendshipEvent> {
        match self {
            Change::Accept(a, b) => pair_events(FriendshipKind::Accepted, a, b, at).to_vec(),
            Change::Remove(a, b) => pair_events(FriendshipKind::Removed, a, b, at).to_vec(),
            Change::Sharing(u, on) => {
                let kind = if on {
                    FriendshipKind::SharingOn
                } else {
                    FriendshipKind::SharingOff
                };
                vec![solo_event(kind, u, at)]
            }
        }
    }
}

fn key_of(d: &nearby_fanout::RoutedDelivery) -> Key {
    let recipient = d.delivery.recipient_id;
    match d.delivery.payload {
        DeliveryPayload::FriendLocation(l) => (
            recipient,
            d.gateway_id.to_string(),
            l.friend_id,
            "location",
            l.updated_at,
        ),
        DeliveryPayload::FriendLeft(l) => {
            let kind = match l.reason {
                LeftReason::OutOfRange => "out_of_range",
                LeftReason::Inactive => "inactive",
                LeftReason::Unfriended => "unfriended",
                LeftReason::SharingOff => "sharing_off",
            };
            (recipient, d.gateway_id.to_string(), l.friend_id, kind, 0)
        }
    }
}

/// Checks what fanout produced against what the reference expects, step `step`.
fn check(step: usize, out: &Effects, expect: &Expected, graph: &InMemoryFriendGraph) {
    let about_edge =
        |a: i64, b: i64| expect.edge.contains(&(a, b)) || expect.edge.contains(&(b, a));
    let mut got: Vec<Key> = out
        .deliveries
        .iter()
        .map(key_of)
        .filter(|k| !about_edge(k.0, k.2))
        .collect();
    let mut want = expect.keys.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "step {step}");
    for d in &out.deliveries {
        let recipient = d.delivery.recipient_id;
        let DeliveryPayload::FriendLocation(l) = d.delivery.payload else {
            continue;
        };
        assert!(
            graph.are_friends(recipient, l.friend_id),
            "step {step}: not friends"
        );
        if about_edge(recipient, l.friend_id) {
            continue;
        }
        let (distance, lat, lon) = expect.entries[&(recipient, l.friend_id)];
        assert!(
            close(l.distance_m, distance),
            "step {step}: {} vs {distance}",
            l.distance_m
        );
        assert!(l.distance_m <= NEARBY_RADIUS_M + EDGE_M, "step {step}");
        assert!(
            haversine_m(l.lat, l.lon, lat, lon) < 0.01,
            "step {step}: position"
        );
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut graph = InMemoryFriendGraph::new();
    for a in 0..USERS {
        for b in a + 1..USERS {
            if rng.random_bool(0.25) {
                graph.befriend(a, b);
            }
        }
    }
    // Reports must be able to outlive a long pause without the connection being forgotten
    // too often, and sometimes be forgotten: a few hours of simulated time cover both.
    let config = FanoutConfig {
        connection_ttl_ms: 30 * 60 * 1000,
        ..FanoutConfig::default()
    };
    let mut fanout = Fanout::new(config).unwrap();
    let mut reference = Reference {
        users: BTreeMap::new(),
        config,
    };
    let mut sessions: Vec<(i64, String, String)> = Vec::new();
    let mut places: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    let mut now = T0;
    let mut out = Effects::default();
    let (mut deliveries, mut expirations, mut changes) = (0, 0, 0);

    for step in 0..steps {
        now += rng.random_range(0..15_000);
        out.clear();
        let mut expect = Expected::default();
        let user = rng.random_range(0..USERS);
        let roll = rng.random_range(0..100);
        if roll < 8 {
            let dropped = fanout.sweep(now, owned, &mut out);
            reference.sweep(now, &graph, &mut expect);
            expirations += dropped;
        } else if roll < 14 {
            // A change: end or make a friendship, or switch sharing.
            let other = (user + rng.random_range(1..USERS)) % USERS;
            // Sharing mostly on, and sometimes switched to what it already is (a repeated record).
            let change = match rng.random_range(0..8) {
                0..6 if graph.are_friends(user, other) => Change::Remove(user, other),
                0..6 => Change::Accept(user, other),
                _ => Change::Sharing(user, rng.random_bool(0.75)),
            };
            reference.change(&change, now, &graph, &mut expect);
            // The graph changes as the service changes it: before the core applies an accept
            // or a sharing switch, after it applies a removal.
            match change {
                Change::Accept(a, b) => graph.befriend(a, b),
                Change::Sharing(u, on) => graph.set_sharing(u, on),
                Change::Remove(..) => {}
            }
            let mut step = Effects::default();
            for record in change.records(now) {
                fanout.apply_change(&record, now, owned, &graph, &mut step);
                out.deliveries.append(&mut step.deliveries);
            }
            if let Change::Remove(a, b) = change {
                graph.unfriend(a, b);
            }
            changes += 1;
        } else {
            let event = if roll < 65 {
                // A move: mostly a short walk or drive, sometimes a jump across the city.
                let here = places.get(&user).copied().unwrap_or(PARIS);
                let there = if rng.random_bool(0.7) {
                    (
                        here.0 + rng.random_range(-0.02..0.02),
                        here.1 + rng.random_range(-0.03..0.03),
                    )
                } else {
                    (
                        PARIS.0 + rng.random_range(-0.1..0.1),
                        PARIS.1 + rng.random_range(-0.15..0.15),
                    )
                };
                places.insert(user, there);
                // Mostly fresh, sometimes a late or very late (background) report.
                let lag = match rng.random_range(0..10) {
                    0 => rng.random_range(0..config.ttl_ms + 60_000),
                    1 => rng.random_range(0..60_000),
                    _ => rng.random_range(0..2_000),
                };
                position(user, now - lag, there)
            } else if roll < 82 {
                let gateway = GATEWAYS[rng.random_range(0..GATEWAYS.len())];
                let session = format!("s{step}");
                sessions.push((user, gateway.to_string(), session.clone()));
                connected(user, now, gateway, &session)
            } else {
                // The latest session of someone, or any older one.
                let mine: Vec<_> = sessions.iter().filter(|s| s.0 == user).collect();
                match (mine.last(), rng.random_bool(0.6)) {
                    (Some(latest), true) => disconnected(user, now, &latest.1, &latest.2),
                    (Some(_), false) => {
                        let old = mine[rng.random_range(0..mine.len())];
                        disconnected(user, now, &old.1, &old.2)
                    }
                    (None, _) => disconnected(user, now, "gw-1", "never"),
                }
            };
            fanout.apply(&event, owned(user), now, &graph, &mut out);
            reference.apply(&event, owned(user), now, &graph, &mut expect);
        }
        check(step, &out, &expect, &graph);
        deliveries += out.deliveries.len();

        // The tables agree on who is there and who is active.
        for u in 0..USERS {
            assert_eq!(
                fanout.is_active(u, now),
                reference.live(u, now).is_some(),
                "step {step}: user {u} active"
            );
            let state = fanout.table().get(u);
            assert_eq!(
                state.is_some(),
                reference.users.contains_key(&u),
                "step {step}: {u}"
            );
            assert_eq!(
                state.and_then(|s| s.gateway).map(str::to_string),
                reference.gateway(u),
                "step {step}: {u}'s gateway"
            );
        }
    }
    eprintln!("seed {seed}: {deliveries} deliveries, {expirations} expirations, {changes} changes");
    // The run exercised what it claims to.
    assert!(deliveries > steps / 4, "{deliveries} deliveries");
    assert!(expirations > 10, "{expirations} expirations");
}

#[test]
fn fanout_matches_a_brute_force_reference() {
    for seed in 1..=6 {
        run(seed, 4_000);
    }
}
