//! Friend calls have a budget of their own per user (429 `rate_limited` with `Retry-After`),
//! and the pending requests one person holds are capped (409 `too_many_pending`), even when
//! many accounts ask at once: a declined, withdrawn or accepted request frees its place.

use futures::future::join_all;
use nearby_testkit::{http_raw, token, user};
use serde_json::Value;

type TestGateway = nearby_testkit::TestGateway<nearby_gateway::GatewayStage>;

/// A call as `who`: the status and the body as JSON (or a string).
async fn call(gw: &TestGateway, who: i64, method: &str, path: &str) -> (u16, Value) {
    let r = http_raw(gw.addr, method, path, Some(&token(who)), None).await;
    let body = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body));
    (r.status, body)
}

/// Creates the profiles of `users` (a first call does).
async fn profiles(gw: &TestGateway, users: &[i64]) {
    for &u in users {
        assert_eq!(call(gw, u, "GET", "/v1/me").await.0, 200);
    }
}

#[tokio::test]
async fn friend_calls_have_a_budget_per_user() {
    let gw = TestGateway::start(&[
        "--friend-request-rate-burst=3",
        "--friend-request-rate-per-sec=0.2",
    ])
    .await;
    let me = user();
    let others: Vec<i64> = (0..5).map(|_| user()).collect();
    profiles(&gw, &others).await;
    for &o in &others[..3] {
        let (status, body) = call(&gw, me, "PUT", &format!("/v1/me/friends/{o}")).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("requested")));
    }
    let refused = http_raw(
        gw.addr,
        "PUT",
        &format!("/v1/me/friends/{}", others[3]),
        Some(&token(me)),
        None,
    )
    .await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.body.contains("rate_limited"), "{}", refused.body);
    assert!(refused.header("retry-after").is_some());
    // The refused request was not written: the other side has no request from me.
    let (_, list) = call(&gw, others[3], "GET", "/v1/me/friends").await;
    assert_eq!(list["friends"].as_array().map(Vec::len), Some(0), "{list}");
    // Another user's budget is their own.
    let (status, _) = call(&gw, others[4], "PUT", &format!("/v1/me/friends/{me}")).await;
    assert_eq!(status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn pending_requests_are_capped_even_when_many_accounts_ask_at_once() {
    let gw = TestGateway::start(&["--max-pending-requests=3"]).await;
    let target = user();
    let askers: Vec<i64> = (0..8).map(|_| user()).collect();
    profiles(&gw, &[target]).await;
    profiles(&gw, &askers).await;
    let path = format!("/v1/me/friends/{target}");
    let answers = join_all(askers.iter().map(|&a| call(&gw, a, "PUT", &path))).await;
    let requested: Vec<i64> = askers
        .iter()
        .zip(&answers)
        .filter(|(_, (s, b))| *s == 200 && b["status"] == "requested")
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(requested.len(), 3, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        let code = body["error"]["code"].as_str().unwrap_or_default();
        // `conflict` is a contended attempt that gave up (the caller may repeat it).
        assert!(
            *status == 409 && (code == "too_many_pending" || code == "conflict"),
            "{status} {body}"
        );
    }
    let incoming = |list: &Value| {
        list["friends"]
            .as_array()
            .map(|a| a.iter().filter(|f| f["state"] == "incoming").count())
    };
    let (_, list) = call(&gw, target, "GET", "/v1/me/friends").await;
    assert_eq!(incoming(&list), Some(3), "{list}");

    // Held: one more is refused.
    let late = askers.iter().find(|a| !requested.contains(a)).copied();
    let late = late.expect("an asker left out");
    let (status, body) = call(&gw, late, "PUT", &path).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("too_many_pending"))
    );
    // Declining one frees its place.
    let declined = format!("/v1/me/friends/{}", requested[0]);
    assert_eq!(call(&gw, target, "DELETE", &declined).await.0, 200);
    let (status, body) = call(&gw, late, "PUT", &path).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("requested")),
        "{body}"
    );
    // Accepting one frees its place too; withdrawing likewise.
    let accepted = format!("/v1/me/friends/{}", requested[1]);
    assert_eq!(call(&gw, target, "PUT", &accepted).await.0, 200);
    assert_eq!(call(&gw, requested[2], "DELETE", &path).await.0, 200);
    let (_, list) = call(&gw, target, "GET", "/v1/me/friends").await;
    assert_eq!(incoming(&list), Some(1), "{list}");
    gw.stop().await;
}
