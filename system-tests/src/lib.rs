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
