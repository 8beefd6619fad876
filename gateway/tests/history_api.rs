//! The caller's own positions over HTTP, against the real stack: batch uploads (checked item
//! by item, exactly the accepted ones on the location topic, limits, an older position never
//! replacing a newer one in fanout) and the history reads (own rows only, ranges, paging).

use nearby_common::history::HistoryRow;
use nearby_schemas::LocationBody;
use nearby_testkit::pipeline::*;
use nearby_testkit::records::topic_records;
use nearby_testkit::{http_raw, now_ms, token, user};
use serde_json::{Value, json};

/// The real gateway, started in-process by the test kit.
type TestGateway = nearby_testkit::TestGateway<nearby_gateway::GatewayStage>;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

#[tokio::test]
async fn a_batch_is_checked_item_by_item_and_exactly_the_accepted_reach_the_topic() {
    let gw = TestGateway::start(&[]).await;
    let u = user();
    let now = now_ms();
    let mut items = vec![
        item(100.0, now - 3 * HOUR_MS), // 0 ok
        json!({"lat": 1.5, "lon": 2.5, "ts": now - 5 * HOUR_MS, "accuracy_m": 12.5}), // 1 ok, older
        json!({"lat": 91.0, "lon": 0.0, "ts": now - HOUR_MS}), // 2 lat 91
        json!({"lat": 1.0, "lon": 2.0}), // 3 no ts
        item(200.0, now - 2 * DAY_MS),  // 4 ok: older than live allows
        item(300.0, now - 8 * DAY_MS),  // 5 over 7 days
        item(400.0, now + 5 * 60_000),  // 6 in the future
        item(500.0, now - HOUR_MS),     // 7 ok, newer than 0
        json!("not a location"),        // 8
        json!({"lat": 1.0, "lon": 2.0, "ts": now, "user_id": 7}), // 9 unknown field
        json!({"lat": 1.0, "lon": 2.0, "ts": now, "accuracy_m": -1.0}), // 10
        json!({"lat": "1", "lon": 2.0, "ts": now}), // 11 a string
    ];
    let (status, body) = upload(&gw, u, items.clone()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 4, "{body}");
    assert_eq!(body["rejected"], 8, "{body}");
    let errors: Vec<(u64, &str)> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            (
                e["index"].as_u64().expect("index"),
                e["code"].as_str().expect("code"),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (2, "invalid_coordinates"),
            (3, "bad_item"),
            (5, "timestamp_too_old"),
            (6, "timestamp_in_future"),
            (8, "bad_item"),
            (9, "bad_item"),
            (10, "invalid_accuracy"),
            (11, "bad_item"),
        ]
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("between -90 and 90")),
        "{body}"
    );

    // Exactly the four accepted, newest first (so fanout takes the newest alone), as positions
    // of `u` with no gateway.
    let records = topic_records(&gw.prefix).await;
    assert_eq!(records.len(), 4, "{records:?}");
    for (event, index) in records.iter().zip([7, 0, 1, 4]) {
        let sent = &items[index];
        assert_eq!(event.user_id, u);
        assert_eq!(event.gateway_id, None, "an upload says nothing of sockets");
        assert_eq!(event.ts, sent["ts"].as_i64().expect("ts"));
        let LocationBody::Position(p) = &event.body else {
            panic!("not a position: {event:?}");
        };
        assert_eq!(p.lat, sent["lat"].as_f64().expect("lat"));
        assert_eq!(p.lon, sent["lon"].as_f64().expect("lon"));
        assert_eq!(p.accuracy_m, sent["accuracy_m"].as_f64());
        assert!(event.received_at >= now, "{event:?}");
    }

    // A batch of nothing but bad items produces nothing more.
    items.retain(|i| i["lat"] == 91.0);
    let (status, body) = upload(&gw, u, items).await;
    assert_eq!(status, 202);
    assert_eq!(
        body,
        json!({"accepted": 0, "rejected": 1, "errors": [{"index": 0, "code": "invalid_coordinates", "message": body["errors"][0]["message"]}]})
    );
    assert_eq!(topic_records(&gw.prefix).await.len(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn too_many_too_large_or_malformed_batches_store_nothing() {
    let gw = TestGateway::start(&["--upload-rate-burst=100"]).await;
    let u = user();
    let now = now_ms();

    let many: Vec<Value> = (0..101).map(|i| item(10.0, now - i * 1_000)).collect();
    let (status, body) = upload(&gw, u, many.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_many");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 100")),
        "{body}"
    );

    // Over 64 KiB: refused before it is parsed, whatever it holds.
    let huge: Vec<Value> = (0..2_000).map(|i| item(10.0, now - i * 1_000)).collect();
    let huge = json!({ "locations": huge }).to_string();
    assert!(huge.len() > 65_536);
    let (status, body) = gw.call(u, "POST", "/v1/me/locations", Some(&huge)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");

    for bad in [
        "not json",
        "[]",
        "{}",
        r#"{"locations": 5}"#,
        r#"{"locations": {"lat": 1}}"#,
        r#"{"locations": [], "user_id": 1}"#,
    ] {
        let (status, body) = gw.call(u, "POST", "/v1/me/locations", Some(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_body", "{bad}");
    }

    assert!(topic_records(&gw.prefix).await.is_empty());

    // The limit itself is fine, and an empty batch is a no-op.
    let (status, body) = upload(&gw, u, many[..100].to_vec()).await;
    assert_eq!((status, &body["accepted"]), (202, &json!(100)), "{body}");
    let (status, body) = upload(&gw, u, Vec::new()).await;
    assert_eq!(status, 202);
    assert_eq!(body, json!({"accepted": 0, "rejected": 0, "errors": []}));
    assert_eq!(topic_records(&gw.prefix).await.len(), 100);
    gw.stop().await;
}

#[tokio::test]
async fn uploads_are_rate_limited_per_user() {
    let gw = TestGateway::start(&["--upload-rate-burst=2", "--upload-rate-per-sec=0.01"]).await;
    let (u, other) = (user(), user());
    let now = now_ms();
    for i in 0..2 {
        let (status, body) = upload(&gw, u, vec![item(10.0, now - i)]).await;
        assert_eq!(status, 202, "{body}");
    }
    // Every request counts, a bad one too.
    let body = json!({"locations": [item(10.0, now - 5)]}).to_string();
    let limited = http_raw(
        gw.addr,
        "POST",
        "/v1/me/locations",
        Some(&token(u)),
        Some(&body),
    )
    .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let error: Value = serde_json::from_str(&limited.body).expect("JSON");
    assert_eq!(error["error"]["code"], "rate_limited");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("2 requests at once") && message.contains("1m 40s"),
        "{message}"
    );
    let retry: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=100).contains(&retry), "{retry}");
    let (status, _) = gw.call(u, "POST", "/v1/me/locations", Some("bad")).await;
    assert_eq!(status, 429, "limited before the body is read");

    // Another user has their own bucket.
    let (status, body) = upload(&gw, other, vec![item(10.0, now)]).await;
    assert_eq!(status, 202, "{body}");
    // Nothing of the refused calls was produced.
    assert_eq!(topic_records(&gw.prefix).await.len(), 3);
    gw.stop().await;
}

/// A stored row of `user` at `ts`, with values derived from both.
fn row(user: i64, ts: i64) -> HistoryRow {
    let k = ((ts / 60_000) % 1_000) as f64;
    HistoryRow {
        user_id: user,
        ts,
        lat: 10.0 + k / 1_000.0,
        lon: if user % 2 == 0 { 20.0 } else { -20.0 },
        accuracy_m: (k as i64 % 2 == 0).then_some(k),
        received_at: ts + 250,
    }
}

fn entry(r: &HistoryRow) -> Value {
    json!({"lat": r.lat, "lon": r.lon, "ts": r.ts, "accuracy_m": r.accuracy_m, "received_at": r.received_at})
}

/// Every page of `path` (a query without `cursor`) at `limit`, checking each page's size.
async fn all_pages(gw: &TestGateway, u: i64, path: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let (status, page) = gw.call(u, "GET", &url, None).await;
        assert_eq!(status, 200, "{url}: {page}");
        let items = page["locations"].as_array().expect("locations");
        out.extend(items.iter().cloned());
        match page["next"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), limit, "a page before the last is full");
                cursor = Some(c.to_owned());
            }
            None => {
                assert!(page["next"].is_null());
                return out;
            }
        }
    }
    panic!("paging never ended");
}

#[tokio::test]
async fn history_shows_the_owner_their_own_rows_in_range_oldest_first_paged() {
    let gw = TestGateway::start(&[]).await;
    let (a, b, unknown) = (user(), user(), user());
    for u in [a, b] {
        assert_eq!(gw.call(u, "GET", "/v1/me", None).await.0, 200);
    }
    // Midnight (UTC) two days ago: rows on both sides of it are in two partitions.
    let midnight = (now_ms() / DAY_MS - 2) * DAY_MS;
    let at = |h: f64| midnight + (h * HOUR_MS as f64) as i64;
    let a_times = [
        at(-10.0),
        at(-3.0),
        at(-2.0),
        at(-1.0),
        midnight - 1,
        midnight,
        at(1.0),
        at(2.0),
        at(5.0),
        at(10.0),
    ];
    let b_times = [at(-2.0), at(-1.5), midnight, at(3.0)];
    let recent = now_ms() - HOUR_MS;
    let history = &gw.gw.history;
    // Inserted newest first, A and B mixed: the order read back is the store's.
    for &ts in a_times.iter().rev() {
        history.insert(&row(a, ts)).await.expect("insert");
        history.insert(&row(b, ts + 7)).await.expect("insert");
    }
    for &ts in &b_times {
        history.insert(&row(b, ts)).await.expect("insert");
    }
    history.insert(&row(a, recent)).await.expect("insert");

    // [at(-3), at(10)): A's rows from at(-3) to at(5), oldest first, never B's.
    let (from, to) = (at(-3.0), at(10.0));
    let want: Vec<Value> = a_times[1..9].iter().map(|&ts| entry(&row(a, ts))).collect();
    let path = format!("/v1/me/history?from={from}&to={to}");
    let (status, page) = gw.call(a, "GET", &path, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page, json!({"locations": want, "next": null}));
    for limit in [1, 3, 7, 8, 1000] {
        assert_eq!(all_pages(&gw, a, &path, limit).await, want, "limit {limit}");
    }
    // The same through /v1/users/{me}/history, and a cursor alone carries its range.
    let own = format!("/v1/users/{a}/history?from={from}&to={to}");
    assert_eq!(all_pages(&gw, a, &own, 3).await, want);
    let (_, first) = gw.call(a, "GET", &format!("{path}&limit=5"), None).await;
    let cursor = first["next"].as_str().expect("more");
    let (status, rest) = gw
        .call(a, "GET", &format!("/v1/me/history?cursor={cursor}"), None)
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["locations"], json!(want[5..]));
    assert_eq!(rest["next"], Value::Null);

    // B sees only B's rows.
    let b_want: Vec<Value> = {
        let mut ts: Vec<i64> = a_times[1..9].iter().map(|t| t + 7).collect();
        ts.extend(b_times);
        ts.retain(|t| (from..to).contains(t));
        ts.sort_unstable();
        ts.iter().map(|&t| entry(&row(b, t))).collect()
    };
    assert_eq!(all_pages(&gw, b, &path, 4).await, b_want);

    // Without a range: the last 24 hours.
    let (status, page) = gw.call(a, "GET", "/v1/me/history", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["locations"], json!([entry(&row(a, recent))]));

    // Only the owner reads a history, and the refusal is the same whether the id is a user's or
    // not: it tells nothing about which ids exist.
    let (status, existing) = gw
        .call(a, "GET", &format!("/v1/users/{b}/history"), None)
        .await;
    assert_eq!(
        (status, &existing["error"]["code"]),
        (403, &json!("forbidden"))
    );
    let (status, unknown) = gw
        .call(a, "GET", &format!("/v1/users/{unknown}/history"), None)
        .await;
    assert_eq!((status, &unknown,), (403, &existing));
    let (status, body) = gw.call(a, "GET", "/v1/users/abc/history", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("bad_user_id"))
    );

    // Bad ranges, limits and cursors.
    let month = 31 * DAY_MS;
    for (query, code) in [
        (format!("from={from}&to={from}"), "bad_range"),
        (format!("from={to}&to={from}"), "bad_range"),
        (format!("from={from}&to={}", from + month + 1), "bad_range"),
        (format!("from={}", now_ms() - month - 60_000), "bad_range"),
        ("from=yesterday".to_owned(), "bad_range"),
        ("to=-5".to_owned(), "bad_range"),
        ("limit=0".to_owned(), "bad_limit"),
        ("limit=1001".to_owned(), "bad_limit"),
        ("cursor=nonsense".to_owned(), "bad_cursor"),
        (format!("cursor={cursor}&to={}", to + 1), "bad_cursor"),
        ("from=1&from=2".to_owned(), "bad_query"),
    ] {
        for base in ["/v1/me/history", &format!("/v1/users/{a}/history")] {
            let (status, body) = gw.call(a, "GET", &format!("{base}?{query}"), None).await;
            assert_eq!(status, 400, "{query}: {body}");
            assert_eq!(body["error"]["code"], code, "{query}");
        }
    }
    // Exactly 31 days is allowed.
    let (status, _) = gw
        .call(
            a,
            "GET",
            &format!("/v1/me/history?from={}&to={}", to - month, to),
            None,
        )
        .await;
    assert_eq!(status, 200);
    gw.stop().await;
}
