//! The live pipeline end to end on the real stack: real WebSocket clients → gateway → Kafka →
//! fanout → delivery topics → gateway → sockets, with the user store in Cassandra and the cache
//! in Redis. Each test runs its own gateways and fanout in-process, on its own topics, keyspace,
//! consumer groups and random user ids.

use std::time::Duration;

use nearby_system_tests::{TestGateway, start_fanout, system};
use nearby_testkit::pipeline::*;
use nearby_testkit::{now_ms, user};
use serde_json::json;

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
    let t0 = now_ms();
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
    let t1 = now_ms();
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
    report(&mut cfar, north(5_000.0), now_ms()).await;
    let a_sees_far = ca.next_of("friend_location", 10).await.expect("A sees far");
    assert_eq!(a_sees_far["user_id"], far.to_string());
    let far_sees_a = cfar
        .next_of("friend_location", 10)
        .await
        .expect("far sees A");
    assert_eq!(far_sees_a["user_id"], a.to_string());

    // B moves out to 9 km: both get friend_left/out_of_range.
    report(&mut cb, north(9_000.0), now_ms()).await;
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
    let fanout = start_fanout(&gw1.prefix, &gw1.keyspace, &[]).await;
    let (a, b, mut ca, mut cb) = connected_friends(&gw1, &gw2).await;
    at_home(&mut ca).await;
    report(&mut cb, north(1_000.0), now_ms()).await;
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
    let (_, b, mut ca, mut cb) = connected_friends(&gw, &gw).await;
    at_home(&mut ca).await;
    report(&mut cb, north(500.0), now_ms()).await;
    ca.next_of("friend_location", 10).await.expect("A sees B");
    // Keep A alive; B stays silent past the TTL.
    let keep_alive = tokio::spawn(async move {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            report(&mut ca, HOME, now_ms()).await;
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
    let (a, _, mut ca, mut cb) = connected_friends(&gw, &gw).await;
    at_home(&mut ca).await;
    let newer = now_ms();
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
    report(&mut ca2, HOME, now_ms()).await;
    let page = ca2.next_of("nearby", 10).await.expect("page");
    assert_eq!(page["friends"][0]["updated_at"], newer, "{page}");
    assert_distance(&page["friends"][0], HOME, north(1_000.0));
    fanout.stop().await;
    gw.stop().await;
}
