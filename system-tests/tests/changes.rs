//! Friend and sharing changes take effect on open sockets at once, on the real stack: real
//! clients on one or two gateways, an in-process fanout, changes made over HTTP.

use nearby_system_tests::{TestFanout, TestGateway, start_fanout};
use nearby_testkit::pipeline::*;
use nearby_testkit::{Client, now_ms, user};
use serde_json::{Value, json};

/// One or two gateways and a fanout on one prefix and keyspace.
struct System {
    g1: TestGateway,
    g2: Option<TestGateway>,
    fanout: TestFanout,
}

impl System {
    async fn start(two_gateways: bool) -> System {
        let g1 = TestGateway::start(&[]).await;
        let g2 = if two_gateways {
            Some(TestGateway::start_on(&g1.prefix, &g1.keyspace, "gw-b", &[]).await)
        } else {
            None
        };
        let fanout = start_fanout(&g1.prefix, &g1.keyspace, &[]).await;
        System { g1, g2, fanout }
    }

    /// Where B (the second person of each test) is connected and calls.
    fn b_side(&self) -> &TestGateway {
        self.g2.as_ref().unwrap_or(&self.g1)
    }

    async fn stop(self) {
        self.fanout.stop().await;
        if let Some(g2) = self.g2 {
            g2.stop().await;
        }
        self.g1.stop().await;
    }
}

async fn name(gw: &TestGateway, user: i64, name: &str) {
    let (status, body) = gw
        .call(
            user,
            "PATCH",
            "/v1/me",
            Some(&json!({"name": name}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A at HOME on g1 and B 2 km north on B's side, both connected with a first page; when they
/// are friends, each has seen the other.
async fn connected_pair(sys: &System, a: i64, b: i64, friends: bool) -> (Client, Client) {
    let mut ca = sys.g1.connect(a).await;
    let mut cb = sys.b_side().connect(b).await;
    at_home(&mut ca).await;
    report(&mut cb, north(2_000.0), now_ms()).await;
    cb.next_of("nearby", 10).await.expect("B's first page");
    if friends {
        location_of(&mut ca, b, 10).await.expect("A sees B");
        location_of(&mut cb, a, 10).await.expect("B sees A");
    }
    (ca, cb)
}

fn ids(frames: &[Value], kind: &str) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == kind)
        .map(|f| f["user_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn nearby_ids(gw: &TestGateway, user: i64) -> Vec<String> {
    let (status, page) = gw.call(user, "GET", "/v1/me/nearby", None).await;
    assert_eq!(status, 200, "{page}");
    page["friends"]
        .as_array()
        .expect("friends")
        .iter()
        .map(|e| e["user_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Request, accept, unfriend, with both sides connected.
async fn accept_and_unfriend(two_gateways: bool) {
    let sys = System::start(two_gateways).await;
    let (a, b) = (user(), user());
    name(&sys.g1, a, "Ana").await;
    name(sys.b_side(), b, "Ben").await;
    let (mut ca, mut cb) = connected_pair(&sys, a, b, false).await;

    // A request alone shares nothing.
    let (_, r) = sys
        .g1
        .call(a, "PUT", &format!("/v1/me/friends/{b}"), None)
        .await;
    assert_eq!(r["status"], "requested");
    report(&mut ca, north(50.0), now_ms()).await;
    assert!(ids(&drain(&mut cb, 1).await, "friend_location").is_empty());

    // Accepting: each sees the other at once, with name and distance, no report needed.
    let (_, r) = sys
        .b_side()
        .call(b, "PUT", &format!("/v1/me/friends/{a}"), None)
        .await;
    assert_eq!(r["status"], "accepted");
    let ben = location_of(&mut ca, b, 5).await.expect("A sees B at once");
    assert_eq!(ben["name"], "Ben");
    assert_distance(&ben, north(50.0), north(2_000.0));
    let ana = location_of(&mut cb, a, 5).await.expect("B sees A at once");
    assert_eq!(ana["name"], "Ana");
    assert_distance(&ana, north(50.0), north(2_000.0));
    assert_eq!(nearby_ids(sys.b_side(), b).await, [a.to_string()]);

    // Unfriending: both get friend_left/unfriended at once, and nothing after.
    let (status, r) = sys
        .g1
        .call(a, "DELETE", &format!("/v1/me/friends/{b}"), None)
        .await;
    assert_eq!((status, &r["status"]), (200, &json!("unfriended")));
    let left = left_of(&mut cb, a, 5).await.expect("B told");
    assert_eq!(left["reason"], "unfriended");
    let left = left_of(&mut ca, b, 5).await.expect("A told");
    assert_eq!(left["reason"], "unfriended");
    report(&mut ca, north(100.0), now_ms()).await;
    report(&mut cb, north(1_900.0), now_ms()).await;
    let (after_a, after_b) = tokio::join!(drain(&mut ca, 2), drain(&mut cb, 2));
    assert!(ids(&after_a, "friend_location").is_empty(), "{after_a:?}");
    assert!(ids(&after_b, "friend_location").is_empty(), "{after_b:?}");
    assert!(nearby_ids(sys.b_side(), b).await.is_empty());
    sys.stop().await;
}

#[tokio::test]
async fn accepting_shows_both_at_once_and_unfriending_tells_both() {
    accept_and_unfriend(false).await;
}

#[tokio::test]
async fn accepting_and_unfriending_work_across_two_gateways() {
    accept_and_unfriend(true).await;
}

/// Sharing off and on again, with both sides connected and a far friend who never had A listed.
async fn sharing_off_and_on(two_gateways: bool) {
    let sys = System::start(two_gateways).await;
    let (a, b, far) = (user(), user(), user());
    befriend(&sys.g1, a, b).await;
    befriend(&sys.g1, a, far).await;
    let mut cfar = sys.g1.connect(far).await;
    report(&mut cfar, north(30_000.0), now_ms()).await;
    cfar.next_of("nearby", 10).await.expect("far's first page");
    let (mut ca, mut cb) = connected_pair(&sys, a, b, true).await;

    let (status, me) = sys
        .g1
        .call(a, "PUT", "/v1/me/sharing", Some(r#"{"enabled": false}"#))
        .await;
    assert_eq!((status, &me["sharing"]), (200, &json!(false)));
    let left = left_of(&mut cb, a, 5).await.expect("B told A left");
    assert_eq!(left["reason"], "sharing_off");
    let left = left_of(&mut ca, b, 5).await.expect("A's own list empties");
    assert_eq!(left["reason"], "sharing_off");

    // While off, no report of A's reaches anyone, and A sees nobody.
    report(&mut ca, north(10.0), now_ms()).await;
    report(&mut cb, north(1_500.0), now_ms()).await;
    let (after_a, after_b, after_far) =
        tokio::join!(drain(&mut ca, 2), drain(&mut cb, 2), drain(&mut cfar, 1));
    assert!(ids(&after_b, "friend_location").is_empty(), "{after_b:?}");
    assert!(ids(&after_a, "friend_location").is_empty(), "{after_a:?}");
    assert!(
        after_far.is_empty(),
        "the far friend never had A: {after_far:?}"
    );
    assert!(nearby_ids(sys.b_side(), b).await.is_empty());
    assert!(nearby_ids(&sys.g1, a).await.is_empty());

    // On again: A appears to B, and B to A, at once.
    let (status, _) = sys
        .g1
        .call(a, "PUT", "/v1/me/sharing", Some(r#"{"enabled": true}"#))
        .await;
    assert_eq!(status, 200);
    let back = location_of(&mut cb, a, 5).await.expect("B sees A again");
    assert_distance(&back, north(10.0), north(1_500.0));
    location_of(&mut ca, b, 5).await.expect("A sees B again");
    assert_eq!(nearby_ids(sys.b_side(), b).await, [a.to_string()]);
    assert!(drain(&mut cfar, 1).await.is_empty());
    sys.stop().await;
}

#[tokio::test]
async fn sharing_off_tells_friends_at_once_and_on_brings_you_back() {
    sharing_off_and_on(false).await;
}

#[tokio::test]
async fn sharing_off_and_on_work_across_two_gateways() {
    sharing_off_and_on(true).await;
}

#[tokio::test]
async fn a_new_name_shows_in_the_next_page_and_delivery_on_another_gateway() {
    let sys = System::start(true).await;
    let (a, b) = (user(), user());
    befriend(&sys.g1, a, b).await;
    name(&sys.g1, a, "Ana").await;
    let (mut ca, mut cb) = connected_pair(&sys, a, b, true).await;
    // B's gateway has A's profile cached now; the change must reach it.
    let page = sys.b_side().call(b, "GET", "/v1/me/nearby", None).await.1;
    assert_eq!(page["friends"][0]["name"], "Ana");
    name(&sys.g1, a, "Ana Maria").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let page = sys.b_side().call(b, "GET", "/v1/me/nearby", None).await.1;
        if page["friends"][0]["name"] == "Ana Maria" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stale name: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    report(&mut ca, north(20.0), now_ms()).await;
    let moved = location_of(&mut cb, a, 5).await.expect("delivery");
    assert_eq!(moved["name"], "Ana Maria");
    drop(ca);
    sys.stop().await;
}

#[tokio::test]
async fn nobody_changes_anothers_friendships_or_sharing() {
    let sys = System::start(false).await;
    let (a, b, c) = (user(), user(), user());
    befriend(&sys.g1, a, b).await;
    let (mut ca, mut cb) = connected_pair(&sys, a, b, true).await;
    let mut cc = sys.g1.connect(c).await;
    report(&mut cc, north(300.0), now_ms()).await;

    // C can only act on C's own friendships: there is no A–B call for C to make.
    let (status, err) = sys
        .g1
        .call(c, "DELETE", &format!("/v1/me/friends/{a}"), None)
        .await;
    assert_eq!((status, &err["error"]["code"]), (404, &json!("not_found")));
    for path in [
        format!("/v1/users/{a}/friends/{b}"),
        format!("/v1/users/{a}/sharing"),
    ] {
        assert_eq!(sys.g1.call(c, "DELETE", &path, None).await.0, 404);
        assert_eq!(
            sys.g1
                .call(c, "PUT", &path, Some(r#"{"enabled": false}"#))
                .await
                .0,
            404
        );
    }
    // C asks A: a request alone shares nothing, either way.
    assert_eq!(
        sys.g1
            .call(c, "PUT", &format!("/v1/me/friends/{a}"), None)
            .await
            .1["status"],
        "requested"
    );
    report(&mut cc, north(200.0), now_ms()).await;
    report(&mut ca, north(10.0), now_ms()).await;
    // A and B still see each other; C sees and is seen by nobody.
    location_of(&mut cb, a, 5).await.expect("B still sees A");
    let (seen_a, seen_c) = tokio::join!(drain(&mut ca, 1), drain(&mut cc, 1));
    assert!(!ids(&seen_a, "friend_location").contains(&c.to_string()));
    assert!(ids(&seen_c, "friend_location").is_empty(), "{seen_c:?}");
    assert!(nearby_ids(&sys.g1, c).await.is_empty());
    sys.stop().await;
}
