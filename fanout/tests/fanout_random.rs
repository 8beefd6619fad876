//! Random users, friendships, moves, connects, disconnects and sweeps, checked after every step
//! against a brute-force reference that compares all pairs with the haversine distance.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use nearby_common::geo::{NEARBY_RADIUS_M, haversine_m};
use nearby_fanout::{Effects, Fanout, FanoutConfig, InMemoryFriendGraph};
use nearby_schemas::{DeliveryPayload, LeftReason, LocationEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::*;

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
                for &friend in graph.friends(user) {
                    let Some((flat, flon, fts)) = self.live(friend, now) else {
                        continue;
                    };
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
            if !owned(user) {
                continue;
            }
            for &friend in graph.friends(user) {
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
                other => panic!("fanout's core sends no {other:?}"),
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
    let (mut deliveries, mut expirations) = (0, 0);

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
    eprintln!("seed {seed}: {deliveries} deliveries, {expirations} expirations");
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
