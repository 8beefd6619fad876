//! Doors before any handler: new connections are bounded per source address (429
//! `too_many_connections`, before any HTTP is read), a request whose body trickles in past
//! `NEARBY_HTTP_REQUEST_TIMEOUT` gets 408 and its connection is closed, and the admin port closes
//! half-sent requests as the client port does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nearby_common::http::{exchange_on, parse_headers, parse_response, request_text};
use nearby_testkit::client::{get, sample};
use nearby_testkit::{token, user};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

type TestGateway = nearby_testkit::TestGateway<nearby_gateway::GatewayStage>;

/// `GET /v1/openapi.json` on a connection from `source`: the status and the headers.
async fn get_from(source: Ipv4Addr, addr: SocketAddr) -> (u16, String, Vec<(String, String)>) {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("binds a loopback address");
    let stream = socket.connect(addr).await.expect("connects");
    let req = request_text("GET", "/v1/openapi.json", None, "");
    let answer = exchange_on(stream, &req, Duration::from_secs(10))
        .await
        .expect("an answer");
    let (status, body) = parse_response(&answer);
    (status, body, parse_headers(&answer))
}

#[tokio::test]
async fn new_connections_are_bounded_per_source_address() {
    let gw = TestGateway::start(&["--connect-rate-burst=5", "--connect-rate-per-sec=0.2"]).await;
    let (here, elsewhere) = (Ipv4Addr::new(127, 0, 2, 1), Ipv4Addr::new(127, 0, 2, 2));
    for i in 0..5 {
        assert_eq!(get_from(here, gw.addr).await.0, 200, "connection {i}");
    }
    let (status, body, headers) = get_from(here, gw.addr).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_connections"), "{body}");
    let retry = headers
        .iter()
        .find(|(n, _)| n == "retry-after")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .expect("a Retry-After");
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    // Another address is not counted with the first.
    assert_eq!(get_from(elsewhere, gw.addr).await.0, 200);
    let (_, page) = get(gw.admin, "/metrics").await;
    let refused = sample(
        &page,
        "nearby_gateway_connections_refused_total{reason=\"too_many_connections\"}",
    );
    assert_eq!(refused, Some(1), "{page}");
    gw.stop().await;
}

#[tokio::test]
async fn a_body_trickled_past_the_request_timeout_gets_408_and_the_connection_closes() {
    let gw = TestGateway::start(&["--http-request-timeout=1s"]).await;
    let mut slow = TcpStream::connect(gw.addr).await.expect("connect");
    let head = format!(
        "POST /v1/me/locations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"locations\":",
        token(user())
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(_))), "still open: {read:?}");
    let (status, body) = parse_response(&buf);
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("request_timeout"), "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn the_admin_port_closes_a_half_sent_request_too() {
    let gw = TestGateway::start(&["--http-header-timeout=1s"]).await;
    let mut slow = TcpStream::connect(gw.admin).await.expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(_))), "still open: {read:?}");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert_eq!(
        get(gw.admin, "/healthz").await.0,
        200,
        "a whole request is answered"
    );
    gw.stop().await;
}
