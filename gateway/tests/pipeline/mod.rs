//! The pipeline for end-to-end tests: an in-process fanout next to the test gateways, and the
//! steps tests share (befriending through the API, reporting, draining frames).

#![allow(dead_code)] // each test file uses its own share of these

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nearby_common::geo::haversine_m;
use nearby_fanout::service::{FanoutService, FanoutServiceConfig, Status};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{self, Client, TestGateway, brokers};
use nearby_schemas::LocationEvent;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Metres per degree of latitude (haversine's radius).
pub const M_PER_DEG: f64 = 111_195.08;
pub const HOME: (f64, f64) = (37.7749, -122.4194);

/// A running fanout instance.
pub struct TestFanout {
    /// Its counters (events and changes applied).
    pub status: Arc<Status>,
    /// Its admin port (`/readyz`, `/metrics`).
    pub admin: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestFanout {
    pub async fn start(prefix: &str, keyspace: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "nearby-fanout".to_owned(),
            format!("--topic-prefix={prefix}"),
            format!("--cql-keyspace={keyspace}"),
            format!("--group-id={}", support::unique("test-fanout-")),
            "--sweep-interval=200ms".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let config = FanoutServiceConfig::parse_from(args);
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin_addr = admin.local_addr().expect("addr");
        let service = FanoutService::build(config).await.expect("fanout builds");
        let status = service.status.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(service.run(
            nearby_common::stage::Listeners::admin(admin),
            shutdown.clone().into(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while support::http(admin_addr, "GET", "/readyz", None, None)
            .await
            .0
            != 200
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fanout never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            status,
            admin: admin_addr,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("joins").expect("fanout ran cleanly");
    }
}

/// A gateway and a fanout sharing a prefix and keyspace.
pub async fn system(extra_gateway: &[&str], extra_fanout: &[&str]) -> (TestGateway, TestFanout) {
    let gw = TestGateway::start(extra_gateway).await;
    let fanout = TestFanout::start(&gw.prefix, &gw.keyspace, extra_fanout).await;
    (gw, fanout)
}

/// Makes `a` and `b` accepted friends through the API.
pub async fn befriend(gw: &TestGateway, a: i64, b: i64) {
    befriend_at(gw.addr, a, b).await;
}

/// Makes `a` and `b` accepted friends through the API of the gateway at `addr`.
pub async fn befriend_at(addr: std::net::SocketAddr, a: i64, b: i64) {
    let call = |u: i64, method: &'static str, path: String| async move {
        support::http(addr, method, &path, Some(&support::token(u)), None).await
    };
    // Both must exist (their first call creates them) before one can ask the other.
    for u in [a, b] {
        assert_eq!(call(u, "GET", "/v1/me".into()).await.0, 200);
    }
    assert_eq!(
        call(a, "PUT", format!("/v1/me/friends/{b}")).await.1["status"],
        "requested"
    );
    assert_eq!(
        call(b, "PUT", format!("/v1/me/friends/{a}")).await.1["status"],
        "accepted"
    );
}

/// A point `north_m` metres north of HOME.
pub fn north(north_m: f64) -> (f64, f64) {
    (HOME.0 + north_m / M_PER_DEG, HOME.1)
}

pub async fn report(c: &mut Client, at: (f64, f64), ts: i64) {
    c.send_json(json!({"type": "location", "lat": at.0, "lon": at.1, "ts": ts}))
        .await;
}

/// Reports HOME now and takes the first page that answers it.
pub async fn at_home(c: &mut Client) {
    report(c, HOME, support::now_ms()).await;
    c.next_of("nearby", 10).await.expect("first page");
}

/// Every frame that arrives within `secs` (for "never" assertions).
pub async fn drain(c: &mut Client, secs: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(v)) = tokio::time::timeout_at(deadline, c.next_within(secs)).await {
        out.push(v);
    }
    out
}

pub fn assert_distance(entry: &Value, a: (f64, f64), b: (f64, f64)) {
    let want = haversine_m(a.0, a.1, b.0, b.1);
    let got = entry["distance_m"].as_f64().expect("distance");
    assert!(
        (got - want).abs() / want < 0.003,
        "distance {got} vs haversine {want}"
    );
}

/// Waits until `fanout` has applied at least `n` friendship events in all.
pub async fn wait_changes(fanout: &TestFanout, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fanout
        .status
        .changes
        .load(std::sync::atomic::Ordering::Relaxed)
        < n
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fanout applied {} of {n} changes",
            fanout
                .status
                .changes
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether `frame` shows `friend` to its reader: in a `nearby` page or as a `friend_location`.
pub fn shows(frame: &Value, friend: i64) -> bool {
    let id = friend.to_string();
    match frame["type"].as_str() {
        Some("nearby") => frame["friends"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["user_id"] == id.as_str())),
        Some("friend_location") => frame["user_id"] == id.as_str(),
        _ => false,
    }
}

/// The next `friend_location` about `friend` within `secs`, skipping other frames.
pub async fn location_of(c: &mut Client, friend: i64, secs: u64) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(v)) = tokio::time::timeout_at(deadline, c.next_within(secs)).await {
        if v["type"] == "friend_location" && v["user_id"].as_str() == Some(&*friend.to_string()) {
            return Some(v);
        }
    }
    None
}

/// The next `friend_left` about `friend` within `secs`, skipping other frames.
pub async fn left_of(c: &mut Client, friend: i64, secs: u64) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(v)) = tokio::time::timeout_at(deadline, c.next_within(secs)).await {
        if v["type"] == "friend_left" && v["user_id"].as_str() == Some(&*friend.to_string()) {
            return Some(v);
        }
    }
    None
}

/// Every record on `<prefix>.location-updates`, read from the start up to the end it has now
/// (its high watermarks): after an upload answered, that is everything it produced.
pub async fn topic_records(prefix: &str) -> Vec<LocationEvent> {
    partition_records(prefix, None).await
}

/// Like [`topic_records`], of one partition only (`Some`) or of all.
pub async fn partition_records(prefix: &str, only: Option<i32>) -> Vec<LocationEvent> {
    let topic = format!("{prefix}.location-updates");
    // rdkafka's BaseConsumer blocks: keep it off the runtime that serves the gateway.
    tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(10);
        let consumer: BaseConsumer =
            nearby_common::kafka::consumer_config(&brokers(), &support::unique("test-read-"))
                .create()
                .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(&topic), timeout)
            .expect("metadata");
        let mut ends = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            if only.is_some_and(|o| o != p.id()) {
                continue;
            }
            let (low, high) = consumer
                .fetch_watermarks(&topic, p.id(), timeout)
                .expect("watermarks");
            if high > low {
                ends.push((p.id(), high));
                tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)
                    .expect("tpl");
            }
        }
        let mut out = Vec::new();
        if ends.is_empty() {
            return out;
        }
        consumer.assign(&tpl).expect("assign");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut next: Vec<(i32, i64)> = ends.iter().map(|(p, _)| (*p, 0)).collect();
        while next.iter().zip(&ends).any(|((_, at), (_, end))| at < end) {
            assert!(
                std::time::Instant::now() < deadline,
                "did not read the topic to its end"
            );
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                let m = m.expect("record");
                let at = next
                    .iter_mut()
                    .find(|(p, _)| *p == m.partition())
                    .expect("a partition with records");
                at.1 = m.offset() + 1;
                out.push(
                    nearby_schemas::decode::<LocationEvent>(m.payload().expect("payload"))
                        .expect("decodes"),
                );
            }
        }
        out
    })
    .await
    .expect("reader")
}
