//! The admin port's calls that change something need the admin token: without it, or with a
//! wrong one, `POST /drain` answers 401 and nothing drains; a gateway with no admin token
//! configured answers 403 to everyone. `/healthz` and `/readyz` stay open.

type TestGateway = nearby_testkit::TestGateway<nearby_gateway::GatewayStage>;
use nearby_testkit::{ADMIN_TOKEN, http};

#[tokio::test]
async fn a_drain_needs_the_admin_token() {
    let gw = TestGateway::start(&[]).await;
    for token in [None, Some("not-the-token"), Some("")] {
        let (status, body) = http(gw.admin, "POST", "/drain?window=1s", token, None).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &serde_json::json!("unauthorized")),
            "{body}"
        );
    }
    let (status, body) = http(gw.admin, "GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "still serving, not draining: {body}");
    let (status, body) = http(
        gw.admin,
        "POST",
        "/drain?window=1s",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["draining"], true);
    // With no socket to drain, it stops at once.
    gw.stop().await;
}

#[tokio::test]
async fn with_no_admin_token_configured_nobody_can_drain() {
    // An empty token is none: the later setting overrides the test kit's.
    let gw = TestGateway::start(&["--admin-token="]).await;
    for token in [None, Some(ADMIN_TOKEN)] {
        let (status, body) = http(gw.admin, "POST", "/drain", token, None).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &serde_json::json!("forbidden")),
            "{body}"
        );
    }
    let (status, _) = http(gw.admin, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    let (status, _) = http(gw.admin, "GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "not draining");
    gw.stop().await;
}
