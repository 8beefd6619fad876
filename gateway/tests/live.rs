//! The live pipeline end to end on the real stack: real WebSocket clients → gateway → Kafka →
//! fanout → delivery topics → gateway → sockets, with the user store in Cassandra and the cache
//! in Redis. Each test runs its own gateways and fanout in-process, on its own topics, keyspace,
//! consumer groups and random user ids.

mod support;

use std::time::Duration;

use clap::Parser;
use nearby_common::geo::haversine_m;
use nearby_fanout::service::{FanoutService, FanoutServiceConfig};
use serde_json::{Value, json};
use support::{Client, TestGateway, user};
use tokio_util::sync::CancellationToken;

/// Metres per degree of latitude (haversine's radius).
const M_PER_DEG: f64 = 111_195.08;
const HOME: (f64, f64) = (37.7749, -122.4194);

/// A running fanout instance.
struct TestFanout {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestFanout {
    async fn start(prefix: &str, keyspace: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "nearby-fanout".to_owned(),
            format!("--topic-prefix={prefix}"),
            format!("--cql-keyspace={keyspace}"),
            format!("--group-id={}", support::unique("test-fanout-")),
            "--sweep-interval=200ms".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let config = FanoutServiceConfig::parse_from(args);
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin_addr = admin.local_addr().expect("addr");
        let service = FanoutService::build(config).await.expect("fanout builds");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(service.run(admin, shutdown.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while support::http(admin_addr, "GET", "/readyz", None, None)
            .await
            .0
            != 200
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fanout never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("joins").expect("fanout ran cleanly");
    }
}

/// A gateway and a fanout sharing a prefix and keyspace.
async fn system(extra_gateway: &[&str], extra_fanout: &[&str]) -> (TestGateway, TestFanout) {
    let gw = TestGateway::start(extra_gateway).await;
    let fanout = TestFanout::start(&gw.prefix, &gw.keyspace, extra_fanout).await;
    (gw, fanout)
}

/// Makes `a` and `b` accepted friends through the API.
async fn befriend(gw: &TestGateway, a: i64, b: i64) {
    // Both must exist (their first call creates them) before one can ask the other.
    for u in [a, b] {
        assert_eq!(gw.call(u, "GET", "/v1/me", None).await.0, 200);
    }
    assert_eq!(
        gw.call(a, "PUT", &format!("/v1/me/friends/{b}"), None)
            .await
            .1["status"],
        "requested"
    );
    assert_eq!(
        gw.call(b, "PUT", &format!("/v1/me/friends/{a}"), None)
            .await
            .1["status"],
        "accepted"
    );
}

/// A point `north_m` metres north of HOME.
fn north(north_m: f64) -> (f64, f64) {
    (HOME.0 + north_m / M_PER_DEG, HOME.1)
}

async fn report(c: &mut Client, at: (f64, f64), ts: i64) {
    c.send_json(json!({"type": "location", "lat": at.0, "lon": at.1, "ts": ts}))
        .await;
}

/// Reports HOME now and takes the first page that answers it.
async fn at_home(c: &mut Client) {
    report(c, HOME, support::now_ms()).await;
    c.next_of("nearby", 10).await.expect("first page");
}

/// Every frame that arrives within `secs` (for "never" assertions).
async fn drain(c: &mut Client, secs: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(v)) = tokio::time::timeout_at(deadline, c.next_within(secs)).await {
        out.push(v);
    }
    out
}

fn assert_distance(entry: &Value, a: (f64, f64), b: (f64, f64)) {
    let want = haversine_m(a.0, a.1, b.0, b.1);
    let got = entry["distance_m"].as_f64().expect("distance");
    assert!(
        (got - want).abs() / want < 0.003,
        "distance {got} vs haversine {want}"
    );
}

#[tokio::test]
async fn friends_in_range_see_each_other_move_in_and_out_and_strangers_never_do() {
    let (gw, fanout) = system(&[], &[]).await;
    let (a, b, far, stranger, pending) = (user(), user(), user(), user(), user());
    for u in [a, b, far, stranger, pending] {
        assert_eq!(gw.call(u, "GET", "/v1/me", None).await.0, 200);
    }
    befriend(&gw, a, b).await;
    befriend(&gw, a, far).await;
    assert_eq!(
        gw.call(pending, "PUT", &format!("/v1/me/friends/{a}"), None)
            .await
            .1["status"],
        "requested"
    );

    let mut ca = gw.connect(a).await;
    let mut cb = gw.connect(b).await;
    let mut cfar = gw.connect(far).await;
    let mut cs = gw.connect(stranger).await;
    let mut cp = gw.connect(pending).await;

    // A at home; the stranger and the pending requester 100 m away; `far` 12 km away.
    let t0 = support::now_ms();
    report(&mut ca, HOME, t0).await;
    assert_eq!(
        ca.next_of("nearby", 10).await.expect("first page")["friends"],
        json!([])
    );
    for c in [&mut cs, &mut cp] {
        report(c, north(100.0), t0).await;
    }
    report(&mut cfar, north(12_000.0), t0).await;

    // B 2 km away: both see each other at once, with the right distance and time.
    let t1 = support::now_ms();
    report(&mut cb, north(2_000.0), t1).await;
    let seen_by_a = ca.next_of("friend_location", 10).await.expect("A sees B");
    assert_eq!(seen_by_a["user_id"], b.to_string());
    assert_eq!(seen_by_a["updated_at"], t1);
    assert_distance(&seen_by_a, HOME, north(2_000.0));
    let page_b = cb.next_of("nearby", 10).await.expect("B's first page");
    let seen_by_b = match page_b["friends"].as_array().and_then(|f| f.first()) {
        Some(entry) => entry.clone(),
        None => cb.next_of("friend_location", 10).await.expect("B sees A"),
    };
    assert_eq!(seen_by_b["user_id"], a.to_string());
    assert_eq!(seen_by_b["updated_at"], t0);
    assert_distance(&seen_by_b, north(2_000.0), HOME);

    // `far` moves to 5 km: both A and `far` get an entry at once.
    report(&mut cfar, north(5_000.0), support::now_ms()).await;
    let a_sees_far = ca.next_of("friend_location", 10).await.expect("A sees far");
    assert_eq!(a_sees_far["user_id"], far.to_string());
    let far_sees_a = cfar
        .next_of("friend_location", 10)
        .await
        .expect("far sees A");
    assert_eq!(far_sees_a["user_id"], a.to_string());

    // B moves out to 9 km: both get friend_left/out_of_range.
    report(&mut cb, north(9_000.0), support::now_ms()).await;
    let left = ca.next_of("friend_left", 10).await.expect("A told B left");
    assert_eq!(
        left,
        json!({"type": "friend_left", "user_id": b.to_string(), "reason": "out_of_range"})
    );
    let left = cb.next_of("friend_left", 10).await.expect("B told A left");
    assert_eq!(
        left,
        json!({"type": "friend_left", "user_id": a.to_string(), "reason": "out_of_range"})
    );

    // The stranger and the pending requester never saw a position of A or B.
    for c in [&mut cs, &mut cp] {
        for frame in drain(c, 2).await {
            assert!(frame["type"] != "friend_location", "leak: {frame}");
            if frame["type"] == "nearby" {
                assert_eq!(frame["friends"], json!([]), "leak: {frame}");
            }
        }
    }
    fanout.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn users_on_two_gateways_see_each_other() {
    let gw1 = TestGateway::start(&[]).await;
    let gw2 = TestGateway::start_on(&gw1.prefix, &gw1.keyspace, "gw-b", &[]).await;
    let fanout = TestFanout::start(&gw1.prefix, &gw1.keyspace, &[]).await;
    let (a, b) = (user(), user());
    befriend(&gw1, a, b).await;
    let mut ca = gw1.connect(a).await;
    let mut cb = gw2.connect(b).await;
    at_home(&mut ca).await;
    report(&mut cb, north(1_000.0), support::now_ms()).await;
    let seen = ca
        .next_of("friend_location", 10)
        .await
        .expect("A (gw-a) sees B (gw-b)");
    assert_eq!(seen["user_id"], b.to_string());
    // B learns of A either in its first page or as a delivery, depending on who is first.
    let page = cb.next_of("nearby", 10).await.expect("page");
    let listed = page["friends"].as_array().is_some_and(|f| {
        f.iter()
            .any(|e| e["user_id"].as_str() == Some(a.to_string().as_str()))
    });
    if !listed {
        let seen = cb
            .next_of("friend_location", 10)
            .await
            .expect("B (gw-b) sees A (gw-a)");
        assert_eq!(seen["user_id"], a.to_string());
    }
    fanout.stop().await;
    gw2.stop().await;
    gw1.stop().await;
}

#[tokio::test]
async fn a_silent_friend_drops_out_after_the_ttl() {
    let (gw, fanout) = system(&["--location-ttl=3s"], &["--location-ttl=3s"]).await;
    let (a, b) = (user(), user());
    befriend(&gw, a, b).await;
    let mut ca = gw.connect(a).await;
    let mut cb = gw.connect(b).await;
    at_home(&mut ca).await;
    report(&mut cb, north(500.0), support::now_ms()).await;
    ca.next_of("friend_location", 10).await.expect("A sees B");
    // Keep A alive; B stays silent past the TTL.
    let keep_alive = tokio::spawn(async move {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            report(&mut ca, HOME, support::now_ms()).await;
        }
        ca
    });
    let mut ca = keep_alive.await.expect("joins");
    let left = ca
        .next_of("friend_left", 10)
        .await
        .expect("A told B went inactive");
    assert_eq!(
        left,
        json!({"type": "friend_left", "user_id": b.to_string(), "reason": "inactive"})
    );
    fanout.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn an_older_report_does_not_overwrite_a_newer_one() {
    let (gw, fanout) = system(&[], &[]).await;
    let (a, b) = (user(), user());
    befriend(&gw, a, b).await;
    let mut ca = gw.connect(a).await;
    let mut cb = gw.connect(b).await;
    at_home(&mut ca).await;
    let newer = support::now_ms();
    report(&mut cb, north(1_000.0), newer).await;
    let first = ca.next_of("friend_location", 10).await.expect("A sees B");
    assert_eq!(first["updated_at"], newer);
    // An older report of B (sent later, from a phone's backlog) is stored but changes nothing.
    report(&mut cb, north(3_000.0), newer - 60_000).await;
    for frame in drain(&mut ca, 3).await {
        assert!(
            frame["type"] != "friend_location" || frame["updated_at"] == newer,
            "older report leaked: {frame}"
        );
    }
    // The cache keeps the newer position: a fresh page shows it.
    let mut ca2 = gw.connect(a).await;
    report(&mut ca2, HOME, support::now_ms()).await;
    let page = ca2.next_of("nearby", 10).await.expect("page");
    assert_eq!(page["friends"][0]["updated_at"], newer, "{page}");
    assert_distance(&page["friends"][0], HOME, north(1_000.0));
    fanout.stop().await;
    gw.stop().await;
}
