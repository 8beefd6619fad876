//! End-to-end checks of the real local stack (`stack/stack.sh up`): Kafka places keys where Java
//! clients would and keeps per-key order, the CQL store writes and reads, Redis expires keys.
//! Every run uses its own topic, keyspace and keys.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nearby_common::kafka::{self, TopicSpec};
use nearby_testkit::{brokers, cql_nodes, redis_url, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use redis::AsyncCommands;

const PARTITIONS: i32 = 6;
const RECORDS_PER_KEY: u32 = 4;

/// The partition the Java producer's default partitioner picks for each key, computed by the
/// real `kafka-clients` jar of the stack.
fn java_partitions(keys: &[String], partitions: i32) -> Vec<i32> {
    let libs = std::env::var("NEARBY_KAFKA_LIBS").expect(
        "NEARBY_KAFKA_LIBS is not set: run the tests with scripts/test.sh, \
         or `eval \"$(stack/stack.sh env)\"` first",
    );
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/java/JavaPartition.java");
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(format!("{libs}/*"))
        .arg(source)
        .arg(partitions.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("java runs");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for key in keys {
            writeln!(stdin, "{key}").expect("write key");
        }
    }
    let out = child.wait_with_output().expect("java finishes");
    assert!(out.status.success(), "JavaPartition failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| l.parse().expect("a partition number"))
        .collect()
}

#[tokio::test]
async fn keyed_records_land_where_java_puts_them_and_keep_order_per_key() {
    let brokers = brokers();
    let topic = unique("test.keys.");
    let admin = kafka::admin_client(&brokers).expect("admin client");
    kafka::ensure_topics(
        &admin,
        &[TopicSpec {
            name: topic.clone(),
            partitions: PARTITIONS,
            replication: 1,
            retention: Duration::from_secs(3600),
        }],
    )
    .await
    .expect("topic created");

    // User ids as the system keys them (decimal strings), plus edge cases.
    let mut keys: Vec<String> = (0..300)
        .map(|_| rand::random::<u64>().to_string())
        .collect();
    keys.extend(["0", "1", "18446744073709551615", "ünïcode-kéy"].map(String::from));

    let producer: FutureProducer = kafka::producer_config(&brokers).create().expect("producer");
    // Records are enqueued in order (seq 0..N for every key, interleaved across keys) and only
    // then awaited, so order per key is the producer's and the broker's doing, not ours.
    let mut pending = Vec::new();
    for seq in 0..RECORDS_PER_KEY {
        for key in &keys {
            let payload = format!("{key}#{seq}");
            let record = FutureRecord::to(&topic).key(key).payload(&payload);
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueued");
            pending.push((key.clone(), delivery));
        }
    }
    let mut produced_on: HashMap<String, i32> = HashMap::new();
    for (key, delivery) in pending {
        let d = delivery
            .await
            .expect("not cancelled")
            .map_err(|(e, _)| e)
            .expect("delivered");
        let first = *produced_on.entry(key.clone()).or_insert(d.partition);
        assert_eq!(first, d.partition, "key {key} moved between partitions");
    }

    let java = java_partitions(&keys, PARTITIONS);
    assert_eq!(java.len(), keys.len());
    for (key, want) in keys.iter().zip(&java) {
        assert_eq!(
            produced_on[key], *want,
            "key {key}: rdkafka and Java disagree"
        );
    }
    let used: std::collections::HashSet<_> = java.iter().collect();
    assert!(used.len() > 1, "300 random keys all on one partition");

    // Read everything back from the beginning of every partition.
    let consumer: BaseConsumer = kafka::consumer_config(&brokers, &unique("test-group-"))
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(&topic, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let total = keys.len() * RECORDS_PER_KEY as usize;
    let mut seen: HashMap<String, Vec<(i32, u32)>> = HashMap::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count < total {
        assert!(
            Instant::now() < deadline,
            "only {count} of {total} records came back"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg.expect("consume");
        let key = String::from_utf8(msg.key().expect("key").to_vec()).expect("utf-8 key");
        let payload = std::str::from_utf8(msg.payload().expect("payload")).expect("utf-8");
        let (pkey, seq) = payload.rsplit_once('#').expect("key#seq");
        assert_eq!(pkey, key, "payload under the wrong key");
        seen.entry(key)
            .or_default()
            .push((msg.partition(), seq.parse().expect("seq")));
        count += 1;
    }
    for key in &keys {
        let got = &seen[key];
        let seqs: Vec<u32> = got.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            seqs,
            (0..RECORDS_PER_KEY).collect::<Vec<_>>(),
            "key {key} out of order"
        );
        assert!(got.iter().all(|(p, _)| *p == produced_on[key]));
    }

    kafka::delete_topics(&admin, &[&topic])
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn cql_table_is_created_written_and_read() {
    let session = nearby_common::cql::connect(&cql_nodes())
        .await
        .expect("cql session");
    let keyspace = unique("test_");
    nearby_common::cql::create_keyspace(&session, &keyspace, 1)
        .await
        .expect("keyspace");
    session
        .query_unpaged(
            format!(
                "CREATE TABLE {keyspace}.positions (user_id bigint, ts timestamp, lat double, \
                 lon double, PRIMARY KEY (user_id, ts)) WITH CLUSTERING ORDER BY (ts ASC)"
            ),
            &[],
        )
        .await
        .expect("table");
    let insert = session
        .prepare(format!(
            "INSERT INTO {keyspace}.positions (user_id, ts, lat, lon) VALUES (?, ?, ?, ?)"
        ))
        .await
        .expect("prepare");
    let user: i64 = 42;
    let rows = [
        (1_764_057_600_000_i64, 37.77, -122.42),
        (1_764_057_630_000, 37.78, -122.41),
        (1_764_057_660_000, 37.79, -122.40),
    ];
    for (ts, lat, lon) in rows {
        let ts = scylla::value::CqlTimestamp(ts);
        session
            .execute_unpaged(&insert, (user, ts, lat, lon))
            .await
            .expect("insert");
    }
    // Writing the same key again is the same row: this is what makes replays harmless.
    let (ts, lat, lon) = rows[1];
    session
        .execute_unpaged(&insert, (user, scylla::value::CqlTimestamp(ts), lat, lon))
        .await
        .expect("insert again");
    let other: i64 = 43;
    session
        .execute_unpaged(&insert, (other, scylla::value::CqlTimestamp(1), 0.0, 0.0))
        .await
        .expect("insert other user");

    let result = session
        .query_unpaged(
            format!("SELECT ts, lat, lon FROM {keyspace}.positions WHERE user_id = ?"),
            (user,),
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows");
    let got: Vec<(i64, f64, f64)> = result
        .rows::<(scylla::value::CqlTimestamp, f64, f64)>()
        .expect("typed rows")
        .map(|r| r.map(|(ts, lat, lon)| (ts.0, lat, lon)))
        .collect::<Result<_, _>>()
        .expect("decode");
    assert_eq!(got, rows.to_vec(), "three rows, once each, oldest first");

    session
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), &[])
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn redis_key_set_with_ex_expires() {
    let mut redis = nearby_common::redis_store::connect(&redis_url())
        .await
        .expect("redis");
    let key = unique("test:expiry:");
    let _: () = redis
        .set_ex(&key, "37.77,-122.42", 1)
        .await
        .expect("SET EX");
    let value: Option<String> = redis.get(&key).await.expect("GET");
    assert_eq!(value.as_deref(), Some("37.77,-122.42"));
    let ttl: i64 = redis.pttl(&key).await.expect("PTTL");
    assert!((1..=1000).contains(&ttl), "PTTL {ttl} ms");

    // Poll until Redis drops it; the bound is generous, the assertion is that it goes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exists: bool = redis.exists(&key).await.expect("EXISTS");
        if !exists {
            break;
        }
        assert!(Instant::now() < deadline, "key still there 10 s after EX 1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let value: Option<String> = redis.get(&key).await.expect("GET");
    assert_eq!(value, None);
}

#[tokio::test]
async fn latest_locations_are_cached_with_their_ttl_and_read_in_order() {
    use nearby_common::redis_store::{LatestLocation, LocationCache};
    let mut conn = nearby_common::redis_store::connect(&redis_url())
        .await
        .expect("redis");
    let cache = LocationCache::new(&unique("test"), 600);
    let a = LatestLocation {
        lat: 37.77,
        lon: -122.42,
        ts: 1_764_057_600_000,
    };
    let b = LatestLocation {
        lat: 37.78,
        lon: -122.41,
        ts: 1_764_057_630_000,
    };
    cache.set(&mut conn, 1, &a).await.expect("set a");
    cache.set(&mut conn, 3, &b).await.expect("set b");
    let got = cache.get_many(&mut conn, &[3, 2, 1]).await.expect("mget");
    assert_eq!(got, vec![Some(b), None, Some(a)]);
    assert_eq!(
        cache.get_many(&mut conn, &[1]).await.expect("one key"),
        vec![Some(a)]
    );
    let ttl: i64 = conn.ttl(cache.key(1)).await.expect("TTL");
    assert!((590..=600).contains(&ttl), "TTL {ttl}");

    // Batched writes with absolute expiry: one already past is gone, the other is kept.
    let now = nearby_common::clock::now_ms();
    cache
        .set_many_until(&mut conn, &[(5, a, now + 60_000), (6, b, now - 1)])
        .await
        .expect("pipeline");
    let got = cache.get_many(&mut conn, &[5, 6]).await.expect("mget");
    assert_eq!(got, vec![Some(a), None]);
    let pttl: i64 = conn.pttl(cache.key(5)).await.expect("PTTL");
    assert!((55_000..=60_000).contains(&pttl), "PTTL {pttl}");
}
