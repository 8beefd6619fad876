//! Starts a real gateway in-process on port 0 against the running stack, with its own topic
//! prefix and keyspace, and gives tests WebSocket and HTTP clients.

#![allow(dead_code)]

pub mod process;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::{SinkExt, StreamExt};
use nearby_gateway::{Gateway, GatewayConfig};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "gateway-test-secret";

/// A fresh name: `prefix` and 12 random hex digits.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..12])
}

/// A random user id.
pub fn user() -> i64 {
    i64::from(rand::random::<u32>()) + 1_000
}

/// A token for `user`.
pub fn token(user: i64) -> String {
    nearby_common::auth::mint_hs256(SECRET.as_bytes(), user, Duration::from_secs(600))
}

pub fn now_ms() -> i64 {
    nearby_ingest::now_ms()
}

/// The location and friendship topics under `prefix` (`nearby-admin topics create` makes them
/// in a deployment; tests make their own), 3 partitions each.
pub async fn create_topics(brokers: &str, prefix: &str) {
    let admin = nearby_common::kafka::admin_client(brokers).expect("admin");
    nearby_common::kafka::ensure_topics(
        &admin,
        &[
            nearby_common::kafka::TopicSpec {
                name: format!("{prefix}.location-updates"),
                partitions: 3,
                replication: 1,
                retention: Duration::from_secs(3600),
            },
            nearby_common::kafka::TopicSpec {
                name: format!("{prefix}.friendship-events"),
                partitions: 3,
                replication: 1,
                retention: Duration::from_secs(3600),
            },
        ],
    )
    .await
    .expect("location topic");
}

/// A running gateway.
pub struct TestGateway {
    pub gw: Arc<Gateway>,
    pub addr: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub prefix: String,
    pub keyspace: String,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestGateway {
    /// Starts a gateway with `extra` command-line settings on a fresh prefix and keyspace.
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_on(&unique("test."), &unique("test_gw_"), "gw-a", extra).await
    }

    /// Starts a gateway with the given prefix, keyspace and id.
    pub async fn start_on(prefix: &str, keyspace: &str, id: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "nearby-gateway".to_owned(),
            format!("--gateway-id={id}"),
            format!("--topic-prefix={prefix}"),
            format!("--cql-keyspace={keyspace}"),
            format!("--jwt-secret={SECRET}"),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let config = GatewayConfig::parse_from(args);
        create_topics(&config.stack.kafka_brokers, prefix).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let admin_addr = admin_listener.local_addr().expect("addr");
        let gw = Gateway::build(config).await.expect("gateway builds");
        let task = tokio::spawn(gw.clone().run(
            nearby_common::stage::Listeners {
                client: Some(listener),
                admin: admin_listener,
            },
            nearby_common::shutdown::Shutdown::new(),
        ));
        let this = Self {
            gw,
            addr,
            admin: admin_addr,
            prefix: prefix.to_owned(),
            keyspace: keyspace.to_owned(),
            task,
        };
        this.wait_ready().await;
        this
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, _) = http(self.admin, "GET", "/readyz", None, None).await;
            if status == 200 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a socket for `user`.
    pub async fn connect(&self, user: i64) -> Client {
        let url = format!("ws://{}/v1/ws?access_token={}", self.addr, token(user));
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connects");
        Client { ws }
    }

    /// An HTTP call on the client port as `user`.
    pub async fn call(
        &self,
        user: i64,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        http(self.addr, method, path, Some(&token(user)), body).await
    }

    /// Stops the gateway and waits for it.
    pub async fn stop(self) {
        self.gw.shutdown.cancel();
        self.task
            .await
            .expect("joins")
            .expect("gateway ran cleanly");
    }
}

/// A minimal HTTP/1.1 client (one request per connection), so tests see exactly what a client sends.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, body) = nearby_common::http::request(
        addr,
        method,
        path,
        token,
        body.unwrap_or(""),
        Duration::from_secs(60),
    )
    .await
    .expect("an HTTP answer");
    let body = body.as_str();
    let value = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (status, value)
}

/// A WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn send_json(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws
            .send(Message::text(s.to_owned()))
            .await
            .expect("send");
    }

    pub async fn location(&mut self, lat: f64, lon: f64) {
        self.send_json(
            serde_json::json!({"type": "location", "lat": lat, "lon": lon, "ts": now_ms()}),
        )
        .await;
    }

    /// The next JSON frame, within `secs`; `None` on timeout. Panics on close.
    pub async fn next_within(&mut self, secs: u64) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(&t).expect("JSON frame"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    }

    /// The next frame of `kind`, skipping others, within `secs`.
    pub async fn next_of(&mut self, kind: &str, secs: u64) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_secs()
                .max(1);
            let v = self.next_within(left).await?;
            if v["type"] == kind {
                return Some(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn close_code(&mut self, secs: u64) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?
            {
                Some(Ok(Message::Close(Some(f)))) => return Some(u16::from(f.code)),
                Some(Ok(Message::Close(None))) | None => return None,
                Some(Err(tungstenite::Error::ConnectionClosed)) => return None,
                _ => continue,
            }
        }
    }
}

/// An answer with its headers, as [`http_raw`] reads it.
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Like [`http`], but keeps the headers and the body's text (chunked bodies are decoded).
pub async fn http_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    // The body, a chunked one decoded, as the project's client reads it.
    let (_, body) = nearby_common::http::parse_response(&buf);
    RawResponse {
        status,
        headers,
        body,
    }
}

/// The stack's Kafka (`NEARBY_KAFKA_BROKERS`, or the local default).
pub fn brokers() -> String {
    std::env::var("NEARBY_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Produces `values` to `topic` in order, without keys, each acked before the next.
pub async fn produce_values(topic: &str, values: &[Vec<u8>]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = nearby_common::kafka::producer_config(&brokers())
        .create()
        .expect("producer");
    for value in values {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(value),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produced");
    }
}
