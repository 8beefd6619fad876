//! The sink under faults, on the real stack: while reports flow, the sink process is killed with
//! SIGKILL three times and restarted, and Cassandra is stopped and started once; afterwards
//! every accepted report is in `location_history` exactly once — none missing, none extra.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nearby_common::history::HistoryStore;
use nearby_ingest::{Ingest, IngestConfig, Report, ReportOptions, ValidationLimits};
use nearby_testkit::topics::location_topic;
use nearby_testkit::{brokers, cql_nodes, now_ms, unique};
use tokio::sync::Mutex;

const USERS: i64 = 100;
/// Reports at least (the load goes on until the faults are over).
const MIN_REPORTS: usize = 3_000;
/// Reports produced a second (in groups of ten, each group awaited).
const RATE: u64 = 100;

/// Accepted reports: (user, ts) → (lat, lon).
type Reports = BTreeMap<(i64, i64), (f64, f64)>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The sink as its own process, so it can be killed for real. Every start uses the same admin
/// port and the same static member name, as a supervisor restarting it in place would.
fn spawn_sink(
    prefix: &str,
    keyspace: &str,
    group: &str,
    port: u16,
    log: &std::path::Path,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("sink log");
    Command::new(env!("CARGO_BIN_EXE_nearby-history-sink"))
        .args([
            format!("--topic-prefix={prefix}"),
            format!("--cql-keyspace={keyspace}"),
            format!("--group-id={group}"),
            format!("--admin-listen=127.0.0.1:{port}"),
            "--instance-id=sink-0".to_owned(),
            "--retry-max=1s".to_owned(),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("sink starts")
}

/// A counter of the sink's `/readyz` line (`name=value`), if it answers.
async fn counter(port: u16, name: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    let key = format!("{name}=");
    body.split_whitespace()
        .find_map(|w| w.strip_prefix(key.as_str()))
        .and_then(|v| v.parse().ok())
}

fn kill(child: &mut Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    child.wait().expect("reaped");
}

fn stack(args: &[&str]) {
    let status = Command::new("bash")
        .arg(root().join("stack/stack.sh"))
        .args(args)
        .status()
        .expect("stack.sh");
    assert!(status.success(), "stack.sh {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_is_kept_exactly_once_through_kills_and_a_cassandra_restart() {
    let brokers = brokers();
    let (prefix, keyspace, group) = (unique("test."), unique("test_hist_"), unique("test-sink-"));
    let topic = location_topic(&prefix, 3).await;
    let log = std::env::temp_dir().join(format!("{group}.log"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sink = Arc::new(Mutex::new(spawn_sink(
        &prefix, &keyspace, &group, port, &log,
    )));

    // The load: positions of USERS people until the faults are over; each accepted one is
    // remembered.
    let ingest = Ingest::new(&brokers, topic, &IngestConfig::default()).unwrap();
    let accepted: Arc<Mutex<Reports>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let base = i64::from(rand::random::<u32>()) * 1_000;
    let load = tokio::spawn({
        let (accepted, stop) = (accepted.clone(), stop.clone());
        async move {
            let options = ReportOptions {
                limits: ValidationLimits::LIVE,
                rate_limited: false,
            };
            let t0 = now_ms() - 60_000;
            let mut tick = tokio::time::interval(Duration::from_millis(10_000 / RATE));
            let mut group = 0usize;
            while !stop.load(Ordering::Acquire) || group * 10 < MIN_REPORTS {
                tick.tick().await;
                let sends = (0..10).map(|k| {
                    let i = group * 10 + k;
                    let user = base + (i as i64 % USERS);
                    let ts = t0 + i as i64; // unique per report
                    let (lat, lon) = (48.0 + (i % 997) as f64 / 1e4, 2.0 + (i % 991) as f64 / 1e4);
                    let report = Report {
                        lat,
                        lon,
                        ts,
                        accuracy_m: Some(5.0),
                    };
                    let (ingest, options) = (&ingest, &options);
                    async move {
                        (
                            user,
                            ts,
                            lat,
                            lon,
                            ingest.report_with(user, None, report, options).await,
                        )
                    }
                });
                for (user, ts, lat, lon, r) in futures::future::join_all(sends).await {
                    if r.is_ok() {
                        accepted.lock().await.insert((user, ts), (lat, lon));
                    }
                }
                group += 1;
            }
        }
    });

    // The faults, while the load flows: three kills, each restarted at once.
    for round in 0..3 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut s = sink.lock().await;
        kill(&mut s, "-KILL");
        eprintln!("fault: sink killed ({round})");
        *s = spawn_sink(&prefix, &keyspace, &group, port, &log);
    }
    // Then the CQL store goes away while the (restarted) sink is writing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while counter(port, "rows").await.unwrap_or(0) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sink never wrote a row"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack(&["down", "cassandra"]);
    eprintln!("fault: cassandra stopped");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stack(&["up"]);
    eprintln!("fault: cassandra started again");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Release);
    load.await.unwrap();
    let accepted = accepted.lock().await.clone();

    // Every accepted report, once: read each user's rows until they match, or time out.
    let session = nearby_common::cql::connect(&cql_nodes()).await.unwrap();
    let store = HistoryStore::new(session, &keyspace).await.unwrap();
    let (from, to) = (
        accepted.keys().map(|k| k.1).min().unwrap(),
        accepted.keys().map(|k| k.1).max().unwrap() + 1,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (missing, extra, rows) = loop {
        let mut found = Reports::new();
        let mut rows = 0;
        for u in 0..USERS {
            if let Ok(list) = store.range(base + u, from, to, 100_000).await {
                rows += list.len();
                for r in list {
                    found.insert((r.user_id, r.ts), (r.lat, r.lon));
                }
            }
        }
        let missing = accepted.keys().filter(|k| !found.contains_key(k)).count();
        let extra = found
            .iter()
            .filter(|(k, v)| accepted.get(k) != Some(v))
            .count();
        if (missing == 0 && extra == 0) || tokio::time::Instant::now() > deadline {
            break (missing, extra, rows);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    eprintln!(
        "{} reports accepted, {rows} rows read: {missing} missing, {extra} extra (sink log: {})",
        accepted.len(),
        log.display()
    );
    assert!(
        accepted.len() >= MIN_REPORTS * 9 / 10,
        "the load itself failed: {}",
        accepted.len()
    );
    assert_eq!((missing, extra), (0, 0));
    assert_eq!(rows, accepted.len(), "each report is one row");
    // The outage was real for the sink: it failed writes and kept retrying them.
    let retries = counter(port, "retries").await.unwrap_or(0);
    eprintln!("the last sink instance retried {retries} writes");
    assert!(retries > 0, "the sink never met the outage");
    let mut s = sink.lock().await;
    kill(&mut s, "-TERM");
}
