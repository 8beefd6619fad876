//! Redis restarted empty under load (the load generator's small city; a Redis of the test's
//! own, [`OwnService`], SIGKILLed and started again with nothing): deliveries never depend on it, so friends keep
//! seeing each other move; first pages, built from its cache, list nobody wrong meanwhile and
//! list the friend again as soon as the friend's next report is in. The time from that report to
//! the page is printed and bounded (5 s).

use std::time::{Duration, Instant};

use nearby_system_tests::{background_load, system};
use nearby_testkit::own::{OwnService, Service};
use nearby_testkit::pipeline::*;
use nearby_testkit::{Client, now_ms};
use serde_json::Value;

/// The first page a fresh socket of `user` gets at HOME: the ids it lists (none when the page
/// could not be built: an `error` frame instead).
async fn first_page(gw: &nearby_system_tests::TestGateway, user: i64) -> Vec<String> {
    let mut c: Client = gw.connect(user).await;
    report(&mut c, HOME, now_ms()).await;
    let page = c.next_within(10).await.unwrap_or(Value::Null);
    if page["type"] != "nearby" {
        return Vec::new();
    }
    page["friends"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|e| e["user_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn after_redis_restarts_empty_friends_are_listed_again_from_their_next_report() {
    let redis = OwnService::start(Service::Redis).await;
    let url = format!("--redis-url=redis://{}/", redis.addr);
    let (gw, fanout) = system(&[&url], &[&url]).await;
    let load = background_load(&gw, 50, Duration::from_secs(30), &[]).await;
    let (a, b, mut ca, mut cb) = connected_friends(&gw, &gw).await;
    at_home(&mut cb).await;
    report(&mut ca, north(300.0), now_ms()).await;
    location_of(&mut cb, a, 10).await.expect("B sees A");
    let a_id = a.to_string();
    assert_eq!(
        first_page(&gw, b).await,
        std::slice::from_ref(&a_id),
        "listed before"
    );

    // Redis is lost and comes back empty.
    redis.kill().await;
    redis.up().await;
    let lost = first_page(&gw, b).await;
    assert!(lost.iter().all(|id| *id == a_id), "a wrong entry: {lost:?}");

    // Deliveries never needed it: A's next report reaches B at once.
    let next_report = Instant::now();
    report(&mut ca, north(250.0), now_ms()).await;
    location_of(&mut cb, a, 10)
        .await
        .expect("B sees A move after the restart");
    // And pages list A again from that report on (a report a second meanwhile, as a phone
    // would keep sending; the first write may meet the connection Redis dropped).
    let listed = loop {
        if first_page(&gw, b).await == [a_id.clone()] {
            break next_report.elapsed();
        }
        assert!(
            next_report.elapsed() < Duration::from_secs(5),
            "A not listed 5 s after their next report"
        );
        report(&mut ca, north(250.0), now_ms()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "redis restarted empty: A listed again {} ms after their next report",
        listed.as_millis()
    );
    let load = load.await.expect("the load");
    println!("redis: the load's counts: {}", load["counts"]);
    drop((ca, cb));
    fanout.stop().await;
    gw.stop().await;
}
