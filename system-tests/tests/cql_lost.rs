//! The CQL store stopped for 30 s under load (a Cassandra of the test's own, [`OwnService`],
//! SIGKILLed, started again 30 s later on the same data; the load generator's small city
//! running throughout). What users see: friend and sharing calls answer 503 `unavailable` with
//! `Retry-After` meanwhile; positions keep flowing between friends already active, never pausing
//! over 2 s; once the store is back, the calls work again and history holds every report
//! exactly once (the sink waited, lost nothing and wrote nothing twice). Times are printed.

use std::time::Duration;

use nearby_system_tests::{TestGateway, background_load, start_fanout, start_sink};
use nearby_testkit::own::{OwnService, Service};
use nearby_testkit::pipeline::*;
use nearby_testkit::{RawResponse, http_raw, now_ms, token, topic_prefix, topics, unique, user};
use tokio::time::{Instant, sleep};

/// How long the store stays down.
const DOWN: Duration = Duration::from_secs(30);
/// The longest two of a friend's deliveries may be apart while the friend reports every second.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// `PUT /v1/me/friends/{to}` as `u`.
async fn ask(gw: &TestGateway, u: i64, to: i64) -> RawResponse {
    let path = format!("/v1/me/friends/{to}");
    http_raw(gw.addr, "PUT", &path, Some(&token(u)), None).await
}

/// `PUT /v1/me/sharing` on as `u`.
async fn share(gw: &TestGateway, u: i64) -> RawResponse {
    let body = r#"{"enabled": true}"#;
    http_raw(
        gw.addr,
        "PUT",
        "/v1/me/sharing",
        Some(&token(u)),
        Some(body),
    )
    .await
}

/// Asserts that `answer` is a 503 `unavailable` with a `Retry-After`.
fn assert_unavailable(what: &str, answer: &RawResponse) {
    assert_eq!(answer.status, 503, "{what}: {}", answer.body);
    assert!(
        answer.body.contains("\"unavailable\""),
        "{what}: {}",
        answer.body
    );
    assert!(
        answer
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "{what}: no Retry-After: {:?}",
        answer.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_store_down_30_s_calls_answer_503_positions_flow_and_history_loses_nothing() {
    let cql = OwnService::start(Service::Cassandra).await;
    let nodes = format!("--cql-nodes={}", cql.addr);
    let prefix = topic_prefix();
    topics::create_topics(&prefix, 3).await;
    let keyspace = unique("test_gw_");
    let gw = TestGateway::start_on(&prefix, &keyspace, "gw-a", &[&nodes]).await;
    let fanout = start_fanout(&prefix, &keyspace, &[&nodes]).await;
    let sink = start_sink(&prefix, &keyspace, &unique("test-sink-"), &[&nodes]).await;
    let load = background_load(&gw, 50, Duration::from_secs(75), &[&nodes]).await;

    let start = now_ms();
    let (a, b, mut ca, mut cb) = connected_friends(&gw, &gw).await;
    let (c, d) = (user(), user());
    for u in [c, d] {
        assert_eq!(gw.call(u, "GET", "/v1/me", None).await.0, 200);
    }
    at_home(&mut cb).await;
    let mut sent = Vec::new();
    let mut n = 0.0;
    let mut step = async |ca: &mut nearby_testkit::Client, sent: &mut Vec<i64>| {
        n += 1.0;
        let ts = now_ms();
        report(ca, north(300.0 + n), ts).await;
        sent.push(ts);
    };
    step(&mut ca, &mut sent).await;
    location_of(&mut cb, a, 10).await.expect("B sees A");
    sleep(Duration::from_secs(3)).await;

    // The store dies. A reports every second; B must see each within the pause bound.
    cql.kill().await;
    let killed = Instant::now();
    let mut longest = Duration::ZERO;
    let mut last_seen = Instant::now();
    let mut calls_checked = false;
    while killed.elapsed() < DOWN {
        step(&mut ca, &mut sent).await;
        if location_of(&mut cb, a, 2).await.is_some() {
            longest = longest.max(last_seen.elapsed());
            last_seen = Instant::now();
        }
        assert!(
            last_seen.elapsed() <= MAX_PAUSE,
            "B saw nothing of A for {:?} with the store down",
            last_seen.elapsed()
        );
        if !calls_checked && killed.elapsed() > Duration::from_secs(5) {
            let asked = Instant::now();
            assert_unavailable("friend request", &ask(&gw, c, d).await);
            assert_unavailable("sharing on", &share(&gw, c).await);
            println!(
                "cql down: friend and sharing calls answered 503 in {} ms",
                asked.elapsed().as_millis()
            );
            calls_checked = true;
        }
        sleep(Duration::from_secs(1)).await;
    }
    println!(
        "cql down: B's longest wait for A's next position {} ms",
        longest.as_millis()
    );

    // It comes back: the calls work again, and history is whole.
    cql.up().await;
    let back = Instant::now();
    let deadline = back + Duration::from_secs(60);
    loop {
        let answer = ask(&gw, c, d).await;
        if answer.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "calls still failing: {}",
            answer.body
        );
        sleep(Duration::from_millis(500)).await;
    }
    println!(
        "cql back: friend calls work {} ms after the store answered",
        back.elapsed().as_millis()
    );
    // A read may still meet the store coming back: answered 503, tried again.
    let (stored, refused) = history_settled(gw.addr, a, start, sent.len()).await;
    assert_eq!(stored, sent, "A's history: every report once, in order");
    println!(
        "cql back: history holds all {} of A's reports once, {} ms after the store answered ({refused} reads answered 503 meanwhile)",
        sent.len(),
        back.elapsed().as_millis()
    );

    let load = load.await.expect("the load");
    println!("cql: the load's counts: {}", load["counts"]);
    drop((ca, cb, b));
    sink.stop().await;
    fanout.stop().await;
    gw.stop().await;
}
