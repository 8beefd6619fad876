//! The sink in-process on the real stack: positions become rows once (a record read twice is
//! the same row), connects and poison records are skipped (poison counted), and a stop commits
//! exactly the end of what was written.

use std::sync::atomic::Ordering;
use std::time::Duration;

use nearby_common::history::HistoryStore;
use nearby_schemas::{Connected, LocationBody, LocationEvent};
use nearby_testkit::client::get;
use nearby_testkit::events::gateway_position;
use nearby_testkit::topics::location_topic;
use nearby_testkit::{SinkNames, cql_nodes, now_ms};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// The real sink, started in-process by the test kit.
type TestSink = nearby_testkit::TestStage<nearby_history_sink::HistorySink>;

/// A position of `user` at `ts` over a socket, with an accuracy, received 3 ms later.
fn position(user: i64, ts: i64, lat: f64) -> LocationEvent {
    LocationEvent {
        received_at: ts + 3,
        ..gateway_position(user, ts, lat, 2.35)
    }
}

#[tokio::test]
async fn positions_become_rows_once_and_the_rest_is_skipped() {
    let SinkNames {
        brokers,
        prefix,
        keyspace,
        group,
    } = SinkNames::fresh();
    let topic = location_topic(&prefix, 2).await;

    let t0 = now_ms() - 60_000;
    let user = i64::from(rand::random::<u32>()) + 1;
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    let mut put = |key: i64, bytes: Vec<u8>| records.push((key.to_string(), bytes));
    put(
        user,
        nearby_schemas::to_vec(&position(user, t0, 48.1)).unwrap(),
    );
    put(
        user,
        nearby_schemas::to_vec(&LocationEvent {
            body: LocationBody::Connected(Connected {
                session_id: "s1".into(),
            }),
            ..position(user, t0 + 1, 0.0)
        })
        .unwrap(),
    );
    put(user, b"\xC3\x01not avro at all".to_vec()); // poison
    put(
        user,
        nearby_schemas::to_vec(&position(user, t0 + 2, 48.2)).unwrap(),
    );
    // The same report again (a producer retry, a replay): the same row.
    put(
        user,
        nearby_schemas::to_vec(&position(user, t0 + 2, 48.2)).unwrap(),
    );
    put(
        user + 1,
        nearby_schemas::to_vec(&position(user + 1, t0 + 5, 48.3)).unwrap(),
    );
    let producer: FutureProducer = nearby_common::kafka::producer_config(&brokers)
        .create()
        .unwrap();
    for (key, payload) in &records {
        producer
            .send(
                FutureRecord::to(&topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }

    let sink =
        TestSink::spawn_with(nearby_testkit::sink::args(&prefix, &keyspace, &group, &[])).await;
    let (status, admin_addr) = (sink.status.clone(), sink.admin);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while status.rows.load(Ordering::Relaxed) < 4 {
        assert!(tokio::time::Instant::now() < deadline, "rows never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the skipped records' offsets be stored too, then stop (which commits).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The same counts on `/metrics`, as Prometheus text.
    let (_, metrics) = get(admin_addr, "/metrics").await;
    for line in [
        "# TYPE nearby_history_sink_rows_total counter\n",
        "\nnearby_history_sink_rows_total 4\n",
        "\nnearby_history_sink_poison_total 1\n",
        "\nnearby_history_sink_skipped_total 1\n",
        "\nnearby_history_sink_ready 1\n",
    ] {
        assert!(
            metrics.contains(line),
            "/metrics lacks {line:?}:\n{metrics}"
        );
    }
    sink.stop().await;
    assert_eq!(status.poison.load(Ordering::Relaxed), 1);
    assert_eq!(status.skipped.load(Ordering::Relaxed), 1);
    assert_eq!(
        status.rows.load(Ordering::Relaxed),
        4,
        "four positions written"
    );

    let session = nearby_common::cql::connect(&cql_nodes()).await.unwrap();
    let store = HistoryStore::new(session, &keyspace).await.unwrap();
    let rows = store.range(user, t0, t0 + 10, 100).await.unwrap();
    let got: Vec<(i64, f64, Option<f64>, i64)> = rows
        .iter()
        .map(|r| (r.ts, r.lat, r.accuracy_m, r.received_at))
        .collect();
    assert_eq!(
        got,
        [
            (t0, 48.1, Some(12.5), t0 + 3),
            (t0 + 2, 48.2, Some(12.5), t0 + 5)
        ],
        "oldest first, the repeated report once"
    );
    assert_eq!(
        store.range(user + 1, t0, t0 + 10, 100).await.unwrap().len(),
        1
    );

    // The group's committed offsets are the ends of the partitions: all of it was handled.
    let consumer: BaseConsumer = nearby_common::kafka::client_config(&brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition(&topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    for e in committed.elements() {
        let (_, high) = consumer
            .fetch_watermarks(&topic, e.partition(), Duration::from_secs(10))
            .unwrap();
        let want = if high == 0 {
            Offset::Invalid
        } else {
            Offset::Offset(high)
        };
        assert_eq!(e.offset(), want, "partition {}", e.partition());
    }
}
