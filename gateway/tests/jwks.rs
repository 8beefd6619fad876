//! A gateway given an identity provider's JWKS URL (`NEARBY_JWT_JWKS_URL`) takes tokens signed
//! by the provider's keys, on the API and the socket, refuses tokens signed with the shared
//! secret, picks up a key added to the set without a restart, and counts its key set in
//! `/metrics`.

use std::time::Duration;

use nearby_gateway::GatewayStage;
use nearby_testkit::client::{get, sample};
use nearby_testkit::jwks::{JwksServer, TestKey};
use nearby_testkit::{Client, http, token, user};

type TestGateway = nearby_testkit::TestGateway<GatewayStage>;

#[tokio::test]
async fn the_providers_keys_let_users_in_and_the_shared_secret_no_longer_does() {
    let (rsa, ed) = (TestKey::rs256("rsa-2026"), TestKey::eddsa("ed-2027"));
    let server = JwksServer::start(std::slice::from_ref(&rsa)).await;
    let url = format!("--jwt-jwks-url={}", server.url());
    let gw = TestGateway::start(&[&url, "--jwt-jwks-min-refetch=100ms"]).await;
    let me = user();

    let (status, body) = http(gw.addr, "GET", "/v1/me", Some(&rsa.token(me)), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], me.to_string(), "{body}");
    let (status, body) = http(gw.addr, "GET", "/v1/me", Some(&token(me)), None).await;
    assert_eq!(status, 401, "a token signed with the shared secret: {body}");

    // The upgrade is accepted (connect fails the test otherwise) and a report is taken.
    let mut socket = Client::connect(gw.addr, &rsa.token(me)).await;
    socket.location(37.0, -122.0).await;
    assert!(socket.next_of("error", 1).await.is_none(), "no error frame");

    // The provider publishes a new key: tokens it signs get in without a restart.
    let (status, _) = http(gw.addr, "GET", "/v1/me", Some(&ed.token(me)), None).await;
    assert_eq!(status, 401, "not published yet");
    server.set_keys(&[rsa.clone(), ed.clone()]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, body) = http(gw.addr, "GET", "/v1/me", Some(&ed.token(me)), None).await;
    assert_eq!(status, 200, "{body}");

    let (_, page) = get(gw.admin, "/metrics").await;
    assert_eq!(sample(&page, "nearby_gateway_jwks_keys"), Some(2), "{page}");
    assert!(sample(&page, "nearby_gateway_jwks_fetches_total").unwrap_or(0) >= 2);
    gw.stop().await;
}
