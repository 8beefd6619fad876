//! `/metrics` on the admin ports of the gateway and fanout: Prometheus text that Python's
//! `prometheus_client` parser reads, whose counters move as clients report, are refused and
//! get deliveries.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use nearby_schemas::{Delivery, DeliveryBatch, DeliveryPayload, FriendLeft, LeftReason};
use nearby_system_tests::TestGateway;
use nearby_testkit::{http, http_raw, now_ms, pipeline, user};
use serde_json::json;

/// The samples of the `/metrics` on admin port `admin`, parsed by the reference parser
/// (`prometheus_client.parser`): "name{label=value,...}" → value, labels sorted.
async fn scrape(admin: std::net::SocketAddr) -> BTreeMap<String, f64> {
    let r = http_raw(admin, "GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (with prometheus_client: scripts/test.sh installs it)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(r.body.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("python3 ends");
    assert!(
        out.status.success(),
        "the reference parser refused /metrics:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.body
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_and_move_with_reports_refusals_and_deliveries() {
    let gw = TestGateway::start(&[]).await;
    let before = scrape(gw.admin).await;
    assert_eq!(get(&before, "nearby_gateway_connections{}"), 0.0);

    let me = user();
    let mut c = gw.connect(me).await;
    let now = now_ms();
    c.send_json(json!({"type": "location", "lat": 37.77, "lon": -122.42, "ts": now}))
        .await;
    assert!(c.next_of("nearby", 10).await.is_some(), "first page");
    c.send_json(json!({"type": "location", "lat": 95.0, "lon": 0.0, "ts": now + 1}))
        .await;
    assert_eq!(
        c.next_of("error", 10).await.expect("error")["code"],
        "invalid_coordinates"
    );

    // Two deliveries in one record, and a record no schema reads.
    let left = |friend| Delivery {
        recipient_id: me,
        payload: DeliveryPayload::FriendLeft(FriendLeft {
            friend_id: friend,
            reason: LeftReason::OutOfRange,
        }),
    };
    let batch = DeliveryBatch {
        deliveries: vec![left(user()), left(user())],
    };
    let topic = format!("{}.deliveries.gw-a", gw.prefix);
    nearby_testkit::records::produce_values(
        &topic,
        &[
            nearby_schemas::to_vec(&batch).expect("encode"),
            b"not a record".to_vec(),
        ],
    )
    .await;
    assert!(c.next_of("friend_left", 10).await.is_some());

    // The counters move (the delivery consumer may still be on the bad record: wait a little).
    let mut after = scrape(gw.admin).await;
    for _ in 0..50 {
        if get(
            &after,
            "nearby_gateway_delivery_errors_total{kind=undecodable}",
        ) >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = scrape(gw.admin).await;
    }
    let moved = |key: &str| get(&after, key) - get(&before, key);
    assert_eq!(get(&after, "nearby_gateway_connections{}"), 1.0);
    assert_eq!(
        moved("nearby_gateway_reports_total{result=accepted,via=socket}"),
        1.0
    );
    assert_eq!(
        moved("nearby_gateway_reports_total{result=invalid_coordinates,via=socket}"),
        1.0
    );
    // Ingest's own counters, served through the same registry.
    assert_eq!(
        moved("nearby_gateway_ingest_events_total{kind=position}"),
        1.0
    );
    assert_eq!(
        moved("nearby_gateway_ingest_rejected_total{code=invalid_coordinates}"),
        1.0
    );
    assert_eq!(
        moved("nearby_gateway_deliveries_total{kind=friend_left}"),
        2.0
    );
    assert_eq!(moved("nearby_gateway_delivery_records_total{}"), 2.0);
    assert_eq!(
        moved("nearby_gateway_delivery_errors_total{kind=undecodable}"),
        1.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn fanout_metrics_parse_and_count_events_and_deliveries() {
    let (gw, fanout) = nearby_system_tests::system(&[], &[]).await;
    let before = scrape(fanout.admin).await;
    assert_eq!(get(&before, "nearby_fanout_ready{}"), 1.0);
    let (_, _, mut ca, mut cb) = pipeline::connected_friends(&gw, &gw).await;
    let t0 = now_ms();
    pipeline::report(&mut ca, pipeline::HOME, t0).await;
    assert!(ca.next_of("nearby", 10).await.is_some());
    pipeline::report(&mut cb, pipeline::north(500.0), t0 + 1).await;
    assert!(
        ca.next_of("friend_location", 10).await.is_some(),
        "A sees B"
    );

    // Both positions applied; B's report told A of B and B of A (acks are counted as they
    // come back: wait a little for them).
    let mut after = scrape(fanout.admin).await;
    for _ in 0..50 {
        // The table's size is read at each sweep (every 200 ms here).
        if get(&after, "nearby_fanout_deliveries_produced_total{}")
            - get(&before, "nearby_fanout_deliveries_produced_total{}")
            >= 2.0
            && get(&after, "nearby_fanout_table_users{}") >= 2.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = scrape(fanout.admin).await;
    }
    let moved = |key: &str| get(&after, key) - get(&before, key);
    assert!(moved("nearby_fanout_events_total{}") >= 2.0, "{after:?}");
    assert_eq!(
        moved("nearby_fanout_deliveries_produced_total{}"),
        2.0,
        "{after:?}"
    );
    assert_eq!(
        moved("nearby_fanout_delivery_records_total{}"),
        1.0,
        "{after:?}"
    );
    assert_eq!(get(&after, "nearby_fanout_deliveries_failed_total{}"), 0.0);
    assert!(
        get(&after, "nearby_fanout_table_users{}") >= 2.0,
        "{after:?}"
    );
    // The one instance owns the topic's 3 partitions; its table reader's lag per partition
    // comes with the client's statistics (every 5 s) and is 0 once everything is read.
    assert_eq!(get(&after, "nearby_fanout_owned_partitions{}"), 3.0);
    for _ in 0..100 {
        if (0..3).all(|p| after.contains_key(&format!("nearby_fanout_lag{{partition={p}}}"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = scrape(fanout.admin).await;
    }
    for p in 0..3 {
        assert_eq!(
            after.get(&format!("nearby_fanout_lag{{partition={p}}}")),
            Some(&0.0),
            "{after:?}"
        );
    }

    // Draining shows: the gauge turns 1 and each socket's reconnect is counted.
    let before_drain = scrape(gw.admin).await;
    assert_eq!(get(&before_drain, "nearby_gateway_draining{}"), 0.0);
    // Both clients read their sockets: nothing waits in their queues.
    assert_eq!(get(&before_drain, "nearby_gateway_outbox_frames{}"), 0.0);
    let (status, _) = http(
        gw.admin,
        "POST",
        "/drain?window=1s",
        Some(nearby_testkit::ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 202);
    ca.next_of("reconnect", 10).await.expect("reconnect");
    cb.next_of("reconnect", 10).await.expect("reconnect");
    let drained = scrape(gw.admin).await;
    assert_eq!(get(&drained, "nearby_gateway_draining{}"), 1.0);
    assert_eq!(get(&drained, "nearby_gateway_reconnects_sent_total{}"), 2.0);
    fanout.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn with_a_metrics_token_metrics_need_it_and_health_and_readiness_stay_open() {
    let token = "metrics-test-token";
    let flag = format!("--metrics-token={token}");
    let (gw, fanout) = nearby_system_tests::system(&[&flag], &[&flag]).await;
    for admin in [gw.admin, fanout.admin] {
        let (status, body) = nearby_testkit::client::get(admin, "/metrics").await;
        assert_eq!(status, 401, "{body}");
        let (status, _) = http(admin, "GET", "/metrics", Some("a-wrong-token"), None).await;
        assert_eq!(status, 401);
        let page = http_raw(admin, "GET", "/metrics", Some(token), None).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("# TYPE"), "{}", page.body);
        assert_eq!(nearby_testkit::client::get(admin, "/healthz").await.0, 200);
        assert_eq!(nearby_testkit::client::get(admin, "/readyz").await.0, 200);
    }
    fanout.stop().await;
    gw.stop().await;
}
