//! The client side of the wire: tokens, a minimal HTTP/1.1 call, a stage's readiness, and
//! WebSocket connections, from a chosen 127.0.0.x source address (so many sockets do not exhaust
//! one address's ports) or from the kernel's; and the names a run gives what it creates.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A client socket.
pub type Ws = WebSocketStream<TcpStream>;

/// How long one socket may take to connect and upgrade.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A token for `user`, signed with the deployment's HS256 secret, valid for `ttl`.
pub fn token(secret: &str, user: i64, ttl: Duration) -> String {
    nearby_common::auth::mint_hs256(secret.as_bytes(), user, ttl)
}

/// Wall clock, epoch microseconds (the one clock of the workspace).
pub use nearby_common::clock::now_us;

/// A run's user ids: a random base far from small hand-made ids (and from other runs), to
/// which each simulated person's index is added.
pub fn user_base() -> i64 {
    use rand::Rng;
    rand::rng().random_range(1_000_000_000_000_i64..4_000_000_000_000_000_000)
}

/// A fresh name: `prefix` and 16 random hex digits (topics, keyspaces, groups of one run).
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..16])
}

/// A minimal HTTP/1.1 call (`nearby_common::http`, 30 s at most for each step): the status
/// and the body. To a gateway on loopback, calls come from rotating 127.0.1.x addresses, as
/// many clients' would: a gateway bounds new connections per source address, and a tool's
/// thousands of setup calls from one address would be refused as a flood.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use nearby_common::http::{exchange_on, parse_response, request_text};
    let timeout = Duration::from_secs(30);
    let call = async {
        let stream = match addr {
            SocketAddr::V4(v4) if v4.ip().is_loopback() => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(next_http_source().into(), 0))?;
                tokio::time::timeout(timeout, socket.connect(addr))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??
            }
            _ => tokio::time::timeout(timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??,
        };
        let answer = exchange_on(stream, &request_text(method, path, token, body), timeout).await?;
        std::io::Result::Ok(parse_response(&answer))
    };
    call.await
        .with_context(|| format!("{method} {path} at {addr}"))
}

/// The next of 250 loopback addresses 127.0.1.1..=127.0.1.250, in turn.
fn next_http_source() -> Ipv4Addr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 250;
    Ipv4Addr::new(127, 0, 1, 1 + u8::try_from(n).unwrap_or(0))
}

/// `/readyz` of an admin port: its body; fails unless it answers 200.
pub async fn ready(addr: SocketAddr, what: &str) -> anyhow::Result<String> {
    let (status, body) = http(addr, "GET", "/readyz", None, "")
        .await
        .with_context(|| format!("{what} admin port {addr}: is the system running?"))?;
    if status != 200 {
        bail!("{what} at {addr} is not ready: {status} {body}");
    }
    Ok(body.trim().to_owned())
}

/// The `i`-th source address of a run: `first`, then the next address every `per_source`
/// sockets (127.0.0.2, 127.0.0.3, ...).
pub fn source_for(first: Ipv4Addr, per_source: usize, i: usize) -> Ipv4Addr {
    let step = u32::try_from(i / per_source.max(1)).unwrap_or(u32::MAX);
    Ipv4Addr::from(u32::from(first).saturating_add(step))
}

/// A WebSocket to `gateway`'s `/v1/ws` from `source` (port chosen by the kernel), with the
/// token in the query; the whole handshake within [`CONNECT_TIMEOUT`].
pub async fn connect_from(
    source: Ipv4Addr,
    gateway: SocketAddr,
    token: &str,
) -> anyhow::Result<Ws> {
    let connect = async {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket
            .bind(SocketAddr::new(source.into(), 0))
            .with_context(|| format!("bind {source}"))?;
        let stream = socket.connect(gateway).await.context("connect")?;
        upgrade(stream, gateway, token).await
    };
    within_connect_timeout(connect).await
}

/// A WebSocket to `gateway`'s `/v1/ws` from whatever address the kernel picks (a few sockets,
/// where source ports cannot run out); otherwise as [`connect_from`].
pub async fn connect(gateway: SocketAddr, token: &str) -> anyhow::Result<Ws> {
    let connect = async {
        let stream = TcpStream::connect(gateway).await.context("connect")?;
        upgrade(stream, gateway, token).await
    };
    within_connect_timeout(connect).await
}

/// The WebSocket upgrade of a connected `stream`, with the token in the query.
async fn upgrade(stream: TcpStream, gateway: SocketAddr, token: &str) -> anyhow::Result<Ws> {
    stream.set_nodelay(true)?;
    let url = format!("ws://{gateway}/v1/ws?access_token={token}");
    // tungstenite's default 128 KiB read buffer would make this client, not the gateway,
    // the memory hog; frames here are small.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("upgrade")?;
    Ok(ws)
}

/// `connect` within [`CONNECT_TIMEOUT`]: a gateway out of file descriptors leaves sockets in
/// its backlog, unanswered.
async fn within_connect_timeout(
    connect: impl Future<Output = anyhow::Result<Ws>>,
) -> anyhow::Result<Ws> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no handshake within {CONNECT_TIMEOUT:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_advance_every_per_source_sockets() {
        let first = Ipv4Addr::new(127, 0, 0, 2);
        assert_eq!(source_for(first, 5_000, 0), first);
        assert_eq!(source_for(first, 5_000, 4_999), first);
        assert_eq!(source_for(first, 5_000, 5_000), Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(
            source_for(first, 5_000, 12_000),
            Ipv4Addr::new(127, 0, 0, 4)
        );
    }
}
