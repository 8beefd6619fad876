//! Limits on the client port: sockets per user (429 `too_many_sockets` beyond, a slot back
//! when a socket closes), the frame budget counting every frame, binary, ping and pong
//! included, so no frame type floods the gateway for free, and the HTTP header timeout that
//! closes half-sent requests.

use futures::SinkExt;
use nearby_testkit::client::{get, sample};
use nearby_testkit::{Client, token, user};
use tokio_tungstenite::tungstenite::Message;

type TestGateway = nearby_testkit::TestGateway<nearby_gateway::GatewayStage>;

/// Opens `/v1/ws` for `user`; the refusal's status and body when it is refused.
async fn try_connect(addr: std::net::SocketAddr, user: i64) -> Result<Client, (u16, String)> {
    let url = format!("ws://{addr}/v1/ws?access_token={}", token(user));
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(Client { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("connect: {e}"),
    }
}

#[tokio::test]
async fn a_user_holds_at_most_the_limit_of_sockets_and_gets_a_slot_back_on_close() {
    let gw = TestGateway::start(&["--max-sockets-per-user=2"]).await;
    let (u, other) = (user(), user());
    let mut first = try_connect(gw.addr, u).await.expect("first");
    let _second = try_connect(gw.addr, u).await.expect("second");
    let (status, body) = try_connect(gw.addr, u).await.expect_err("a third");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_sockets"), "{body}");
    // Another user is not counted with the first.
    let _others = try_connect(gw.addr, other).await.expect("another user's");
    // Closing one gives its slot back (once its session has ended).
    first.ws.close(None).await.expect("close");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let third = loop {
        match try_connect(gw.addr, u).await {
            Ok(c) => break c,
            Err((429, _)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the freed slot was not given back: {e:?}"),
        }
    };
    drop(third);
    let (_, metrics) = get(gw.admin, "/metrics").await;
    let refused = sample(
        &metrics,
        "nearby_gateway_upgrades_refused_total{reason=\"too_many_sockets\"}",
    );
    assert!(refused >= Some(1), "{metrics}");
    gw.stop().await;
}

#[tokio::test]
async fn pings_and_binary_frames_count_against_the_frame_budget_and_a_flood_of_them_is_closed() {
    let gw =
        TestGateway::start(&["--frame-rate=5", "--frame-burst=5", "--flood-tolerance=3"]).await;
    let mut c = gw.connect(user()).await;
    // Five binary frames spend the burst; control pings then go over it.
    for _ in 0..5 {
        c.ws.send(Message::binary(vec![1u8, 2, 3]))
            .await
            .expect("send");
    }
    for _ in 0..15 {
        c.ws.send(Message::Ping(vec![7u8].into()))
            .await
            .expect("send");
    }
    let (mut binary, mut limited, mut flood) = (0, 0, 0);
    while let Some(v) = c.next_within(3).await {
        match v["code"].as_str() {
            Some("binary_not_supported") => binary += 1,
            Some("rate_limited") => limited += 1,
            Some("flood") => {
                flood += 1;
                break;
            }
            _ => panic!("unexpected {v}"),
        }
    }
    assert_eq!((binary, limited, flood), (5, 3, 1));
    assert_eq!(c.close_code(5).await, Some(1008));
    gw.stop().await;
}

#[tokio::test]
async fn a_half_sent_request_is_closed_after_the_header_timeout_and_a_whole_one_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::start(&["--http-header-timeout=1s"]).await;
    let mut slow = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Closed by the gateway well before the 10 s this test waits at most.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        slow.read_to_end(&mut buf),
    )
    .await;
    assert!(matches!(read, Ok(Ok(_))), "still open: {read:?}");
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "answered"
    );
    // The same request sent whole, on time, is answered.
    let (status, _) = get(gw.addr, "/v1/openapi.json").await;
    assert_eq!(status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn http_calls_are_limited_per_user_with_retry_after_and_sharing_off_always_goes_through() {
    let gw = TestGateway::start(&[
        "--api-rate-burst=6",
        "--api-rate-per-sec=0.5",
        "--sharing-rate-burst=1",
        "--sharing-rate-per-sec=0.1",
    ])
    .await;
    let (u, other) = (user(), user());
    let call = |who: i64, method: &'static str, path: &'static str, body: Option<&'static str>| {
        let addr = gw.addr;
        async move { nearby_testkit::http_raw(addr, method, path, Some(&token(who)), body).await }
    };
    // Sharing: on once (the burst), on again refused, off always taken.
    let on = Some(r#"{"enabled": true}"#);
    let off = Some(r#"{"enabled": false}"#);
    assert_eq!(call(u, "PUT", "/v1/me/sharing", on).await.status, 200);
    let refused = call(u, "PUT", "/v1/me/sharing", on).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.body.contains("rate_limited"), "{}", refused.body);
    assert_eq!(call(u, "PUT", "/v1/me/sharing", off).await.status, 200);
    // Three calls so far; three more spend the burst of six, the seventh is refused.
    for _ in 0..3 {
        assert_eq!(call(u, "GET", "/v1/me", None).await.status, 200);
    }
    let refused = call(u, "GET", "/v1/me", None).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.body.contains("rate_limited"), "{}", refused.body);
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another user is not counted with the first.
    assert_eq!(call(other, "GET", "/v1/me", None).await.status, 200);
    gw.stop().await;
}
