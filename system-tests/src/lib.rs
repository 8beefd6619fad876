//! What the system tests share that names the stages: the test kit's generic starters bound to
//! the real gateway, fanout and history sink, a gateway and fanout on one prefix ([`system`]),
//! and waiting for fanout to apply friendship changes ([`wait_changes`]). The tests themselves
//! are in `tests/`: each spans several stages, so no stage's crate depends on another through
//! its tests.

use std::time::Duration;

use nearby_fanout::service::FanoutService;
use nearby_gateway::GatewayStage;
use nearby_history_sink::HistorySink;
use nearby_testkit::TestStage;

/// A gateway in-process.
pub type TestGateway = nearby_testkit::TestGateway<GatewayStage>;
/// A fanout instance in-process.
pub type TestFanout = TestStage<FanoutService>;
/// A history sink in-process.
pub type TestSink = TestStage<HistorySink>;

/// Starts fanout on `prefix` and `keyspace` in a fresh group ([`nearby_testkit::fanout::args`])
/// and returns once it is ready.
pub async fn start_fanout(prefix: &str, keyspace: &str, extra: &[&str]) -> TestFanout {
    TestFanout::start(nearby_testkit::fanout::args(prefix, keyspace, extra)).await
}

/// Starts a history sink in `group` on `prefix` and `keyspace` and returns once it is ready.
pub async fn start_sink(prefix: &str, keyspace: &str, group: &str, extra: &[&str]) -> TestSink {
    TestSink::start(nearby_testkit::sink::args(prefix, keyspace, group, extra)).await
}

/// A gateway and a fanout sharing a prefix and keyspace.
pub async fn system(extra_gateway: &[&str], extra_fanout: &[&str]) -> (TestGateway, TestFanout) {
    let gw = TestGateway::start(extra_gateway).await;
    let fanout = start_fanout(&gw.prefix, &gw.keyspace, extra_fanout).await;
    (gw, fanout)
}

/// The load generator's flags for a small city against `gw` (and the fanout beside it, both
/// in this process): the API set-up, the test's secret, prefix and keyspace, no per-process
/// costs (the stages run in the test's process), no progress bar, results under `out`.
pub fn loadgen_flags(gw: &TestGateway, scenario: &str, out: &std::path::Path) -> Vec<String> {
    vec![
        "loadgen".to_owned(),
        format!("--scenario={scenario}"),
        // A small town: most friends are within 5 miles, so there are deliveries to time.
        "--side-km=5".to_owned(),
        "--setup=api".to_owned(),
        format!("--gateway={}", gw.addr),
        format!("--gateway-admin={}", gw.admin),
        "--fanout-admin=none".to_owned(),
        "--sink-admin=none".to_owned(),
        format!("--jwt-secret={}", nearby_testkit::SECRET),
        format!("--topic-prefix={}", gw.prefix),
        format!("--cql-keyspace={}", gw.keyspace),
        "--no-costs".to_owned(),
        "--no-progress".to_owned(),
        format!("--out={}", out.display()),
    ]
}

/// Waits until `fanout` has applied at least `n` friendship events in all.
pub async fn wait_changes(fanout: &TestFanout, n: u64) {
    let applied = || {
        fanout
            .status
            .changes
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while applied() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fanout applied {} of {n} changes",
            applied()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The load generator's small city driven against `gw` in the background for `duration` (a
/// report a second from each of `people`, 10 friends each; `extra` flags after the kit's), as
/// the fault tests' load. Returns once its people report (its set-up, friend requests and all,
/// is over, so a fault that follows meets only the load itself); the receiver gets the run's
/// JSON (`counts`, `latency`) once it ends.
pub async fn background_load(
    gw: &TestGateway,
    people: u32,
    duration: Duration,
    extra: &[&str],
) -> tokio::sync::oneshot::Receiver<serde_json::Value> {
    #[derive(Debug, clap::Parser)]
    struct Args {
        #[command(flatten)]
        run: nearby_loadgen::run::RunArgs,
    }
    let out = std::env::temp_dir().join(nearby_testkit::unique("loadgen-bg-"));
    let mut flags = loadgen_flags(gw, "background", &out);
    flags.extend([
        format!("--people={people}"),
        "--degree=10".to_owned(),
        "--interval=1s".to_owned(),
        format!("--duration={}s", duration.as_secs()),
        "--drain=2s".to_owned(),
        "--no-lag".to_owned(),
    ]);
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    let args = <Args as clap::Parser>::parse_from(flags);
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A runtime of its own on a thread of its own: the run's future is not `Send`, and the load
    // should not share the stages' worker threads (a real load generator would not).
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the load's runtime");
        let result = runtime
            .block_on(nearby_loadgen::run::run(&args.run))
            .expect("the background load runs");
        let json = std::fs::read(&result.header.json_path).expect("the load's JSON");
        std::fs::remove_dir_all(&out).ok();
        let _ = tx.send(serde_json::from_slice(&json).expect("valid JSON"));
    });
    reporting(gw, u64::from(people) * 2).await;
    rx
}

/// Waits (at most 60 s) until `gw` has accepted `n` reports over sockets.
async fn reporting(gw: &TestGateway, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let accepted = r#"nearby_gateway_reports_total{via="socket",result="accepted"}"#;
    loop {
        let (_, page) = nearby_testkit::client::get(gw.admin, "/metrics").await;
        let got = nearby_testkit::client::sample(&page, accepted).unwrap_or(0);
        if u64::try_from(got).unwrap_or(0) >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background load never started reporting"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
