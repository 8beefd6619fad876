//! `nearby-admin lag` against the real stack: per partition, the group's committed offset, the
//! end and the lag, and the total; a group that never committed lags by the whole log.

use std::time::Duration;

use nearby_testkit::events::gateway_position;
use nearby_testkit::process::{admin, stdout};
use nearby_testkit::records::produce_events;
use nearby_testkit::topics::{create_topic, delete_topic};
use nearby_testkit::{brokers, now_ms, topic_prefix};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

#[tokio::test]
async fn lag_prints_each_partitions_committed_offset_end_and_lag() {
    let prefix = topic_prefix();
    let topic = format!("{prefix}.location-updates");
    let (group, idle) = (format!("{prefix}.group"), format!("{prefix}.idle"));
    create_topic(&topic, 2).await;
    let t = now_ms();
    let events: Vec<_> = (0..10)
        .map(|i| (gateway_position(1 + i % 4, t + i, 1.0, 2.0), t + i))
        .collect();
    let at = produce_events(&topic, &events).await;
    let end = |p: i32| at.iter().filter(|(q, _)| *q == p).count() as i64;
    assert!(end(0) > 1 && end(1) > 1, "both partitions used: {at:?}");

    // The group has read all of partition 0 and one record of partition 1.
    let consumer: BaseConsumer = nearby_common::kafka::client_config(&brokers())
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(end(0)))
        .expect("offset");
    tpl.add_partition_offset(&topic, 1, Offset::Offset(1))
        .expect("offset");
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(consumer);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let text = stdout(&admin(
        &prefix,
        &["lag", "--group", &group, "--group", &idle],
    ));
    let lines: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    let row = |after: usize, p: i32| -> Vec<String> {
        lines[after..]
            .iter()
            .find(|w| w.first().is_some_and(|x| x == &p.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    let header = |g: &str| {
        lines
            .iter()
            .position(|w| w.get(1).is_some_and(|x| x == g))
            .unwrap_or_else(|| panic!("no section for {g}:\n{text}"))
    };
    let (g, i) = (header(&group), header(&idle));
    let s = |v: i64| v.to_string();
    assert_eq!(lines[g].last(), Some(&s(end(1) - 1)), "{text}");
    assert_eq!(row(g, 0), [s(0), s(end(0)), s(end(0)), s(0)], "{text}");
    assert_eq!(row(g, 1), [s(1), s(1), s(end(1)), s(end(1) - 1)], "{text}");
    // Never committed: "-", and the whole log is behind.
    assert_eq!(lines[i].last(), Some(&s(10)), "{text}");
    assert_eq!(
        row(i, 0),
        [s(0), "-".into(), s(end(0)), s(end(0))],
        "{text}"
    );
    delete_topic(&topic).await;
}
