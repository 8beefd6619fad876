//! A first start that never fails: fanout and the history sink started in the same instant as
//! their topics are created (no leader yet, or no topic yet) wait for them and become ready;
//! started against a topic that never comes, each fails once `NEARBY_STARTUP_TIMEOUT` is spent,
//! with an error that names the topic and the command that creates it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use nearby_common::shutdown::Shutdown;
use nearby_common::stage::{Listeners, Stage};
use nearby_fanout::service::{FanoutService, FanoutServiceConfig};
use nearby_history_sink::{HistorySink, SinkConfig};
use nearby_testkit::stage::{self, build_and_run};
use nearby_testkit::{topics, unique};

/// The stage flags of a fresh system under `prefix` (the stack's addresses from the environment).
fn args(binary: &str, prefix: &str, extra: &[&str]) -> Vec<String> {
    let group = [format!("--group-id={}", unique("test-"))];
    stage::args(binary, prefix, &unique("t_"), &group, extra)
}

/// Polls `/readyz` until it answers 200, for at most `within`.
async fn ready_within(admin: SocketAddr, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if nearby_testkit::client::get(admin, "/readyz").await.0 == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn fanout_and_the_sink_started_with_their_topics_become_ready() {
    let prefix = unique("test.");
    let fanout_listeners = Listeners::loopback(false).await.unwrap();
    let sink_listeners = Listeners::loopback(false).await.unwrap();
    let (fanout_admin, sink_admin) = (
        fanout_listeners.admin.local_addr().unwrap(),
        sink_listeners.admin.local_addr().unwrap(),
    );
    let shutdown = Shutdown::new();
    // Both stages start first and the topics are created while they start, as `run.sh` on a
    // fresh machine does within the same second.
    let fanout = tokio::spawn(build_and_run::<FanoutService>(
        args("nearby-fanout", &prefix, &[]),
        fanout_listeners,
        shutdown.clone(),
    ));
    let sink = tokio::spawn(build_and_run::<HistorySink>(
        args("nearby-history-sink", &prefix, &[]),
        sink_listeners,
        shutdown.clone(),
    ));
    // Returns at once: the broker has not elected their leaders yet.
    topics::create_topics(&prefix, 6).await;

    let fanout_ready = ready_within(fanout_admin, Duration::from_secs(60)).await;
    let sink_ready = ready_within(sink_admin, Duration::from_secs(60)).await;
    shutdown.stop();
    let (fanout, sink) = (fanout.await.unwrap(), sink.await.unwrap());
    topics::delete_topics(&prefix).await;
    assert!(fanout_ready, "fanout never became ready: {fanout:?}");
    assert!(sink_ready, "the sink never became ready: {sink:?}");
    fanout.expect("fanout stops cleanly");
    sink.expect("the sink stops cleanly");
}

#[tokio::test]
async fn a_missing_topic_is_named_once_the_startup_timeout_is_spent() {
    let prefix = unique("test.missing.");
    let timeout = ["--startup-timeout=2s"];
    let topic = format!("{prefix}.location-updates");

    let config = FanoutServiceConfig::parse_from(args("nearby-fanout", &prefix, &timeout));
    let listeners = Listeners::loopback(false).await.unwrap();
    let began = tokio::time::Instant::now();
    let err = FanoutService::build(config)
        .await
        .expect("fanout builds: CQL and Redis are up")
        .run(listeners, Shutdown::new())
        .await
        .expect_err("no location topic");
    let text = format!("{err:#}");
    assert!(text.contains(&format!("topic {topic}")), "{text}");
    assert!(text.contains("nearby-admin topics create"), "{text}");
    assert!(text.contains("NEARBY_STARTUP_TIMEOUT"), "{text}");
    // It waited (the topic might have been on its way), but not much past the timeout.
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(15),
        "{waited:?}"
    );

    let config = SinkConfig::parse_from(args("nearby-history-sink", &prefix, &timeout));
    let err = HistorySink::build(config)
        .await
        .expect_err("no location topic");
    let text = format!("{err:#}");
    assert!(text.contains(&format!("topic {topic}")), "{text}");
    assert!(text.contains("nearby-admin topics create"), "{text}");
}
