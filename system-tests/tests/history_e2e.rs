//! History end to end on the real stack: a phone back online uploads out-of-order positions,
//! the history sink (in-process) writes them, and the history API returns exactly those, oldest
//! first; the live cache keeps the newest position.

use std::time::Duration;

use nearby_system_tests::{TestGateway, start_sink};
use nearby_testkit::{now_ms, unique, user};
use serde_json::{Value, json};

#[tokio::test]
async fn an_out_of_order_upload_lands_in_history_and_the_api_returns_exactly_it() {
    let gw = TestGateway::start(&[]).await;
    let sink = start_sink(&gw.prefix, &gw.keyspace, &unique("test-sink-"), &[]).await;

    let (me, other) = (user(), user());
    let now = now_ms();
    // Hours old, in no order, plus one malformed and one out of range.
    let offsets_min = [90, 30, 150, 60, 120, 5];
    let mut items: Vec<Value> = offsets_min
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"lat": 40.0 + i as f64 / 100.0, "lon": -3.7, "ts": now - m * 60_000}))
        .collect();
    items.insert(2, json!({"lat": "north", "lon": 1.0, "ts": now}));
    items.insert(4, json!({"lat": 91.0, "lon": 1.0, "ts": now}));
    let body = json!({"locations": items}).to_string();
    let (status, answer) = gw.call(me, "POST", "/v1/me/locations", Some(&body)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(6), Some(2))
    );
    // Someone else's position in the same hours never shows in mine.
    let theirs = json!({"locations": [{"lat": 1.0, "lon": 1.0, "ts": now - 45 * 60_000}]});
    assert_eq!(
        gw.call(other, "POST", "/v1/me/locations", Some(&theirs.to_string()))
            .await
            .0,
        202
    );

    let mut want: Vec<i64> = offsets_min.iter().map(|m| now - m * 60_000).collect();
    want.sort_unstable();
    let path = format!("/v1/me/history?from={}&to={}", now - 4 * 3_600_000, now + 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let got = loop {
        let (status, page) = gw.call(me, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        let ts: Vec<i64> = page["locations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ts"].as_i64().unwrap())
            .collect();
        if ts.len() >= want.len() || tokio::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rows = got["locations"].as_array().unwrap();
    let ts: Vec<i64> = rows.iter().map(|l| l["ts"].as_i64().unwrap()).collect();
    assert_eq!(ts, want, "every accepted report, once, oldest first");
    // Each row is the position that was sent with that time.
    for row in rows {
        let i = offsets_min
            .iter()
            .position(|m| now - m * 60_000 == row["ts"].as_i64().unwrap())
            .unwrap();
        assert!((row["lat"].as_f64().unwrap() - (40.0 + i as f64 / 100.0)).abs() < 1e-9);
    }
    // Nobody else reads it.
    let (status, _) = gw
        .call(other, "GET", &format!("/v1/users/{me}/history"), None)
        .await;
    assert_eq!(status, 403);

    sink.stop().await;
    gw.stop().await;
}
