//! The cost of one position update with 1,000,000 active users in the table, measured users
//! having 400 friends of whom 10 % are active: fanout's active-friend index against the naive
//! join that looks every friend up in the table; and the takeover refresh of one partition in
//! twelve over that table.
//!
//! `cargo bench -p nearby-fanout --bench fanout -- --warm-up-time 1 --measurement-time 3`
//!
//! Set-up figures (table memory, share of active friends in range) go to stderr first.

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use nearby_common::geo::NEARBY_RADIUS_M;
use nearby_fanout::{Effects, Fanout, FanoutConfig, InMemoryFriendGraph, Point, Radius};
use nearby_schemas::{
    Connected, Delivery, DeliveryPayload, FriendLeft, FriendLocation, LeftReason, LocationBody,
    LocationEvent, PositionReport,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TABLE_USERS: i64 = 1_000_000;
/// Users whose updates are measured (ids 0..MEASURED), round robin: enough that their friends'
/// entries (800,000 of them) do not stay in the processor's caches between two of their
/// updates, as in production, where an instance's users report every 30 s.
const MEASURED: i64 = 20_000;
/// Ids of friends who are not active (not in the table), shared among the measured users.
const INACTIVE_POOL: i64 = 200_000;
const FRIENDS: usize = 400;
const ACTIVE_FRIENDS: usize = FRIENDS / 10;
const GATEWAYS: i64 = 64;
const T0: i64 = 1_764_057_600_000;
/// A 24 km square around central Paris: about a quarter of two random points in it are within
/// 5 miles of each other.
const CENTRE: (f64, f64) = (48.8566, 2.3522);
const HALF_SIDE_LAT: f64 = 0.108; // 12 km
const HALF_SIDE_LON: f64 = 0.164; // 12 km at 48.9°N

fn random_place(rng: &mut StdRng) -> (f64, f64) {
    (
        CENTRE.0 + rng.random_range(-HALF_SIDE_LAT..HALF_SIDE_LAT),
        CENTRE.1 + rng.random_range(-HALF_SIDE_LON..HALF_SIDE_LON),
    )
}

fn position(user: i64, ts: i64, (lat, lon): (f64, f64)) -> LocationEvent {
    LocationEvent {
        user_id: user,
        gateway_id: Some(format!("gw-{}", user % GATEWAYS)),
        ts,
        received_at: ts,
        body: LocationBody::Position(PositionReport {
            lat,
            lon,
            accuracy_m: None,
        }),
    }
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The table, the graph, and the measured users' next moves.
struct Setup {
    fanout: Fanout,
    graph: InMemoryFriendGraph,
    homes: Vec<(f64, f64)>,
    /// Offsets a measured user moves by around their home (±~500 m), precomputed.
    jitter: Vec<(f64, f64)>,
}

fn set_up() -> Setup {
    let mut rng = StdRng::seed_from_u64(42);
    let started = Instant::now();

    // Each measured user: 40 friends among the active users, 360 who are not in the table.
    let mut graph = InMemoryFriendGraph::new();
    let inactive = 10 * TABLE_USERS..10 * TABLE_USERS + INACTIVE_POOL;
    for user in 0..MEASURED {
        while graph.friends(user).len() < ACTIVE_FRIENDS {
            graph.befriend(user, rng.random_range(MEASURED..TABLE_USERS));
        }
        while graph.friends(user).len() < FRIENDS {
            graph.befriend(user, rng.random_range(inactive.clone()));
        }
    }

    let rss_before = rss_bytes();
    let mut fanout = Fanout::new(FanoutConfig::default()).unwrap();
    let mut out = Effects::default();
    let mut homes = Vec::with_capacity(MEASURED as usize);
    for user in 0..TABLE_USERS {
        let place = random_place(&mut rng);
        if user < MEASURED {
            homes.push(place);
        }
        let connected = LocationEvent {
            user_id: user,
            gateway_id: Some(format!("gw-{}", user % GATEWAYS)),
            ts: T0,
            received_at: T0,
            body: LocationBody::Connected(Connected {
                session_id: format!("s{user}"),
            }),
        };
        // Not owned: building the table produces nothing.
        fanout.apply(&connected, false, T0, &graph, &mut out);
        fanout.apply(&position(user, T0, place), false, T0, &graph, &mut out);
    }
    assert!(out.is_empty());
    let rss_after = rss_bytes();

    // How many of a measured user's active friends are within the radius.
    let radius = Radius::from_m(NEARBY_RADIUS_M);
    let (mut active, mut in_range) = (0usize, 0usize);
    for user in 0..MEASURED {
        let (me, _) = fanout.table().get(user).unwrap().position.unwrap();
        for &friend in graph.friends(user) {
            if let Some((them, _)) = fanout.table().get(friend).and_then(|s| s.position) {
                active += 1;
                in_range += usize::from(radius.contains(me, them));
            }
        }
    }
    let users = fanout.table().len();
    eprintln!(
        "set-up: {users} users in the table, {} linked active pairs, built in {:.1} s",
        fanout.active_pair_count(),
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "set-up: per measured user {:.1} active friends of {FRIENDS}, {:.1} % of them within 5 miles",
        active as f64 / MEASURED as f64,
        100.0 * in_range as f64 / active as f64
    );
    eprintln!(
        "memory: allocated {:.1} B/user (table, links, expiry queue); RSS grew {:.1} B/user",
        fanout.allocated_bytes() as f64 / users as f64,
        (rss_after - rss_before) as f64 / users as f64
    );
    eprintln!(
        "memory: table alone {:.1} B/user",
        fanout.table().allocated_bytes() as f64 / users as f64
    );

    let jitter = (0..4096)
        .map(|_| {
            (
                rng.random_range(-0.0045..0.0045),
                rng.random_range(-0.0068..0.0068),
            )
        })
        .collect();
    Setup {
        fanout,
        graph,
        homes,
        jitter,
    }
}

/// The naive join, for comparison: every friend looked up in the table by id.
fn naive_fan_out(
    fanout: &Fanout,
    graph: &InMemoryFriendGraph,
    event: &LocationEvent,
    previous: Option<Point>,
    now: i64,
    radius: Radius,
    out: &mut Vec<(String, Delivery)>,
) {
    let LocationBody::Position(report) = &event.body else {
        return;
    };
    let ttl = fanout.config().ttl_ms;
    let me = Point::from_degrees(report.lat, report.lon);
    let my_gateway = fanout.table().get(event.user_id).and_then(|s| s.gateway);
    // The friend list borrowed, not copied: the naive join gets every advantage.
    for &friend in graph.friends(event.user_id) {
        let Some(state) = fanout.table().get(friend) else {
            continue;
        };
        let Some((them, their_ts)) = state.position else {
            continue;
        };
        if their_ts + ttl <= now {
            continue;
        }
        let now_in = radius.contains(me, them);
        let was_in = previous.is_some_and(|p| radius.contains(p, them));
        let mut push = |gateway: Option<&str>, recipient_id, payload| {
            if let Some(gateway) = gateway {
                out.push((
                    gateway.to_string(),
                    Delivery {
                        recipient_id,
                        payload,
                    },
                ));
            }
        };
        if now_in {
            let distance_m = (me.distance_m(them) * 100.0).round() / 100.0;
            push(
                state.gateway,
                friend,
                DeliveryPayload::FriendLocation(FriendLocation {
                    friend_id: event.user_id,
                    lat: report.lat,
                    lon: report.lon,
                    distance_m,
                    updated_at: event.ts,
                }),
            );
            if !was_in {
                let (lat, lon) = them.to_degrees();
                push(
                    my_gateway,
                    event.user_id,
                    DeliveryPayload::FriendLocation(FriendLocation {
                        friend_id: friend,
                        lat,
                        lon,
                        distance_m,
                        updated_at: their_ts,
                    }),
                );
            }
        } else if was_in {
            let left = |friend_id| {
                DeliveryPayload::FriendLeft(FriendLeft {
                    friend_id,
                    reason: LeftReason::OutOfRange,
                })
            };
            push(state.gateway, friend, left(event.user_id));
            push(my_gateway, event.user_id, left(friend));
        }
    }
}

/// Moves measured user `i % MEASURED` near their home, one ms after their last report.
fn next_move(setup: &Setup, events: &mut [LocationEvent], i: usize) -> usize {
    let user = i % MEASURED as usize;
    let (dlat, dlon) = setup.jitter[i % setup.jitter.len()];
    let event = &mut events[user];
    event.ts += 1;
    if let LocationBody::Position(report) = &mut event.body {
        report.lat = setup.homes[user].0 + dlat;
        report.lon = setup.homes[user].1 + dlon;
    }
    user
}

fn bench_updates(c: &mut Criterion) {
    let mut setup = set_up();
    // Reports are 1 ms apart, so "now" (a minute in) keeps every user active for the run.
    let now = T0 + 60_000;
    let radius = Radius::from_m(NEARBY_RADIUS_M);
    let mut events: Vec<LocationEvent> = (0..MEASURED)
        .map(|user| position(user, T0, setup.homes[user as usize]))
        .collect();

    let mut group = c.benchmark_group("update");
    let mut out = Effects::default();
    let mut delivered = 0usize;
    let mut i = 0usize;
    group.bench_function("active_friend_index", |b| {
        b.iter(|| {
            let user = next_move(&setup, &mut events, i);
            i += 1;
            let Setup { fanout, graph, .. } = &mut setup;
            fanout.apply(black_box(&events[user]), true, now, graph, &mut out);
            delivered += out.deliveries.len();
            out.clear();
        })
    });
    eprintln!(
        "index: {:.1} deliveries per update",
        delivered as f64 / i as f64
    );

    let mut naive_out = Vec::new();
    let (mut delivered, mut j) = (0usize, 0usize);
    group.bench_function("naive_all_friends", |b| {
        b.iter(|| {
            let user = next_move(&setup, &mut events, j);
            j += 1;
            let Setup { fanout, graph, .. } = &mut setup;
            let previous = fanout.table().get(user as i64).and_then(|s| s.position);
            // The same table update as fanout's (not owned: no fan-out), then the naive join.
            fanout.apply(black_box(&events[user]), false, now, graph, &mut out);
            naive_fan_out(
                fanout,
                graph,
                &events[user],
                previous.map(|(p, _)| p),
                now,
                radius,
                &mut naive_out,
            );
            delivered += naive_out.len();
            naive_out.clear();
        })
    });
    eprintln!(
        "naive: {:.1} deliveries per update",
        delivered as f64 / j as f64
    );
    group.finish();

    // A takeover of one partition in 12: the whole table is scanned once; the partition's
    // users who reported since `since` are sent again. "everyone" is the worst case (every
    // user reported within the window); "none" is the scan alone.
    let mut group = c.benchmark_group("takeover_refresh_1_of_12_partitions");
    let owns = |u: i64, _ts: i64| nearby_common::partition::partition_of_user(u, 12) == 0;
    for (name, since) in [("everyone", T0 - 1), ("none", now + 1)] {
        let mut sent = (0usize, 0usize);
        group.bench_function(name, |b| {
            b.iter(|| {
                let users = setup.fanout.refresh(black_box(since), owns, now, &mut out);
                sent = (users, out.deliveries.len());
                out.clear();
            })
        });
        eprintln!(
            "refresh ({name}): {} users sent again, {} deliveries",
            sent.0, sent.1
        );
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().sample_size(20).configure_from_args();
    bench_updates(&mut criterion);
    criterion.final_summary();
}
