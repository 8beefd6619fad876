//! `/metrics` on the gateway's admin port: Prometheus text that Python's `prometheus_client`
//! parser reads, whose counters move as a client reports, is refused and gets deliveries.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use nearby_schemas::{Delivery, DeliveryBatch, DeliveryPayload, FriendLeft, LeftReason};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use support::{TestGateway, http_raw, user};

/// The samples of the gateway's `/metrics`, parsed by the reference parser
/// (`prometheus_client.parser`): "name{label=value,...}" → value, labels sorted.
async fn scrape(gw: &TestGateway) -> BTreeMap<String, f64> {
    let r = http_raw(gw.admin, "GET", "/metrics", None, None).await;
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

fn brokers() -> String {
    std::env::var("NEARBY_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_and_move_with_reports_refusals_and_deliveries() {
    let gw = TestGateway::start(&[]).await;
    let before = scrape(&gw).await;
    assert_eq!(get(&before, "nearby_gateway_connections{}"), 0.0);

    let me = user();
    let mut c = gw.connect(me).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
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
    let producer: FutureProducer = nearby_common::kafka::producer_config(&brokers())
        .create()
        .expect("producer");
    let topic = format!("{}.deliveries.gw-a", gw.prefix);
    for bytes in [
        nearby_schemas::to_vec(&batch).expect("encode"),
        b"not a record".to_vec(),
    ] {
        producer
            .send(
                FutureRecord::<(), _>::to(&topic).payload(&bytes),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produced");
    }
    assert!(c.next_of("friend_left", 10).await.is_some());

    // The counters move (the delivery consumer may still be on the bad record: wait a little).
    let mut after = scrape(&gw).await;
    for _ in 0..50 {
        if get(
            &after,
            "nearby_gateway_delivery_errors_total{kind=undecodable}",
        ) >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = scrape(&gw).await;
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
