//! The sink in its consumer group, in-process on the real stack: readiness comes with the
//! assignment (before any record) and goes at the stop; `/metrics` shows the partitions held and
//! a lag per partition that comes down to 0 once everything produced is written; and with two
//! instances in one group, stopping one while records keep flowing hands its partitions over
//! without losing or adding a row. The binary exits 1 when its run fails (an instance fenced by
//! another with its `--instance-id`), 0 after a stop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nearby_common::history::HistoryStore;
use nearby_history_sink::SinkStatus;
use nearby_testkit::client::sample;
use nearby_testkit::events::position;
use nearby_testkit::topics::location_topic;
use nearby_testkit::{SinkNames, cql_nodes, now_ms};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The real sink, started in-process by the test kit.
type TestSink = nearby_testkit::TestStage<nearby_history_sink::HistorySink>;

/// The group's committed offset and the end, per partition (`nearby-admin lag`'s reading).
fn committed_and_ends(names: &SinkNames) -> Vec<(i32, Option<i64>, i64)> {
    nearby_common::kafka::group_lag(&names.brokers, &names.group, &names.topic())
        .unwrap()
        .into_iter()
        .map(|p| (p.partition, p.committed, p.high))
        .collect()
}

/// `GET path` on an admin port: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    nearby_common::http::request(addr, "GET", path, None, "", Duration::from_secs(10))
        .await
        .unwrap()
}

/// The page's `nearby_history_sink_lag{partition="N"} V` samples: N → V.
fn lags(page: &str) -> BTreeMap<i32, i64> {
    page.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("nearby_history_sink_lag{partition=\"")?;
            let (p, v) = rest.split_once("\"} ")?;
            Some((p.parse().ok()?, v.parse().ok()?))
        })
        .collect()
}

/// Waits up to `secs` for `check` on the instance's `/metrics` page; returns the page.
async fn metrics_until(
    instance: &TestSink,
    secs: u64,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, page) = get(instance.admin, "/metrics").await;
        if code == 200 && check(&page) {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never on /metrics:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Produces a position of `user` at `ts`, on `partition` if given (else where its key goes).
async fn produce(
    producer: &FutureProducer,
    topic: &str,
    user: i64,
    ts: i64,
    partition: Option<i32>,
) {
    let at = (40.0 + (ts % 1000) as f64 / 1e4, -3.7);
    let payload = nearby_schemas::to_vec(&position(user, ts, at)).unwrap();
    let key = user.to_string();
    let mut record = FutureRecord::to(topic).key(&key).payload(&payload);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("produced");
}

/// Rows per user in the table, for `users` users from `base`, with `ts` in `[from, to)`.
async fn rows_by_user(
    keyspace: &str,
    base: i64,
    users: i64,
    (from, to): (i64, i64),
) -> BTreeMap<i64, Vec<i64>> {
    let session = nearby_common::cql::connect(&cql_nodes()).await.unwrap();
    let store = HistoryStore::new(session, keyspace).await.unwrap();
    let mut out = BTreeMap::new();
    for u in base..base + users {
        let ts: Vec<i64> = store
            .range(u, from, to, 100_000)
            .await
            .unwrap()
            .iter()
            .map(|r| r.ts)
            .collect();
        if !ts.is_empty() {
            out.insert(u, ts);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_at_the_assignment_and_the_lag_comes_down_to_zero() {
    const PARTITIONS: i32 = 3;
    const USERS: i64 = 12;
    const RECORDS: i64 = 120;
    let names = SinkNames::fresh();
    let topic = location_topic(&names.prefix, PARTITIONS).await;
    let sink = TestSink::spawn_with(names.args()).await;

    // Ready with no record on the topic: the group assigned the partitions.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, line) = get(sink.admin, "/readyz").await;
        if code == 200 {
            assert!(line.starts_with("ready partitions=3 "), "{line}");
            break;
        }
        assert_eq!(code, 503, "{line}");
        assert!(line.starts_with("waiting for partitions "), "{line}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {line}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sink.status.rows.load(Ordering::Relaxed), 0);
    // Every partition held, each with its lag: 0 on an empty topic.
    let page = metrics_until(&sink, 30, "a lag of 0 per partition", |page| {
        lags(page) == (0..PARTITIONS).map(|p| (p, 0)).collect()
    })
    .await;
    for line in [
        "\nnearby_history_sink_ready 1\n",
        "\nnearby_history_sink_partitions 3\n",
        "# TYPE nearby_history_sink_lag gauge\n",
        "# TYPE nearby_history_sink_abandoned_total counter\n",
    ] {
        assert!(page.contains(line), "/metrics lacks {line:?}:\n{page}");
    }

    // Records on every partition: written, then the lag is 0 everywhere again.
    let producer: FutureProducer = nearby_common::kafka::producer_config(&names.brokers)
        .create()
        .unwrap();
    let base = i64::from(rand::random::<u32>()) * 100;
    let t0 = now_ms() - 600_000;
    for i in 0..RECORDS {
        // Round the partitions, so each has records.
        let p = i32::try_from(i).unwrap() % PARTITIONS;
        produce(&producer, &topic, base + i % USERS, t0 + i, Some(p)).await;
    }
    let page = metrics_until(&sink, 60, "every row written, lag 0", |page| {
        sample(page, "nearby_history_sink_rows_total") == Some(RECORDS)
            && lags(page) == (0..PARTITIONS).map(|p| (p, 0)).collect()
    })
    .await;
    let ends: i64 = committed_and_ends(&names).iter().map(|e| e.2).sum();
    assert_eq!(ends, RECORDS, "every record on the topic:\n{page}");

    // Stopping: not ready any more, nothing abandoned, the group at the end of every partition.
    sink.shutdown.stop();
    sink.task.await.unwrap().unwrap();
    assert!(!sink.status.is_ready());
    assert_eq!(sink.status.abandoned.load(Ordering::Relaxed), 0);
    for (p, committed, end) in committed_and_ends(&names) {
        assert_eq!(committed, Some(end), "partition {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_one_of_two_instances_while_records_flow_keeps_every_row_once() {
    const PARTITIONS: i32 = 4;
    const USERS: i64 = 40;
    const RATE: u64 = 200; // records a second
    let names = SinkNames::fresh();
    let topic = location_topic(&names.prefix, PARTITIONS).await;
    let a = TestSink::spawn_with(names.args()).await;
    metrics_until(&a, 60, "A holds every partition", |page| {
        sample(page, "nearby_history_sink_partitions") == Some(PARTITIONS.into())
    })
    .await;

    // The load: one record every 1/RATE s, each (user, ts) unique, until told to stop.
    let base = i64::from(rand::random::<u32>()) * 100;
    let t0 = now_ms() - 600_000;
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (brokers, topic, stop) = (names.brokers.clone(), topic.clone(), stop.clone());
        async move {
            let producer: FutureProducer = nearby_common::kafka::producer_config(&brokers)
                .create()
                .unwrap();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                tick.tick().await;
                produce(&producer, &topic, base + i % USERS, t0 + i, None).await;
                i += 1;
            }
            i
        }
    });

    // B joins while A writes: the group moves some of A's partitions to B.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = TestSink::spawn_with(names.args()).await;
    let held = |s: &SinkStatus| s.partitions.lock().unwrap().len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !(b.status.is_ready()
        && held(&a.status) > 0
        && held(&b.status) > 0
        && held(&a.status) + held(&b.status) == PARTITIONS as usize)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the partitions were never shared: A {:?}, B {:?}",
            a.status.partitions.lock().unwrap(),
            b.status.partitions.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "shared: A {:?}, B {:?}",
        a.status.partitions.lock().unwrap(),
        b.status.partitions.lock().unwrap()
    );

    // A stops while the records keep coming: it drains, commits and leaves; B takes over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.shutdown.stop();
    a.task.await.unwrap().expect("A stops cleanly");
    assert!(!a.status.is_ready());
    assert_eq!(
        a.status.abandoned.load(Ordering::Relaxed),
        0,
        "A's drain confirmed every write"
    );
    metrics_until(&b, 60, "B holds every partition", |page| {
        sample(page, "nearby_history_sink_partitions") == Some(PARTITIONS.into())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Release);
    let produced = load.await.unwrap();

    // B writes everything and its lag comes down to 0 on every partition.
    let page = metrics_until(&b, 60, "B's lag 0 on every partition", |page| {
        lags(page) == (0..PARTITIONS).map(|p| (p, 0)).collect()
    })
    .await;
    let (rows_a, rows_b) = (
        a.status.rows.load(Ordering::Relaxed),
        b.status.rows.load(Ordering::Relaxed),
    );
    let produced_u = u64::try_from(produced).unwrap();
    eprintln!("{produced} produced; rows written: A {rows_a}, B {rows_b}");
    // Rows written twice are only those in flight at A when B joined (at most A's 256 write
    // slots); A's stop handed over exactly after its last written row.
    assert!(
        rows_a + rows_b >= produced_u && rows_a + rows_b - produced_u <= 256,
        "rewrites beyond the writes in flight at a hand-over:\n{page}"
    );

    // The table: every (user, ts) produced, once.
    let found = rows_by_user(&names.keyspace, base, USERS, (t0, t0 + produced)).await;
    let mut want: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for i in 0..produced {
        want.entry(base + i % USERS).or_default().push(t0 + i);
    }
    let counts = |m: &BTreeMap<i64, Vec<i64>>| -> BTreeMap<i64, usize> {
        m.iter().map(|(u, ts)| (*u, ts.len())).collect()
    };
    assert_eq!(counts(&found), counts(&want), "rows by user");
    assert_eq!(found, want, "exactly the reports produced");

    // B stops: the group is at the end of every partition.
    b.shutdown.stop();
    b.task.await.unwrap().expect("B stops cleanly");
    for (p, committed, end) in committed_and_ends(&names) {
        assert_eq!(committed, Some(end), "partition {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_fenced_by_its_static_twin_exits_non_zero_and_a_stopped_one_zero() {
    use std::process::{Command, Stdio};
    let names = SinkNames::fresh();
    location_topic(&names.prefix, 2).await;
    // Two processes with one `--instance-id`: the group fences the older one (a fatal error).
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_nearby-history-sink"))
            .args([
                format!("--topic-prefix={}", names.prefix),
                format!("--cql-keyspace={}", names.keyspace),
                format!("--group-id={}", names.group),
                format!("--kafka-brokers={}", names.brokers),
                format!("--cql-nodes={}", cql_nodes().join(",")),
                "--admin-listen=127.0.0.1:0".to_owned(),
                "--instance-id=twin".to_owned(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sink starts")
    };
    let mut older = spawn();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut newer = spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let fenced = loop {
        if let Some(status) = older.try_wait().unwrap() {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = older.kill();
            let _ = newer.kill();
            panic!("the older twin was never fenced");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(fenced.code(), Some(1), "a failed run exits 1");
    assert!(
        newer.try_wait().unwrap().is_none(),
        "the newer twin runs on"
    );
    let status = Command::new("kill")
        .args(["-TERM", &newer.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(newer.wait().unwrap().code(), Some(0), "a stop exits 0");
}
