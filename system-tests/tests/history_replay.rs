//! Replaying history from a time on the real stack: `nearby-admin replay history` moves the
//! sink's group back, the sink reads the records since then again and rewrites them — the same
//! rows, none new — and finishes at the end of the topic.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use nearby_common::history::HistoryStore;
use nearby_history_sink::SinkStatus;
use nearby_testkit::events::position;
use nearby_testkit::topics::location_topic;
use nearby_testkit::{SinkNames, cql_nodes, now_ms};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const USERS: i64 = 20;
const HALF: i64 = 100;

/// Runs a sink until `rows` rows are written, then stops it (which commits).
async fn sink_until(env: &SinkNames, rows: u64) -> Arc<SinkStatus> {
    let sink = nearby_system_tests::TestSink::spawn_with(env.args()).await;
    let status = sink.status.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while status.rows.load(Ordering::Relaxed) < rows {
        assert!(tokio::time::Instant::now() < deadline, "sink stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sink.stop().await;
    status
}

/// The group's committed offset and the end, per partition.
fn committed_and_ends(env: &SinkNames) -> Vec<(Offset, i64)> {
    let consumer: BaseConsumer = nearby_common::kafka::client_config(&env.brokers)
        .set("group.id", &env.group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(&env.topic(), p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| {
            let (_, high) = consumer
                .fetch_watermarks(&env.topic(), e.partition(), Duration::from_secs(10))
                .unwrap();
            (e.offset(), high)
        })
        .collect()
}

#[tokio::test]
async fn replaying_history_rewrites_the_same_rows_and_finishes() {
    let env = SinkNames::fresh();
    location_topic(&env.prefix, 3).await;

    // Two halves, produced a second apart: the replay starts between them.
    let producer: FutureProducer = nearby_common::kafka::producer_config(&env.brokers)
        .create()
        .unwrap();
    let base = i64::from(rand::random::<u32>()) * 100;
    let t0 = now_ms() - 3_600_000;
    let produce = async |from: i64| {
        for i in from..from + HALF {
            let user = base + i % USERS;
            let event = position(user, t0 + i, (10.0 + i as f64 / 1000.0, 20.0));
            let payload = nearby_schemas::to_vec(&event).unwrap();
            producer
                .send(
                    FutureRecord::to(&env.topic())
                        .key(&user.to_string())
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    };
    produce(0).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let between = now_ms();
    tokio::time::sleep(Duration::from_millis(100)).await;
    produce(HALF).await;

    let first = sink_until(&env, 2 * HALF as u64).await;
    assert_eq!(first.rows.load(Ordering::Relaxed), 2 * HALF as u64);
    assert!(
        committed_and_ends(&env)
            .iter()
            .all(|(c, end)| *c == Offset::Offset(*end))
    );

    // The plan alone changes nothing; with --yes the group moves back to `between`.
    let replay = async |yes: bool| {
        let mut args = vec![
            "nearby-admin".to_owned(),
            format!("--topic-prefix={}", env.prefix),
            format!("--kafka-brokers={}", env.brokers),
            "replay".to_owned(),
            "history".to_owned(),
            format!("--from={between}"),
            format!("--group={}", env.group),
        ];
        if yes {
            args.push("--yes".to_owned());
        }
        let mut out = Vec::new();
        nearby_admin::run(nearby_admin::Cli::parse_from(args), &mut out)
            .await
            .expect("replay runs");
        String::from_utf8(out).unwrap()
    };
    let plan = replay(false).await;
    assert!(
        committed_and_ends(&env)
            .iter()
            .all(|(c, end)| *c == Offset::Offset(*end)),
        "{plan}"
    );
    let done = replay(true).await;
    let rewind: i64 = committed_and_ends(&env)
        .iter()
        .map(|(c, end)| match c {
            Offset::Offset(o) => end - o,
            _ => panic!("no committed offset: {done}"),
        })
        .sum();
    assert_eq!(
        rewind, HALF,
        "exactly the second half is read again:\n{done}"
    );

    // Run again: the second half is rewritten, and the group is back at the end.
    let second = sink_until(&env, HALF as u64).await;
    assert_eq!(
        second.rows.load(Ordering::Relaxed),
        HALF as u64,
        "nothing else rewritten"
    );
    assert!(
        committed_and_ends(&env)
            .iter()
            .all(|(c, end)| *c == Offset::Offset(*end))
    );

    // The table: every report once, as produced.
    let session = nearby_common::cql::connect(&cql_nodes()).await.unwrap();
    let store = HistoryStore::new(session, &env.keyspace).await.unwrap();
    let mut rows = 0;
    for u in 0..USERS {
        for r in store
            .range(base + u, t0, t0 + 2 * HALF, 1000)
            .await
            .unwrap()
        {
            let i = r.ts - t0;
            assert_eq!(r.user_id, base + i % USERS);
            assert!((r.lat - (10.0 + i as f64 / 1000.0)).abs() < 1e-9);
            rows += 1;
        }
    }
    assert_eq!(rows, 2 * HALF, "the same rows, none new");
}
