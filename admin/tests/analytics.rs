//! The analytics example (`examples/analytics/read_locations.py`, Python with confluent-kafka
//! and fastavro) against the real broker: it decodes exactly the events produced — user ids,
//! times, coordinates, body kinds — from their single-object encoding, skips a record that is
//! not Avro, and commits its own group's offsets. Fails (never skips) when the Python packages
//! are missing: `scripts/test.sh` installs them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use nearby_schemas::{Connected, Disconnected, LocationBody, LocationEvent, PositionReport};
use nearby_testkit::records::{produce, produce_events};
use nearby_testkit::topics::{create_topic, delete_topic};
use nearby_testkit::{brokers, now_ms, topic_prefix};
use serde_json::Value;

fn example(prefix: &str, group: &str, args: &[&str]) -> Output {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/analytics/read_locations.py");
    Command::new("python3")
        .arg(script)
        .args([
            "--brokers",
            &brokers(),
            "--prefix",
            prefix,
            "--group",
            group,
        ])
        .args(args)
        .output()
        .expect("python3 runs")
}

/// What the example prints for a body.
fn body_json(body: &LocationBody) -> Value {
    match body {
        LocationBody::Position(p) => serde_json::json!({
            "kind": "PositionReport", "lat": p.lat, "lon": p.lon, "accuracy_m": p.accuracy_m,
        }),
        LocationBody::Connected(c) => {
            serde_json::json!({"kind": "Connected", "session_id": c.session_id})
        }
        LocationBody::Disconnected(d) => {
            serde_json::json!({"kind": "Disconnected", "session_id": d.session_id})
        }
    }
}

#[tokio::test]
async fn the_python_example_decodes_exactly_the_events_produced() {
    let prefix = topic_prefix();
    let topic = format!("{prefix}.location-updates");
    let group = format!("{prefix}.analytics");
    create_topic(&topic, 3).await;

    let now = now_ms();
    let event = |user, gateway: Option<&str>, ts, body| LocationEvent {
        user_id: user,
        gateway_id: gateway.map(str::to_owned),
        ts,
        received_at: ts + 35,
        body,
    };
    let pos = |lat, lon, accuracy_m| {
        LocationBody::Position(PositionReport {
            lat,
            lon,
            accuracy_m,
        })
    };
    let events = [
        event(
            101,
            Some("gw-a"),
            now - 9_000,
            LocationBody::Connected(Connected {
                session_id: "s-101".into(),
            }),
        ),
        event(
            101,
            Some("gw-a"),
            now - 8_000,
            pos(37.774_929_5, -122.419_415_5, Some(8.0)),
        ),
        event(
            102,
            Some("gw-b"),
            now - 7_000,
            pos(-33.868_82, 151.209_29, None),
        ),
        event(103, None, now - 6_000, pos(51.507_4, -0.127_8, Some(30.5))),
        event(
            101,
            Some("gw-a"),
            now - 5_000,
            pos(37.775, -122.418, Some(6.0)),
        ),
        event(104, Some("gw-a"), now - 4_000, pos(-90.0, 180.0, None)),
        event(
            102,
            Some("gw-b"),
            now - 3_000,
            LocationBody::Disconnected(Disconnected {
                session_id: "s-102".into(),
            }),
        ),
        event(
            9_007_199_254_740_993,
            Some("gw-c"),
            now - 2_000,
            pos(0.0, 0.0, None),
        ),
    ];
    // Not Avro at all, before user 101's events on their partition (so it is read before them):
    // reported on stderr and skipped.
    produce(
        &topic,
        &[("101".into(), b"{\"json\": true}".to_vec(), now - 10_000)],
    )
    .await;
    let with_ts: Vec<(LocationEvent, i64)> =
        events.iter().map(|e| (e.clone(), e.received_at)).collect();
    let landed = produce_events(&topic, &with_ts).await;
    let out = example(
        &prefix,
        &group,
        &["-n", &events.len().to_string(), "--timeout", "60"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the example failed (are confluent-kafka and fastavro installed? scripts/test.sh \
         installs them): {stderr}"
    );
    assert!(
        stderr.contains("skipped: not Avro single-object encoding"),
        "{stderr}"
    );

    let expected: BTreeMap<(i64, i64), &LocationEvent> = landed
        .iter()
        .map(|(p, o)| (i64::from(*p), *o))
        .zip(&events)
        .collect();
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let mut seen = BTreeMap::new();
    for line in stdout.lines() {
        let got: Value = serde_json::from_str(line).expect("a JSON line");
        let at = (
            got["partition"].as_i64().expect("partition"),
            got["offset"].as_i64().expect("offset"),
        );
        let want = expected
            .get(&at)
            .unwrap_or_else(|| panic!("no event was produced at {at:?}: {line}"));
        assert_eq!(got["key"], want.user_id.to_string(), "{line}");
        assert_eq!(got["timestamp_ms"], want.received_at, "{line}");
        assert_eq!(got["schema"], "location_event.v1.avsc", "{line}");
        let e = &got["event"];
        assert_eq!(e["user_id"], want.user_id, "{line}");
        assert_eq!(
            e["gateway_id"].as_str(),
            want.gateway_id.as_deref(),
            "{line}"
        );
        assert_eq!(e["ts"], want.ts, "{line}");
        assert_eq!(e["received_at"], want.received_at, "{line}");
        assert_eq!(e["body"], body_json(&want.body), "{line}");
        assert!(seen.insert(at, ()).is_none(), "printed twice: {line}");
    }
    assert_eq!(seen.len(), events.len(), "every event, once:\n{stdout}");

    // The group committed past what it printed: resuming finds nothing new.
    let again = example(
        &prefix,
        &group,
        &["-n", "1", "--start", "committed", "--timeout", "5"],
    );
    assert_eq!(
        again.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(again.stdout.is_empty());

    // From a time, with another group: the events whose record timestamp is at least that.
    let from = events[4].received_at;
    let later: Vec<&LocationEvent> = events.iter().filter(|e| e.received_at >= from).collect();
    let out = example(
        &prefix,
        &format!("{group}.from-time"),
        &[
            "-n",
            &later.len().to_string(),
            "--start",
            &from.to_string(),
            "--timeout",
            "60",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<i64> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            v["event"]["ts"].as_i64().expect("ts")
        })
        .collect();
    got.sort_unstable();
    let want: Vec<i64> = later.iter().map(|e| e.ts).collect();
    assert_eq!(got, want);

    delete_topic(&topic).await;
}
