//! The socket and HTTP API of one real gateway, in-process on port 0, against the real stack:
//! authentication, bad input, floods, the first page and paging, and delivery routing.

use std::time::Duration;

use nearby_common::redis_store::{LatestLocation, LocationCache};
use nearby_schemas::{Delivery, DeliveryPayload, FriendLocation, LocationBody, LocationEvent};
use nearby_testkit::{SECRET, brokers, http, now_ms, redis_url, unique, user};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;

/// The real gateway, started in-process by the test kit.
type TestGateway = nearby_testkit::TestGateway<nearby_gateway::GatewayStage>;

/// Every record of `user` on the location topic, read from the start.
fn location_records(prefix: &str, user: i64) -> Vec<LocationEvent> {
    let topic = format!("{prefix}.location-updates");
    let consumer: BaseConsumer =
        nearby_common::kafka::consumer_config(&brokers(), &unique("test-read-"))
            .create()
            .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let e: LocationEvent =
                nearby_schemas::decode(m.payload().expect("payload")).expect("decodes");
            if e.user_id == user {
                out.push(e);
            }
        }
    }
    out
}

#[tokio::test]
async fn no_forged_expired_premature_or_overlong_token_gets_in_and_an_aud_claim_does() {
    let gw = TestGateway::start(&[]).await;
    let u = user();
    let now = nearby_common::clock::now_s();
    let claims = |c: serde_json::Value| nearby_common::auth::mint_json_hs256(SECRET.as_bytes(), &c);
    // Most identity providers put an `aud` in every token: accepted while none is configured.
    let with_aud = claims(json!({"sub": u.to_string(), "exp": now + 600, "aud": "nearby-api"}));
    let (status, body) = http(gw.addr, "GET", "/v1/me", Some(&with_aud), None).await;
    assert_eq!(
        (status, &body["user_id"]),
        (200, &json!(u.to_string())),
        "{body}"
    );
    for token in [
        // Valid only in five minutes.
        Some(claims(
            json!({"sub": u.to_string(), "exp": now + 900, "nbf": now + 300}),
        )),
        // Valid for a century: over the 24 h maximum.
        Some(claims(
            json!({"sub": u.to_string(), "exp": now + 100 * 365 * 86_400}),
        )),
        None,
        Some(nearby_common::auth::mint_hs256(
            b"wrong-secret",
            u,
            Duration::from_secs(60),
        )),
        Some(nearby_common::auth::mint_claims_hs256(
            SECRET.as_bytes(),
            &nearby_common::auth::Claims {
                sub: u.to_string(),
                exp: 1_000,
                iat: 0,
            },
        )),
    ] {
        let url = match &token {
            Some(t) => format!("ws://{}/v1/ws?access_token={t}", gw.addr),
            None => format!("ws://{}/v1/ws", gw.addr),
        };
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401)
            }
            other => panic!("expected 401, got {other:?}"),
        }
        let (status, body) = http(gw.addr, "GET", "/v1/me", token.as_deref(), None).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    gw.stop().await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_session_goes_on_and_nothing_is_produced() {
    let gw = TestGateway::start(&[]).await;
    let u = user();
    let mut c = gw.connect(u).await;
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "bad_frame"),
        (
            json!({"type": "location", "lat": 91.0, "lon": 0.0, "ts": now_ms()}).to_string(),
            "invalid_coordinates",
        ),
        (
            r#"{"type":"location","lat":NaN,"lon":0,"ts":1}"#.into(),
            "bad_frame",
        ),
        (
            json!({"type": "location", "lat": "NaN", "lon": 0.0, "ts": now_ms()}).to_string(),
            "bad_frame",
        ),
        (
            json!({"type": "location", "lat": 1.0, "lon": 1.0, "ts": now_ms() + 3_600_000})
                .to_string(),
            "timestamp_in_future",
        ),
        (json!({"type": "teleport"}).to_string(), "bad_frame"),
        (
            json!({"type": "more", "cursor": "x"}).to_string(),
            "no_position",
        ),
        (
            format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(5_000)),
            "frame_too_large",
        ),
    ];
    for (frame, code) in &cases {
        c.send_text(frame).await;
        let reply = c.next_within(5).await.expect("an answer");
        assert_eq!(reply["type"], "error", "{frame:.60}: {reply}");
        assert_eq!(reply["code"], *code, "{frame:.60}: {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    c.send_json(json!({"type": "ping", "id": 7})).await;
    assert_eq!(
        c.next_within(5).await.expect("pong"),
        json!({"type": "pong", "id": 7})
    );
    // A binary frame is refused too.
    futures::SinkExt::send(
        &mut c.ws,
        tokio_tungstenite::tungstenite::Message::binary(vec![1, 2, 3]),
    )
    .await
    .expect("send");
    assert_eq!(
        c.next_within(5).await.expect("answer")["code"],
        "binary_not_supported"
    );

    // Only the connect reached the log: no rejected report was produced.
    let records = location_records(&gw.prefix, u);
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(matches!(records[0].body, LocationBody::Connected(_)));
    assert_eq!(records[0].gateway_id.as_deref(), Some("gw-a"));
    gw.stop().await;
}

#[tokio::test]
async fn a_flood_gets_rate_limited_errors_then_close_1008() {
    let gw =
        TestGateway::start(&["--frame-rate=5", "--frame-burst=5", "--flood-tolerance=3"]).await;
    let mut c = gw.connect(user()).await;
    for i in 0..20 {
        c.send_json(json!({"type": "ping", "id": i})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    let mut flood = 0;
    while let Some(v) = c.next_within(3).await {
        match (v["type"].as_str(), v["code"].as_str()) {
            (Some("pong"), _) => pongs += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            (Some("error"), Some("flood")) => {
                flood += 1;
                break;
            }
            _ => panic!("unexpected {v}"),
        }
    }
    assert_eq!((pongs, limited, flood), (5, 3, 1));
    assert_eq!(c.close_code(5).await, Some(1008));
    gw.stop().await;
}

#[tokio::test]
async fn first_page_is_the_twenty_nearest_and_more_brings_the_rest() {
    let gw = TestGateway::start(&[]).await;
    let me = user();
    let (lat, lon) = (37.7749, -122.4194);
    // 25 accepted friends 100 m apart going north, one pending request and one stranger
    // nearer than all of them, and a friend 12 km away.
    let friends: Vec<i64> = (0..26).map(|_| user()).collect();
    let pending = user();
    let stranger = user();
    for f in friends.iter().chain([&pending, &stranger]) {
        assert_eq!(gw.call(*f, "GET", "/v1/me", None).await.0, 200);
    }
    for f in &friends {
        assert_eq!(
            gw.call(me, "PUT", &format!("/v1/me/friends/{f}"), None)
                .await
                .1["status"],
            "requested"
        );
        assert_eq!(
            gw.call(*f, "PUT", &format!("/v1/me/friends/{me}"), None)
                .await
                .1["status"],
            "accepted"
        );
    }
    assert_eq!(
        gw.call(pending, "PUT", &format!("/v1/me/friends/{me}"), None)
            .await
            .1["status"],
        "requested"
    );
    let cache = LocationCache::new(&gw.prefix, 600);
    let mut redis = nearby_common::redis_store::connect(&redis_url())
        .await
        .expect("redis");
    let now = now_ms();
    for (i, f) in friends.iter().take(25).enumerate() {
        let step = 0.0009 * (25 - i) as f64; // the last one is nearest
        cache
            .set(
                &mut redis,
                *f,
                &LatestLocation {
                    lat: lat + step,
                    lon,
                    ts: now - 1_000,
                },
            )
            .await
            .expect("seed");
    }
    cache
        .set(
            &mut redis,
            friends[25],
            &LatestLocation {
                lat: lat + 0.108,
                lon,
                ts: now,
            },
        )
        .await
        .expect("seed");
    for u in [pending, stranger] {
        cache
            .set(
                &mut redis,
                u,
                &LatestLocation {
                    lat: lat + 0.00001,
                    lon,
                    ts: now,
                },
            )
            .await
            .expect("seed");
    }

    let mut c = gw.connect(me).await;
    c.location(lat, lon).await;
    let page = c.next_of("nearby", 10).await.expect("first page");
    let first: Vec<&serde_json::Value> = page["friends"].as_array().expect("list").iter().collect();
    assert_eq!(first.len(), 20, "{page}");
    let dists: Vec<f64> = first
        .iter()
        .map(|e| e["distance_m"].as_f64().expect("distance"))
        .collect();
    assert!(
        dists.windows(2).all(|w| w[0] <= w[1]),
        "nearest first: {dists:?}"
    );
    let expected_nearest = friends[24];
    assert_eq!(first[0]["user_id"], expected_nearest.to_string());
    let want = nearby_common::geo::haversine_m(lat, lon, lat + 0.0009, lon);
    assert!(
        (dists[0] - want).abs() / want < 0.003,
        "{} vs {want}",
        dists[0]
    );
    assert_eq!(first[0]["name"], expected_nearest.to_string());
    let cursor = page["next"].as_str().expect("a next cursor").to_owned();

    c.send_json(json!({"type": "more", "cursor": cursor})).await;
    let rest = c.next_of("nearby", 10).await.expect("second page");
    let second = rest["friends"].as_array().expect("list");
    assert_eq!(second.len(), 5, "{rest}");
    assert!(rest["next"].is_null());
    let listed: Vec<String> = first
        .iter()
        .copied()
        .chain(second.iter())
        .map(|e| e["user_id"].as_str().expect("id").to_owned())
        .collect();
    for outsider in [pending, stranger, friends[25]] {
        assert!(
            !listed.contains(&outsider.to_string()),
            "{outsider} must not be listed"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_delivery_reaches_the_recipients_socket_with_the_friends_name() {
    let gw = TestGateway::start(&[]).await;
    let (me, friend) = (user(), user());
    assert_eq!(
        gw.call(friend, "PATCH", "/v1/me", Some(r#"{"name":"Ana"}"#))
            .await
            .1["name"],
        "Ana"
    );
    let mut c = gw.connect(me).await;
    let producer: FutureProducer = nearby_common::kafka::producer_config(&brokers())
        .create()
        .expect("producer");
    let delivery = Delivery {
        recipient_id: me,
        payload: DeliveryPayload::FriendLocation(FriendLocation {
            friend_id: friend,
            lat: 37.78,
            lon: -122.41,
            distance_m: 1234.5678,
            updated_at: 1_764_057_600_000,
        }),
    };
    let bytes = nearby_schemas::to_vec(&delivery).expect("encode");
    let topic = format!("{}.deliveries.gw-a", gw.prefix);
    producer
        .send(
            FutureRecord::to(&topic)
                .key(&me.to_string())
                .payload(&bytes),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produced");
    let got = c.next_of("friend_location", 10).await.expect("delivered");
    assert_eq!(
        got,
        json!({"type": "friend_location", "user_id": friend.to_string(), "name": "Ana",
               "lat": 37.78, "lon": -122.41, "distance_m": 1234.57, "updated_at": 1_764_057_600_000_i64})
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_batch_record_reaches_each_recipient_in_order_and_poison_is_skipped() {
    let gw = TestGateway::start(&[]).await;
    let (me, other, absent) = (user(), user(), user());
    let (ana, bo) = (user(), user());
    for (u, name) in [(ana, "Ana"), (bo, "Bo")] {
        let body = format!(r#"{{"name":"{name}"}}"#);
        assert_eq!(
            gw.call(u, "PATCH", "/v1/me", Some(&body)).await.1["name"],
            name
        );
    }
    let mut mine = gw.connect(me).await;
    let mut theirs = gw.connect(other).await;
    let at = |recipient, friend, distance_m| Delivery {
        recipient_id: recipient,
        payload: DeliveryPayload::FriendLocation(FriendLocation {
            friend_id: friend,
            lat: 37.78,
            lon: -122.41,
            distance_m,
            updated_at: 1_764_057_600_000,
        }),
    };
    let batch = nearby_schemas::DeliveryBatch {
        deliveries: vec![
            at(me, ana, 100.0),
            at(absent, ana, 5.0),
            at(other, ana, 200.0),
            at(me, bo, 300.0),
        ],
    };
    let topic = format!("{}.deliveries.gw-a", gw.prefix);
    // A record no schema reads first: it is skipped, and the batch after it still arrives.
    nearby_testkit::records::produce_values(
        &topic,
        &[
            b"\xc3\x01not avro".to_vec(),
            nearby_schemas::to_vec(&batch).expect("encode"),
        ],
    )
    .await;
    let first = mine
        .next_of("friend_location", 10)
        .await
        .expect("delivered");
    let second = mine
        .next_of("friend_location", 10)
        .await
        .expect("delivered");
    assert_eq!(
        (&first["name"], &first["distance_m"]),
        (&json!("Ana"), &json!(100.0))
    );
    assert_eq!(
        (&second["name"], &second["distance_m"]),
        (&json!("Bo"), &json!(300.0))
    );
    let got = theirs
        .next_of("friend_location", 10)
        .await
        .expect("delivered");
    assert_eq!(got["user_id"], json!(ana.to_string()));
    assert_eq!(got["distance_m"], json!(200.0));
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_idle_timeout_and_frames_keep_it_open() {
    let gw = TestGateway::start(&["--idle-timeout=2s", "--ping-interval=1900ms"]).await;
    let mut c = gw.connect(user()).await;
    // Alive for twice the timeout: a frame every second (and pongs to the server's pings).
    for id in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.send_json(json!({"type": "ping", "id": id})).await;
        let pong = c.next_of("pong", 5).await.expect("still open: pong");
        assert_eq!(pong["id"], id);
    }
    // Silent and not reading (so no pong answers the server's ping) for longer than the timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.close_code(5).await, Some(1000), "closed as idle (1000)");
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_only_reads_is_pinged_and_its_pongs_keep_it_open() {
    let gw = TestGateway::start(&["--idle-timeout=2s", "--ping-interval=500ms"]).await;
    let mut c = gw.connect(user()).await;
    // Nothing sent for three idle timeouts: only reading, which answers each ping with a pong
    // (the client library does).
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut pings = 0;
    while let Ok(msg) = tokio::time::timeout_at(until, futures::StreamExt::next(&mut c.ws)).await {
        match msg {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_))) => pings += 1,
            Some(Ok(_)) => {}
            other => panic!("the socket ended: {other:?}"),
        }
    }
    // Every 500 ms for 6 s: about 12 (fewer allowed on a busy machine, never none).
    assert!(pings >= 4, "{pings} pings in 6 s");
    gw.stop().await;
}

#[tokio::test]
async fn http_errors_have_the_right_status_and_shape() {
    let gw = TestGateway::start(&["--max-body-bytes=256"]).await;
    let me = user();
    let stranger = user();
    let cases = [
        (
            "PUT",
            format!("/v1/me/friends/{stranger}"),
            None,
            404,
            "not_found",
        ),
        (
            "PUT",
            format!("/v1/me/friends/{me}"),
            None,
            400,
            "self_friendship",
        ),
        (
            "PUT",
            "/v1/me/friends/abc".to_owned(),
            None,
            400,
            "bad_user_id",
        ),
        (
            "PATCH",
            "/v1/me".to_owned(),
            Some("{bad".to_owned()),
            400,
            "bad_body",
        ),
        (
            "PATCH",
            "/v1/me".to_owned(),
            Some(r#"{"name":""}"#.to_owned()),
            400,
            "bad_name",
        ),
        (
            "PATCH",
            "/v1/me".to_owned(),
            Some(format!(r#"{{"name":"{}"}}"#, "x".repeat(300))),
            413,
            "too_large",
        ),
        ("GET", "/v1/nowhere".to_owned(), None, 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, v) = gw.call(me, method, &path, body.as_deref()).await;
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {v}"
        );
    }
    let (status, v) = gw
        .call(
            me,
            "PATCH",
            "/v1/me",
            Some(r#"{"name":"Bo","avatar_url":"https://example.invalid/b.png"}"#),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["name"], "Bo");
    let (_, v) = gw.call(me, "GET", "/v1/me", None).await;
    assert_eq!(
        v,
        json!({"user_id": me.to_string(), "name": "Bo", "avatar_url": "https://example.invalid/b.png", "sharing": true})
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_demo_page_is_served_without_a_token() {
    let gw = TestGateway::start(&[]).await;
    let (status, body) = http(gw.addr, "GET", "/demo", None, None).await;
    assert_eq!(status, 200);
    let html = body.as_str().expect("html text");
    assert!(html.contains("/v1/ws"), "the page opens the socket");
    assert!(
        !html.contains("innerHTML"),
        "server text must never be inserted as HTML"
    );
    gw.stop().await;
}

#[tokio::test]
async fn friend_list_removal_and_sharing_over_http() {
    let gw = TestGateway::start(&[]).await;
    let [a, b, c, d] = [user(), user(), user(), user()];
    for u in [a, b, c, d] {
        assert_eq!(gw.call(u, "GET", "/v1/me", None).await.0, 200);
    }
    gw.call(b, "PATCH", "/v1/me", Some(r#"{"name":"Bea"}"#))
        .await;
    gw.call(a, "PUT", &format!("/v1/me/friends/{b}"), None)
        .await;
    gw.call(b, "PUT", &format!("/v1/me/friends/{a}"), None)
        .await;
    gw.call(c, "PUT", &format!("/v1/me/friends/{a}"), None)
        .await;
    gw.call(a, "PUT", &format!("/v1/me/friends/{d}"), None)
        .await;

    let (status, list) = gw.call(a, "GET", "/v1/me/friends", None).await;
    assert_eq!(status, 200);
    let mut got: Vec<(String, String)> = list["friends"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| {
            (
                e["user_id"].as_str().expect("id").to_owned(),
                e["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (b.to_string(), "accepted".to_owned()),
        (c.to_string(), "incoming".to_owned()),
        (d.to_string(), "outgoing".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(list["next"].is_null());
    let bea = list["friends"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["user_id"] == b.to_string().as_str())
        .expect("b");
    assert_eq!(bea["name"], "Bea");

    for (who, other, status) in [
        (a, c, "declined"),
        (a, d, "withdrawn"),
        (b, a, "unfriended"),
    ] {
        let (code, v) = gw
            .call(who, "DELETE", &format!("/v1/me/friends/{other}"), None)
            .await;
        assert_eq!((code, v["status"].as_str()), (200, Some(status)), "{v}");
    }
    assert_eq!(
        gw.call(a, "GET", "/v1/me/friends", None).await.1["friends"],
        json!([])
    );
    let (code, v) = gw
        .call(a, "DELETE", &format!("/v1/me/friends/{b}"), None)
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let (code, v) = gw
        .call(a, "PUT", "/v1/me/sharing", Some(r#"{"enabled":false}"#))
        .await;
    assert_eq!((code, v["sharing"].as_bool()), (200, Some(false)), "{v}");
    assert_eq!(gw.call(a, "GET", "/v1/me", None).await.1["sharing"], false);
    let (code, v) = gw
        .call(a, "PUT", "/v1/me/sharing", Some(r#"{"enabled":"no"}"#))
        .await;
    assert_eq!((code, v["error"]["code"].as_str()), (400, Some("bad_body")));
    gw.stop().await;
}

#[tokio::test]
async fn the_friend_list_is_paged_fifty_at_a_time() {
    // 53 requests from one user: over the default friend-call budget of 30 at once.
    let gw = TestGateway::start(&["--friend-request-rate-burst=100"]).await;
    let me = user();
    let others: Vec<i64> = (0..53).map(|_| user()).collect();
    for o in &others {
        gw.call(*o, "GET", "/v1/me", None).await;
        assert_eq!(
            gw.call(me, "PUT", &format!("/v1/me/friends/{o}"), None)
                .await
                .0,
            200
        );
    }
    let (_, first) = gw.call(me, "GET", "/v1/me/friends", None).await;
    assert_eq!(first["friends"].as_array().expect("list").len(), 50);
    let next = first["next"].as_str().expect("next").to_owned();
    let (_, second) = gw
        .call(me, "GET", &format!("/v1/me/friends?cursor={next}"), None)
        .await;
    assert_eq!(second["friends"].as_array().expect("list").len(), 3);
    assert!(second["next"].is_null());
    let mut all: Vec<String> = first["friends"]
        .as_array()
        .into_iter()
        .chain(second["friends"].as_array())
        .flatten()
        .map(|e| e["user_id"].as_str().expect("id").to_owned())
        .collect();
    all.sort();
    let mut want: Vec<String> = others.iter().map(ToString::to_string).collect();
    want.sort();
    assert_eq!(all, want, "every entry once, none lost between pages");
    let (code, v) = gw.call(me, "GET", "/v1/me/friends?cursor=zz", None).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (400, Some("bad_cursor"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_send_timeout_and_holds_up_no_one() {
    let gw = TestGateway::start(&["--send-timeout=2s"]).await;
    let (slow, fast, ana) = (user(), user(), user());
    assert_eq!(
        gw.call(ana, "PATCH", "/v1/me", Some(r#"{"name":"Ana"}"#))
            .await
            .1["name"],
        "Ana"
    );
    // Never read from: once the kernel's buffers are full, its frames queue at the gateway.
    let _stalled = gw.connect(slow).await;
    let mut fast_client = gw.connect(fast).await;
    // Registered once the connection is on the log (just after the upgrade).
    wait_until("both sockets registered", || gw.gw.registry.len() == 2).await;
    let at = |recipient, distance_m| Delivery {
        recipient_id: recipient,
        payload: DeliveryPayload::FriendLocation(FriendLocation {
            friend_id: ana,
            lat: 37.78,
            lon: -122.41,
            distance_m,
            updated_at: 1_764_057_600_000,
        }),
    };
    // 300,000 frames (about 40 MB) for the stalled socket, far more than loopback buffers
    // hold, then one for the client that reads.
    let flood = nearby_schemas::DeliveryBatch {
        deliveries: (0..5_000).map(|i| at(slow, f64::from(i))).collect(),
    };
    let mut records = vec![nearby_schemas::to_vec(&flood).expect("encode"); 60];
    records.push(
        nearby_schemas::to_vec(&nearby_schemas::DeliveryBatch {
            deliveries: vec![at(fast, 7.0)],
        })
        .expect("encode"),
    );
    let topic = format!("{}.deliveries.gw-a", gw.prefix);
    nearby_testkit::records::produce_values(&topic, &records).await;
    let got = fast_client
        .next_of("friend_location", 30)
        .await
        .expect("the reading client is not held up by the stalled one");
    assert_eq!(got["distance_m"], json!(7.0));
    // The stalled socket cannot take a write for the send timeout: it is closed.
    wait_until("the stalled socket closed", || gw.gw.registry.len() == 1).await;
    // The one that reads is still served.
    fast_client
        .send_json(json!({"type": "ping", "id": 1}))
        .await;
    assert_eq!(fast_client.next_of("pong", 5).await.expect("pong")["id"], 1);
    gw.stop().await;
}

/// Waits (20 s at most) until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
