//! The clients of tests: a WebSocket [`Client`] that reads JSON frames with deadlines, and a
//! minimal HTTP/1.1 call ([`http_raw`], on `nearby_common::http`, keeps the headers; [`http`]
//! reads the body as JSON) so a test sees exactly what a client sends and gets.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket client of a gateway.
#[derive(Debug)]
pub struct Client {
    /// The socket itself, for what the helpers do not cover (close, raw frames).
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Opens `/v1/ws` on the gateway at `addr` with `token` in the query.
    pub async fn connect(addr: SocketAddr, token: &str) -> Self {
        let url = format!("ws://{addr}/v1/ws?access_token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connects");
        Self { ws }
    }

    /// Sends `v` as a text frame.
    pub async fn send_json(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    /// Sends `s` as it is, as a text frame.
    pub async fn send_text(&mut self, s: &str) {
        self.ws
            .send(Message::text(s.to_owned()))
            .await
            .expect("send");
    }

    /// Reports a position at (`lat`, `lon`), now.
    pub async fn location(&mut self, lat: f64, lon: f64) {
        self.send_json(serde_json::json!({
            "type": "location", "lat": lat, "lon": lon, "ts": nearby_common::clock::now_ms()
        }))
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

/// One HTTP/1.1 call (a connection of its own): the status and the body, as JSON when it is
/// JSON and as a JSON string otherwise. Panics when nothing answers.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let RawResponse { status, body, .. } = http_raw(addr, method, path, token, body).await;
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

/// A `GET` on an admin port: the status and the body's text, or `(0, "")` when nothing answers
/// (yet, or any more).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    nearby_common::http::request(addr, "GET", path, None, "", Duration::from_secs(10))
        .await
        .unwrap_or((0, String::new()))
}

/// The value of the sample `name` (with its labels, if any: `name{partition="5"}`) on a
/// `/metrics` page, if the page has it.
pub fn sample(page: &str, name: &str) -> Option<i64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until `/readyz` on the admin port `admin` answers 200; fails the test naming `what`
/// after `within`.
pub async fn wait_ready(admin: SocketAddr, what: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while get(admin, "/readyz").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An answer with its headers, as [`http_raw`] reads it.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code (0 when the answer had no status line).
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body's text (a chunked one decoded).
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
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> RawResponse {
    use nearby_common::http::{exchange, parse_headers, parse_response, request_text};
    let req = request_text(method, path, token, body.unwrap_or(""));
    let answer = exchange(addr, &req, Duration::from_secs(60))
        .await
        .expect("an HTTP answer");
    let (status, body) = parse_response(&answer);
    RawResponse {
        status,
        headers: parse_headers(&answer),
        body,
    }
}
