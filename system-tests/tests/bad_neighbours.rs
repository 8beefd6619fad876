//! Bad neighbours under load: one client that never reads while deliveries pile up for it, and
//! one that floods frames (reconnecting once a second to flood again). The first is dropped
//! after the send timeout (counted `slow`), the second closed 1008 every time; the load
//! generator's people, run once alone and once beside them, see the same latency. The p99 of
//! both runs and their ratio are printed (the target is under 10 % apart; the assertion leaves
//! room for a shared CI machine's noise).

use std::time::Duration;

use futures::SinkExt;
use nearby_schemas::{Delivery, DeliveryBatch, DeliveryPayload, FriendLocation};
use nearby_system_tests::{TestGateway, background_load, system};
use nearby_testkit::client::{get, sample};
use nearby_testkit::{Client, token, user};
use tokio::time::{Instant, sleep};
use tokio_tungstenite::tungstenite::Message;

/// How long each load run lasts.
const RUN: Duration = Duration::from_secs(20);
/// The send timeout the gateway runs with (its default).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliveries for `to` as fanout would write them for someone with a busy friend: `n` positions
/// of `friend` (a user with a profile: the gateway names each), in records of 2,000.
fn pile_for(to: i64, friend: i64, n: u32) -> Vec<Vec<u8>> {
    let one = |i: u32| Delivery {
        recipient_id: to,
        payload: DeliveryPayload::FriendLocation(FriendLocation {
            friend_id: friend,
            lat: 37.78,
            lon: -122.41,
            distance_m: f64::from(i),
            updated_at: 1_764_057_600_000,
        }),
    };
    (0..n)
        .step_by(2_000)
        .map(|start| {
            let batch = DeliveryBatch {
                deliveries: (start..(start + 2_000).min(n)).map(one).collect(),
            };
            nearby_schemas::to_vec(&batch).expect("encode")
        })
        .collect()
}

/// Floods `gw` until `until`: each second a socket that sends 1,000 pings as fast as it can,
/// then waits for its close. Returns the close codes.
async fn flooder(gw: std::net::SocketAddr, u: i64, until: Instant) -> Vec<Option<u16>> {
    let mut codes = Vec::new();
    while Instant::now() < until {
        let mut c = Client::connect(gw, &token(u)).await;
        for i in 0..1_000 {
            let ping = format!(r#"{{"type":"ping","id":{i}}}"#);
            if c.ws.send(Message::text(ping)).await.is_err() {
                break;
            }
        }
        codes.push(c.close_code(5).await);
        sleep(Duration::from_secs(1)).await;
    }
    codes
}

/// The gateway's count of sessions ended for `reason`.
async fn closed(gw: &TestGateway, reason: &str) -> i64 {
    let (_, page) = get(gw.admin, "/metrics").await;
    let name = format!(r#"nearby_gateway_sessions_closed_total{{reason="{reason}"}}"#);
    sample(&page, &name).unwrap_or(0)
}

/// The p99 (ms, after the first interval) of a load run's JSON, and its counts checked clean.
fn p99_of(run: &serde_json::Value, what: &str) -> f64 {
    let counts = &run["counts"];
    assert_eq!(counts["error_frames"], 0, "{what}: {counts}");
    assert_eq!(counts["closed_early"], 0, "{what}: {counts}");
    assert!(
        counts["deliveries_timed"].as_u64() > Some(1_000),
        "{what}: {counts}"
    );
    run["latency_steady"]["p99_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no p99: {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_and_a_flooder_are_closed_and_no_one_else_notices() {
    let (gw, fanout) = system(&[], &[]).await;

    let alone = background_load(&gw, 50, RUN, &[]).await;
    let alone = p99_of(&alone.await.expect("the first run"), "alone");

    // The neighbours arrive with the second run.
    let (stalled, busy) = (user(), user());
    let named = gw
        .call(busy, "PATCH", "/v1/me", Some(r#"{"name":"Busy"}"#))
        .await;
    assert_eq!(named.0, 200, "{}", named.1);
    let _never_read = gw.connect(stalled).await;
    let load = background_load(&gw, 50, RUN, &[]).await;
    let topic = format!("{}.deliveries.gw-a", gw.prefix);
    nearby_testkit::records::produce_values(&topic, &pile_for(stalled, busy, 200_000)).await;
    let until = Instant::now() + RUN;
    let flood = tokio::spawn(flooder(gw.addr, user(), until));
    let beside = p99_of(&load.await.expect("the second run"), "beside");

    let codes = flood.await.expect("the flooder");
    assert!(
        codes.len() >= 5,
        "the flooder connected {} times",
        codes.len()
    );
    assert!(
        codes.iter().all(|c| *c == Some(1008)),
        "every flood closed 1008: {codes:?}"
    );
    let deadline = Instant::now() + SEND_TIMEOUT;
    while closed(&gw, "slow").await < 1 {
        assert!(
            Instant::now() < deadline,
            "the socket that never reads is still open"
        );
        sleep(Duration::from_millis(200)).await;
    }
    println!(
        "bad neighbours: p99 {alone:.1} ms alone, {beside:.1} ms beside them ({:+.0} %); {} floods closed 1008, the stalled socket dropped",
        (beside / alone - 1.0) * 100.0,
        codes.len()
    );
    // The target is 10 %; this guard fails only on a real regression, not on CI noise.
    assert!(
        beside <= alone * 1.5 + 2.0,
        "p99 {alone:.1} ms alone, {beside:.1} ms beside the bad neighbours"
    );
    fanout.stop().await;
    gw.stop().await;
}
