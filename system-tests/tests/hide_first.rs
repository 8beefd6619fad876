//! A change that hides someone (an unfriend, sharing off) is announced before it is stored:
//! when the announcement fails (here the broker refuses the friendship topic's records, too big
//! for a limit set on purpose), the call answers 503 `unavailable` and nothing changed — never
//! "saved" while positions still flow. Once the topic takes records again, the same call goes
//! through, and from its answer on no position of the other reaches the user.

use std::time::Duration;

use nearby_system_tests::system;
use nearby_testkit::now_ms;
use nearby_testkit::pipeline::*;
use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};

/// Sets (or, with `None`, clears) the largest record the topic takes.
async fn max_message_bytes(topic: &str, bytes: Option<&str>) {
    let admin = nearby_common::kafka::admin_client(&nearby_testkit::brokers()).expect("admin");
    let mut config = AlterConfig::new(ResourceSpecifier::Topic(topic));
    if let Some(bytes) = bytes {
        config = config.set("max.message.bytes", bytes);
    }
    let results = admin
        .alter_configs(&[config], &AdminOptions::new())
        .await
        .expect("alter configs");
    for r in results {
        r.expect("config changed");
    }
    // Brokers apply topic configs asynchronously: give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn an_unfriend_or_sharing_off_that_cannot_be_announced_changes_nothing() {
    let (gw, fanout) = system(&[], &[]).await;
    let (a, b, mut ca, mut cb) = connected_friends(&gw, &gw).await;
    at_home(&mut cb).await;
    report(&mut ca, north(300.0), now_ms()).await;
    location_of(&mut cb, a, 10).await.expect("B sees A");
    let topic = format!("{}.friendship-events", gw.prefix);

    max_message_bytes(&topic, Some("16")).await;
    let unfriend = format!("/v1/me/friends/{b}");
    let (code, body) = gw.call(a, "DELETE", &unfriend, None).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let (code, body) = gw
        .call(a, "PUT", "/v1/me/sharing", Some(r#"{"enabled":false}"#))
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    // Nothing changed: still friends, still sharing.
    let (_, list) = gw.call(a, "GET", "/v1/me/friends", None).await;
    assert_eq!(list["friends"][0]["state"], "accepted", "{list}");
    assert_eq!(gw.call(a, "GET", "/v1/me", None).await.1["sharing"], true);

    // The topic takes records again: the unfriend goes through, and nothing of A follows.
    max_message_bytes(&topic, None).await;
    let (code, body) = gw.call(a, "DELETE", &unfriend, None).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("unfriended")),
        "{body}"
    );
    for north_m in [250.0, 200.0] {
        report(&mut ca, north(north_m), now_ms()).await;
    }
    let frames = drain(&mut cb, 3).await;
    assert!(
        !frames
            .iter()
            .any(|f| f["type"] == "friend_location" && f["user_id"] == a.to_string().as_str()),
        "{frames:?}"
    );
    drop((ca, cb));
    fanout.stop().await;
    gw.stop().await;
}
