//! End-to-end checks of ingest against the real local Kafka (`stack/stack.sh up`): what a
//! consumer of the location topic sees after reports, connects and disconnects, and that
//! refused reports leave no trace. Every test uses its own topic and deletes it.

use std::time::Duration;

use nearby_common::clock::now_ms;
use nearby_ingest::{Ingest, IngestConfig, IngestError, Rejection, Report};
use nearby_schemas::{Connected, Disconnected, LocationBody, LocationEvent, PositionReport};
use nearby_testkit::records::{PARTITIONS, TestTopic};
use nearby_testkit::unique;
use rdkafka::Offset;

fn ingest(topic: &TestTopic, config: &IngestConfig) -> Ingest {
    Ingest::new(&topic.brokers, topic.name.clone(), config).expect("ingest")
}

fn report_at(ts: i64, i: u32) -> Report {
    Report {
        lat: 37.77 + f64::from(i) * 0.001,
        lon: -122.42,
        ts,
        accuracy_m: None,
    }
}

#[tokio::test]
async fn a_valid_report_arrives_under_the_user_key_and_decodes() {
    let topic = TestTopic::create().await;
    let ingest = ingest(&topic, &IngestConfig::default());
    let user = nearby_testkit::user();
    let gateway = unique("gw-");
    let report = Report {
        lat: 37.774_929,
        lon: -122.419_416,
        ts: now_ms() - 1_500,
        accuracy_m: Some(12.5),
    };

    let before = now_ms();
    let accepted = ingest
        .report(user, Some(&gateway), report)
        .await
        .expect("accepted");
    let after = now_ms();
    assert!((before..=after).contains(&accepted.received_at));

    let records = topic.read(accepted.partition, Offset::Offset(accepted.offset), 1);
    let record = &records[0];
    assert_eq!(record.key, user.to_string());
    assert_eq!(record.offset, accepted.offset);
    assert_eq!(
        record.event,
        LocationEvent {
            user_id: user,
            gateway_id: Some(gateway),
            ts: report.ts,
            received_at: accepted.received_at,
            body: LocationBody::Position(PositionReport {
                lat: report.lat,
                lon: report.lon,
                accuracy_m: Some(12.5),
            }),
        }
    );
    // Without a socket (a batch upload) the gateway is null.
    let no_socket = ingest
        .report(user, None, report_at(now_ms(), 1))
        .await
        .expect("accepted");
    assert_eq!(
        no_socket.partition, accepted.partition,
        "one user, one partition"
    );
    let records = topic.read(no_socket.partition, Offset::Offset(no_socket.offset), 1);
    assert_eq!(records[0].event.gateway_id, None);

    let m = ingest.metrics();
    assert_eq!((m.accepted, m.rejected.total()), (2, 0));
    assert_eq!(m.rate_limit_tracked_users, 1);
    topic.delete().await;
}

#[tokio::test]
async fn connect_and_disconnect_carry_gateway_and_session_in_order() {
    let topic = TestTopic::create().await;
    let ingest = ingest(&topic, &IngestConfig::default());
    let user = nearby_testkit::user();
    let gateway = unique("gw-");
    let session = unique("session-");

    let before = now_ms();
    let connected = ingest
        .connected(user, &gateway, &session)
        .await
        .expect("connected");
    let position = ingest
        .report(user, Some(&gateway), report_at(now_ms(), 0))
        .await
        .expect("report");
    let disconnected = ingest
        .disconnected(user, &gateway, &session)
        .await
        .expect("disconnected");
    let after = now_ms();
    assert_eq!(connected.partition, position.partition);
    assert_eq!(connected.partition, disconnected.partition);

    let records = topic.read(connected.partition, Offset::Offset(connected.offset), 3);
    let bodies: Vec<&LocationBody> = records.iter().map(|r| &r.event.body).collect();
    assert_eq!(
        bodies[0],
        &LocationBody::Connected(Connected {
            session_id: session.clone()
        })
    );
    assert!(matches!(bodies[1], LocationBody::Position(_)));
    assert_eq!(
        bodies[2],
        &LocationBody::Disconnected(Disconnected {
            session_id: session.clone()
        })
    );
    for r in &records {
        assert_eq!(r.key, user.to_string());
        assert_eq!(r.event.user_id, user);
        assert_eq!(r.event.gateway_id.as_deref(), Some(gateway.as_str()));
    }
    for session_event in [&records[0], &records[2]] {
        // Server-side events carry the server's time as both ts and received_at.
        assert_eq!(session_event.event.ts, session_event.event.received_at);
        assert!((before..=after).contains(&session_event.event.ts));
    }
    let m = ingest.metrics();
    assert_eq!((m.connected, m.accepted, m.disconnected), (1, 1, 1));
    topic.delete().await;
}

#[tokio::test]
async fn one_users_reports_come_back_in_the_order_sent() {
    let topic = TestTopic::create().await;
    let ingest = ingest(&topic, &IngestConfig::default());
    let user = nearby_testkit::user();
    let gateway = unique("gw-");
    let start = now_ms() - 10_000;

    // Five awaited one after another, as a socket session sends them...
    let mut accepted = Vec::new();
    for i in 0..5 {
        let ts = start + i64::from(i) * 100;
        accepted.push(
            ingest
                .report(user, Some(&gateway), report_at(ts, i))
                .await
                .expect("accepted"),
        );
    }
    // ...and five in flight at once: enqueued in poll order, which join_all keeps.
    let calls = (5..10).map(|i| {
        let ts = start + i64::from(i) * 100;
        let (ingest, gateway) = (ingest.clone(), gateway.clone());
        async move { ingest.report(user, Some(&gateway), report_at(ts, i)).await }
    });
    for result in futures::future::join_all(calls).await {
        accepted.push(result.expect("accepted"));
    }

    let partition = accepted[0].partition;
    assert!(accepted.iter().all(|a| a.partition == partition));
    let offsets: Vec<i64> = accepted.iter().map(|a| a.offset).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");

    let records = topic.read(partition, Offset::Offset(accepted[0].offset), 10);
    let sent: Vec<i64> = (0..10).map(|i| start + i * 100).collect();
    let got: Vec<i64> = records.iter().map(|r| r.event.ts).collect();
    assert_eq!(got, sent);
    topic.delete().await;
}

#[tokio::test]
async fn rejected_reports_produce_nothing() {
    let topic = TestTopic::create().await;
    let ingest = ingest(&topic, &IngestConfig::default());
    let user = nearby_testkit::user();
    let now = now_ms();
    let valid = report_at(now, 0);
    let invalid = [
        (
            Report {
                lat: 90.0001,
                ..valid
            },
            "invalid_coordinates",
        ),
        (
            Report {
                lon: f64::NAN,
                ..valid
            },
            "invalid_coordinates",
        ),
        (
            Report {
                ts: now + 10 * 60_000,
                ..valid
            },
            "timestamp_in_future",
        ),
        (
            Report {
                ts: now - 48 * 3_600_000,
                ..valid
            },
            "timestamp_too_old",
        ),
        (
            Report {
                accuracy_m: Some(-3.0),
                ..valid
            },
            "invalid_accuracy",
        ),
        (
            Report {
                accuracy_m: Some(f64::INFINITY),
                ..valid
            },
            "invalid_accuracy",
        ),
    ];
    for (report, code) in invalid {
        match ingest.report(user, Some("gw-1"), report).await {
            Err(IngestError::Rejected(r)) => assert_eq!(r.code(), code, "{report:?}"),
            other => panic!("{report:?} should be rejected with {code}, got {other:?}"),
        }
    }
    // A caller bug (a negative id) is refused too, before anything is produced.
    assert!(matches!(
        ingest.report(-1, None, valid).await,
        Err(IngestError::InvalidUserId(-1))
    ));

    // The sentinel: the first record on the user's partition, and nothing before it.
    let sentinel = Report {
        lat: -33.8688,
        lon: 151.2093,
        ..valid
    };
    let accepted = ingest
        .report(user, Some("gw-1"), sentinel)
        .await
        .expect("sentinel accepted");
    assert_eq!(
        accepted.offset, 0,
        "something was produced before the sentinel"
    );
    let first = &topic.read(accepted.partition, Offset::Beginning, 1)[0];
    assert_eq!(first.event.user_id, user);
    assert!(matches!(
        first.event.body,
        LocationBody::Position(PositionReport { lat, lon, .. }) if lat == sentinel.lat && lon == sentinel.lon
    ));
    for p in 0..PARTITIONS {
        let (_, high) = topic.watermarks(p);
        let expect = i64::from(p == accepted.partition);
        assert_eq!(high, expect, "partition {p} holds {high} records");
    }

    let m = ingest.metrics();
    assert_eq!(m.accepted, 1);
    assert_eq!(m.rejected.get("invalid_coordinates"), 2);
    assert_eq!(m.rejected.get("timestamp_in_future"), 1);
    assert_eq!(m.rejected.get("timestamp_too_old"), 1);
    assert_eq!(m.rejected.get("invalid_accuracy"), 2);
    topic.delete().await;
}

#[tokio::test]
async fn a_flood_past_the_burst_is_rate_limited_and_only_accepted_reports_are_written() {
    let topic = TestTopic::create().await;
    // Burst 5, then one report per 10 s: nothing refills during the test.
    let config = IngestConfig {
        ingest_rate_burst: 5,
        ingest_rate_per_sec: 0.1,
        ..IngestConfig::default()
    };
    let ingest = ingest(&topic, &config);
    let user = nearby_testkit::user();
    let other = nearby_testkit::user();
    let start = now_ms();

    let mut accepted = Vec::new();
    let mut limited = Vec::new();
    for i in 0..12 {
        match ingest
            .report(user, Some("gw-1"), report_at(start + i64::from(i), i))
            .await
        {
            Ok(a) => accepted.push((i, a)),
            Err(IngestError::Rejected(Rejection::RateLimited { retry_after_ms })) => {
                limited.push((i, retry_after_ms));
            }
            Err(e) => panic!("report {i}: {e}"),
        }
    }
    let accepted_seq: Vec<u32> = accepted.iter().map(|(i, _)| *i).collect();
    assert_eq!(accepted_seq, vec![0, 1, 2, 3, 4], "the burst, then nothing");
    assert_eq!(limited.len(), 7);
    for (i, retry_after_ms) in &limited {
        assert!(
            (1..=10_000).contains(retry_after_ms),
            "report {i}: retry after {retry_after_ms} ms"
        );
    }
    // Another user has a bucket of their own.
    ingest
        .report(other, Some("gw-1"), report_at(start, 0))
        .await
        .expect("another user is not limited");

    // The flood came first on the user's partition, so its first 5 records are the burst.
    let partition = accepted[0].1.partition;
    let records = topic.read(partition, Offset::Beginning, 5);
    assert!(records.iter().all(|r| r.event.user_id == user));
    let got: Vec<i64> = records.iter().map(|r| r.event.ts).collect();
    assert_eq!(got, (0..5).map(|i| start + i).collect::<Vec<_>>());
    let total: i64 = (0..PARTITIONS).map(|p| topic.watermarks(p).1).sum();
    assert_eq!(
        total, 6,
        "5 of the flood and 1 of the other user, nothing else"
    );

    let m = ingest.metrics();
    assert_eq!(m.accepted, 6);
    assert_eq!(m.rejected.get("rate_limited"), 7);
    assert_eq!(m.rate_limit_tracked_users, 2);
    topic.delete().await;
}

#[tokio::test]
async fn clones_share_one_producer_limiter_and_counters() {
    let topic = TestTopic::create().await;
    let config = IngestConfig {
        ingest_rate_burst: 2,
        ingest_rate_per_sec: 0.1,
        ..IngestConfig::default()
    };
    let a = ingest(&topic, &config);
    let b = a.clone();
    let user = nearby_testkit::user();
    a.report(user, None, report_at(now_ms(), 0))
        .await
        .expect("first");
    b.report(user, None, report_at(now_ms(), 1))
        .await
        .expect("second");
    let third = a.report(user, None, report_at(now_ms(), 2)).await;
    assert!(matches!(
        third,
        Err(IngestError::Rejected(Rejection::RateLimited { .. }))
    ));
    assert_eq!(b.metrics().accepted, 2);
    assert_eq!(b.metrics().rejected.get("rate_limited"), 1);
    a.flush(Duration::from_secs(5)).await.expect("flush");
    topic.delete().await;
}
