//! Uploads against a running pipeline (gateway and fanout): an older position in a batch never
//! replaces a newer one, in the cache or on a friend's screen; a newer one goes through.

use std::time::Duration;

use nearby_system_tests::system;
use nearby_testkit::now_ms;
use nearby_testkit::pipeline::*;
use serde_json::json;

/// Waits (at most 20 s) until fanout has read `events` events in all.
async fn read_by(fanout: &nearby_system_tests::TestFanout, events: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fanout
        .status
        .events
        .load(std::sync::atomic::Ordering::Relaxed)
        < events
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fanout did not read the upload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_older_upload_never_replaces_a_newer_position() {
    let (gw, fanout) = system(&[], &[]).await;
    let (a, _, mut ca, mut cb) = connected_friends(&gw, &gw).await;
    at_home(&mut cb).await;

    // A reports live at T, 100 m north; B sees it.
    let t = now_ms();
    report(&mut ca, north(100.0), t).await;
    let seen = location_of(&mut cb, a, 10).await.expect("B sees A");
    assert_eq!(seen["updated_at"], t);
    let events_before = fanout
        .status
        .events
        .load(std::sync::atomic::Ordering::Relaxed);

    // Then a batch of older positions (within the TTL, and one past it), all in range of B.
    let older = vec![
        item(3_000.0, t - 60_000),
        item(4_000.0, t - 1),
        item(5_000.0, t - 30_000),
        item(6_000.0, t - 20 * 60_000),
        item(7_000.0, t),
    ];
    let (status, body) = upload(&gw, a, older).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 5, "{body}");

    // Fanout has read them all...
    read_by(&fanout, events_before + 5).await;
    // ... and B heard of none of them, and the cache still holds T's position.
    let frames = drain(&mut cb, 2).await;
    let a_id = a.to_string();
    assert!(
        !frames
            .iter()
            .any(|f| f["type"] == "friend_location" && f["user_id"] == a_id.as_str()),
        "{frames:?}"
    );
    let latest = cached(&gw.prefix, a).await.expect("A's latest position");
    assert_eq!(latest.ts, t);
    let (lat, lon) = north(100.0);
    assert!(
        (latest.lat - lat).abs() < 1e-6 && (latest.lon - lon).abs() < 1e-6,
        "{latest:?}"
    );

    // A newer position in a batch does go through, to the cache and to B.
    let t2 = now_ms().max(t + 1);
    let (status, body) = upload(&gw, a, vec![item(2_000.0, t2)]).await;
    assert_eq!((status, &body["accepted"]), (202, &json!(1)), "{body}");
    let seen = location_of(&mut cb, a, 10)
        .await
        .expect("B sees the upload");
    assert_eq!(seen["updated_at"], t2);
    assert_distance(&seen, HOME, north(2_000.0));
    assert_eq!(cached(&gw.prefix, a).await.expect("A's latest").ts, t2);

    drop((ca, cb));
    fanout.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn only_the_newest_position_of_a_batch_reaches_friends_and_it_spends_a_report_token() {
    // A slow refill (one report every 100 s), so a spent budget stays spent for the test.
    let (gw, fanout) = system(&["--ingest-rate-per-sec=0.01"], &[]).await;
    let (a, _, mut ca, mut cb) = connected_friends(&gw, &gw).await;
    at_home(&mut cb).await;
    let events_before = fanout
        .status
        .events
        .load(std::sync::atomic::Ordering::Relaxed);

    // Five positions, each newer than the last, in range of B, sent oldest first (as a phone
    // back online would): B is shown the newest alone.
    let t = now_ms() - 5_000;
    let batch: Vec<_> = (0..5)
        .map(|i| item(1_000.0 + 500.0 * f64::from(i), t + i64::from(i) * 1_000))
        .collect();
    let (status, body) = upload(&gw, a, batch).await;
    assert_eq!((status, &body["accepted"]), (202, &json!(5)), "{body}");
    read_by(&fanout, events_before + 5).await;
    let a_id = a.to_string();
    let shown: Vec<_> = drain(&mut cb, 2)
        .await
        .into_iter()
        .filter(|f| f["type"] == "friend_location" && f["user_id"] == a_id.as_str())
        .collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["updated_at"], t + 4_000);
    assert_distance(&shown[0], HOME, north(3_000.0));

    // With A's report budget spent on the socket (a burst of 10: the socket refuses one at
    // least), a batch's newest is refused as a `location` frame would be; the older one is
    // stored.
    for i in 0..11 {
        report(&mut ca, north(100.0), now_ms() - 1_000 + i).await;
    }
    let refused = ca.next_of("error", 10).await.expect("a report refused");
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    let now = now_ms();
    let (status, body) = upload(&gw, a, vec![item(500.0, now - 2_000), item(600.0, now)]).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["errors"][0]["index"], 1, "{body}");
    assert_eq!(body["errors"][0]["code"], "rate_limited", "{body}");

    drop((ca, cb));
    fanout.stop().await;
    gw.stop().await;
}
