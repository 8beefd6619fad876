//! The gateway binary's one shutdown path, with real signals: SIGTERM drains (readiness off,
//! `reconnect` to each client, its reports still taken until it closes, then exit 0); a second
//! signal stops at once (sockets closed with 1001, exit 0).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use support::{SECRET, brokers, create_topics, http, unique, user};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// A gateway process on free ports; killed if the test ends without it having stopped.
struct GatewayProcess {
    child: Child,
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    log: std::path::PathBuf,
}

fn free_port() -> std::net::SocketAddr {
    // Bound, read and released: another process could take it in between, which would make
    // the gateway fail to start and the test say so.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

impl GatewayProcess {
    /// Starts a gateway whose drain takes 1 s and gives clients `grace` to close.
    async fn start(grace: &str) -> Self {
        let prefix = unique("test.");
        create_topics(&brokers(), &prefix).await;
        let (addr, admin) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!("{prefix}-gateway.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_nearby-gateway"))
            .args([
                "--gateway-id=gw-sig",
                &format!("--topic-prefix={prefix}"),
                &format!("--cql-keyspace={}", unique("test_sig_")),
                &format!("--jwt-secret={SECRET}"),
                &format!("--listen={addr}"),
                &format!("--admin-listen={admin}"),
                "--drain-window=1s",
                &format!("--drain-grace={grace}"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("gateway starts");
        let mut this = Self {
            child,
            addr,
            admin,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        // The admin port opens once the gateway has bound it; until then, connect is refused.
        while tokio::net::TcpStream::connect(this.admin).await.is_err()
            || http(this.admin, "GET", "/readyz", None, None).await.0 != 200
        {
            assert!(
                this.child.try_wait().expect("wait").is_none(),
                "gateway exited; log: {}",
                this.log.display()
            );
            assert!(Instant::now() < deadline, "gateway not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        this
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// The exit status, within `secs`.
    async fn exited_within(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway still running {secs} s after the signal; log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_drains_then_exits_cleanly() {
    let mut gw = GatewayProcess::start("10s").await;
    let me = user();
    let url = format!("ws://{}/v1/ws?access_token={}", gw.addr, support::token(me));
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connects");
    let mut client = support::Client { ws };
    client.location(37.77, -122.42).await;
    client.next_of("nearby", 10).await.expect("first page");

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
    let status = gw.exited_within(15).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_second_signal_stops_at_once() {
    // A minute's grace: only the second signal can end it within the test's bounds.
    let mut gw = GatewayProcess::start("60s").await;
    let url = format!(
        "ws://{}/v1/ws?access_token={}",
        gw.addr,
        support::token(user())
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connects");
    let mut client = support::Client { ws };
    client.location(37.77, -122.42).await;
    client.next_of("nearby", 10).await.expect("first page");
    gw.signal("TERM");
    client.next_of("reconnect", 10).await.expect("reconnect");
    // The client stays (a stuck one); an operator's second signal cuts the grace short.
    gw.signal("INT");
    assert_eq!(client.close_code(5).await, Some(1001));
    let status = gw.exited_within(10).await;
    assert!(status.success(), "exit status {status}");
}
