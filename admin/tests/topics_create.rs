//! `nearby-admin topics create` against the real broker: creates what is asked, repeats safely,
//! and refuses a bad gateway id with a clear message.

use std::process::Command;

use nearby_common::kafka;
use nearby_testkit::process::{admin, stdout};
use nearby_testkit::{brokers, topic_prefix};

#[tokio::test]
async fn creates_topics_once_and_reports_them_on_repeat() {
    let prefix = topic_prefix();
    let args = [
        "topics",
        "create",
        "--location-partitions",
        "3",
        "--location-retention",
        "2h",
        "--friendship-partitions",
        "2",
        "--gateway",
        "gw-a",
        "--delivery-retention",
        "10m",
    ];
    let first = stdout(&admin(&prefix, &args));
    let location = format!("{prefix}.location-updates");
    let friendship = format!("{prefix}.friendship-events");
    let deliveries = format!("{prefix}.deliveries.gw-a");
    for line in [
        format!("created {location} partitions=3 replication=1 retention.ms=7200000"),
        format!("created {friendship} partitions=2 replication=1 retention.ms=604800000"),
        format!("created {deliveries} partitions=1 replication=1 retention.ms=600000"),
    ] {
        assert!(
            first.lines().any(|l| l == line),
            "missing {line:?} in:\n{first}"
        );
    }
    // Returned only once every partition has a leader: usable at once, asked without waiting.
    let reader: rdkafka::consumer::BaseConsumer =
        kafka::client_config(&brokers()).create().expect("client");
    for (topic, partitions) in [(&location, 3), (&friendship, 2), (&deliveries, 1)] {
        assert_eq!(
            nearby_common::startup::led_partitions(&reader, topic).expect("every partition led"),
            partitions,
            "{topic}"
        );
    }

    // What the broker holds, asked independently of the tool.
    let client = kafka::admin_client(&brokers()).expect("admin client");
    assert_eq!(
        kafka::describe_topic(&client, &location)
            .await
            .expect("describe"),
        (3, Some(7_200_000))
    );
    assert_eq!(
        kafka::describe_topic(&client, &deliveries)
            .await
            .expect("describe"),
        (1, Some(600_000))
    );

    // Again: nothing changes, each topic is reported as existing.
    let second = stdout(&admin(&prefix, &args));
    assert!(
        second
            .lines()
            .any(|l| l == format!("exists {location} partitions=3 retention.ms=7200000")),
        "{second}"
    );
    assert_eq!(
        second.lines().filter(|l| l.starts_with("exists ")).count(),
        3
    );

    // Asking for more partitions of an existing topic reports the difference and changes nothing.
    let third = stdout(&admin(
        &prefix,
        &[
            "topics",
            "create",
            "--location-partitions",
            "5",
            "--location-retention",
            "2h",
        ],
    ));
    assert!(
        third.contains("asked partitions=5: left unchanged"),
        "{third}"
    );
    assert_eq!(
        kafka::describe_topic(&client, &location)
            .await
            .expect("describe")
            .0,
        3
    );

    kafka::delete_topics(&client, &[&location, &friendship, &deliveries])
        .await
        .expect("cleanup");
}

#[test]
fn a_bad_gateway_id_is_refused_with_the_rule() {
    let out = admin("test.badname", &["topics", "create", "--gateway", "gw one"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid topic name"), "{err}");
    assert!(err.contains("only ASCII letters"), "{err}");
}

#[test]
fn an_unreachable_broker_fails_with_the_address() {
    let out = Command::new(env!("CARGO_BIN_EXE_nearby-admin"))
        .env("NEARBY_KAFKA_BROKERS", "127.0.0.1:1")
        .env("NEARBY_TOPIC_PREFIX", "test.unreachable")
        .env("NEARBY_STARTUP_TIMEOUT", "2s")
        .args(["topics", "create"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Waited for (a broker may still be starting), then named with the setting that bounds it.
    assert!(
        err.contains("waiting for a Kafka broker at 127.0.0.1:1"),
        "{err}"
    );
    assert!(err.contains("NEARBY_STARTUP_TIMEOUT"), "{err}");
}
