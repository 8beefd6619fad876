//! The gateway binary's one shutdown path, with real signals: SIGTERM drains (readiness off,
//! `reconnect` to each client, its reports still taken until it closes, then exit 0); a second
//! signal stops at once (sockets closed with 1001, exit 0).

use std::time::Duration;

use futures::StreamExt;
use nearby_testkit::process::{Process, System};
use nearby_testkit::{Client, http, token, user};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// A gateway process whose drain takes 1 s and gives clients `grace` to close.
async fn gateway(grace: &str) -> (Process, std::net::SocketAddr) {
    let drain = [
        "--drain-window=1s".to_owned(),
        format!("--drain-grace={grace}"),
    ];
    System::new().await.gateway("gw-sig", &drain).await
}

/// A client of the gateway at `addr` that has reported and has its first page.
async fn reporting_client(addr: std::net::SocketAddr) -> Client {
    let mut client = Client::connect(addr, &token(user())).await;
    client.location(37.77, -122.42).await;
    client.next_of("nearby", 10).await.expect("first page");
    client
}

#[tokio::test]
async fn sigterm_drains_then_exits_cleanly() {
    let (mut gw, addr) = gateway("10s").await;
    let mut client = reporting_client(addr).await;

    gw.signal("TERM");
    let reconnect = client.next_of("reconnect", 10).await.expect("reconnect");
    assert_eq!(reconnect["reason"], "draining");
    let (status, line) = http(gw.admin, "GET", "/readyz", None, None).await;
    assert_eq!(status, 503, "{line}");
    // Until the client closes, its reports are still taken: no error comes back.
    client.location(37.771, -122.42).await;
    client
        .send_json(json!({"type": "ping", "id": "last"}))
        .await;
    let pong = client.next_of("pong", 5).await.expect("pong");
    assert_eq!(pong["id"], "last");
    client.ws.close(None).await.expect("close");
    while let Some(Ok(msg)) = client.ws.next().await {
        assert!(
            !matches!(msg, Message::Text(ref t) if t.contains("\"error\"")),
            "{msg:?}"
        );
    }
    let status = gw.exited_within(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_second_signal_stops_at_once() {
    // A minute's grace: only the second signal can end it within the test's bounds.
    let (mut gw, addr) = gateway("60s").await;
    let mut client = reporting_client(addr).await;
    gw.signal("TERM");
    client.next_of("reconnect", 10).await.expect("reconnect");
    // The client stays (a stuck one); an operator's second signal cuts the grace short.
    gw.signal("INT");
    assert_eq!(client.close_code(5).await, Some(1001));
    let status = gw.exited_within(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
}
