//! `nearby-admin drain` against a real gateway, run in-process on port 0 with its own topics
//! and keyspace on the running stack: the command reports the drain as the gateway answered it,
//! with `--wait` follows it and returns once the gateway has stopped; a closed port is a clear
//! error.

use std::time::Duration;

use futures::StreamExt;
use nearby_system_tests::TestGateway;
use nearby_testkit::process::{binary, stdout};
use nearby_testkit::{token, topic_prefix, topics, unique, user};
use tokio_tungstenite::tungstenite::Message;

/// A gateway running in-process, as `nearby-gateway` runs it, on `prefix` and `keyspace`.
async fn start_gateway(prefix: &str, keyspace: &str) -> TestGateway {
    // The topics `nearby-admin topics create` would have made (the gateway makes its delivery
    // topic itself).
    topics::create_topics(prefix, 1).await;
    TestGateway::start_on(
        prefix,
        keyspace,
        "gw-drain",
        // The gateway's own default window; the command asks for another.
        &["--drain-window=30s", "--drain-grace=5s"],
    )
    .await
}

/// A client that behaves as the protocol asks: on `reconnect` it closes its socket. Returns
/// whether it got the `reconnect`.
async fn client(addr: std::net::SocketAddr, user: i64) -> tokio::task::JoinHandle<bool> {
    let url = format!("ws://{addr}/v1/ws?access_token={}", token(user));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("socket connects");
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON frame");
                if v["type"] == "reconnect" {
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                    return true;
                }
            }
        }
        false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_with_wait_reports_the_drain_and_returns_once_the_gateway_stopped() {
    let prefix = topic_prefix();
    let keyspace = unique("test_admin_");
    let gw = start_gateway(&prefix, &keyspace).await;
    let base = user();
    let clients = vec![client(gw.addr, base).await, client(gw.addr, base + 1).await];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gw.gw.registry.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sockets not registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let admin_addr = gw.admin.to_string();
    let started = tokio::time::Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(binary("nearby-admin"))
            .args([
                "drain",
                "--gateway-admin",
                &admin_addr,
                "--window",
                "1s",
                "--wait",
                "--admin-token",
                nearby_testkit::ADMIN_TOKEN,
            ])
            .output(),
    )
    .await
    .expect("nearby-admin drain --wait returned within 60 s")
    .expect("nearby-admin runs");
    let took = started.elapsed();
    let text = stdout(&out);

    // What the gateway answered: the two sockets, the asked window (not the gateway's 30 s
    // default), its grace.
    assert!(
        text.lines().next().is_some_and(|l| l
            == format!(
                "gateway at {admin_addr} is draining: 2 connections, reconnects spread over 1s, \
                 then up to 5s each for the client to close"
            )),
        "{text}"
    );
    assert!(
        text.lines().last().is_some_and(|l| l.starts_with(&format!(
            "gateway at {admin_addr} has stopped (its admin port no longer answers) after "
        ))),
        "{text}"
    );
    // Both clients closed within the window: far sooner than the window and grace together
    // (the gateway's latest stop), and not before the gateway had stopped.
    assert!(took < Duration::from_secs(6), "took {took:?}:\n{text}");
    for c in clients {
        assert!(c.await.expect("client task"), "a client got no reconnect");
    }
    assert!(
        tokio::net::TcpStream::connect(gw.admin).await.is_err(),
        "the admin port still answers"
    );
    tokio::time::timeout(Duration::from_secs(10), gw.task)
        .await
        .expect("the gateway's run ended")
        .expect("joins")
        .expect("the gateway ran cleanly");
    assert_eq!(gw.gw.registry.len(), 0);
    assert_eq!(gw.gw.metrics.reconnects_sent.get(), 2);

    topics::delete(&[
        &format!("{prefix}.location-updates"),
        &format!("{prefix}.friendship-events"),
        &format!("{prefix}.deliveries.gw-drain"),
    ])
    .await;
}

#[test]
fn a_closed_port_is_a_clear_error() {
    // A port that was just free: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    for wait in [false, true] {
        let mut args = vec![
            "drain".to_owned(),
            "--gateway-admin".to_owned(),
            addr.to_string(),
        ];
        if wait {
            args.push("--wait".to_owned());
        }
        let out = std::process::Command::new(binary("nearby-admin"))
            .args(&args)
            .output()
            .expect("runs");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("no gateway admin port at {addr}")),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
}
