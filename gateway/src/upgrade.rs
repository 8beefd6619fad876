//! The WebSocket opening handshake (RFC 6455 §4.2) that hands the session the TCP socket
//! itself. The session splits it: the WebSocket library reads the client's frames, and the
//! write side is shared ([`crate::writer`]) so the delivery reader can write a frame straight
//! to the kernel. That needs the socket, not a stream boxed by the HTTP server, so the client
//! port is served by [`serve`] (plain HTTP/1.1 with upgrades) rather than `axum::serve`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// A valid WebSocket upgrade request, to be answered with [`WsUpgrade::on_upgrade`].
#[derive(Debug)]
pub struct WsUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade: a status and a plain-text reason.
#[derive(Debug)]
pub struct NotAnUpgrade(StatusCode, &'static str);

impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let bad = |why| Err(NotAnUpgrade(StatusCode::BAD_REQUEST, why));
        if parts.method != Method::GET {
            return Err(NotAnUpgrade(
                StatusCode::METHOD_NOT_ALLOWED,
                "Request method must be `GET`",
            ));
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return bad("Connection header did not include 'upgrade'");
        }
        if !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return bad("`Upgrade` header did not include 'websocket'");
        }
        if parts.headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13"))
        {
            return bad("`Sec-WebSocket-Version` header did not include '13'");
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return bad("`Sec-WebSocket-Key` header missing");
        };
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(NotAnUpgrade(
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            ));
        };
        Ok(Self { key, on_upgrade })
    }
}

impl WsUpgrade {
    /// Answers `101 Switching Protocols`; once the switch is done, `session` runs with the
    /// socket and any bytes the client sent after its request.
    pub fn on_upgrade<F, Fut>(self, session: F) -> Response
    where
        F: FnOnce(TcpStream, Bytes) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => session(parts.io.into_inner(), parts.read_buf).await,
                Err(_) => warn!("an upgraded connection not served by `upgrade::serve`: closed"),
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

/// Serves `router` on `listener` over HTTP/1.1 with upgrades until `stop`; then lets the
/// requests in progress finish (at most `grace`). A connection that has not sent a whole
/// request head `header_timeout` after it opened or after its last answer (a half-sent
/// request, a slowloris, an idle keep-alive) is closed: each one holds a socket and a task.
/// A new connection is first shown to `admit` with its source address: when that answers
/// `Some(retry_after_ms)`, the connection gets a 429 `too_many_connections` and is closed
/// before any HTTP is read. Upgraded sockets are the sessions' own and end with them. TCP_NODELAY is set on every socket: a frame is a whole message for a screen,
/// and Nagle's algorithm would hold a second frame behind the first until the phone's (delayed)
/// ACK, up to 40 ms later.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    grace: Duration,
    header_timeout: Duration,
    admit: impl Fn(std::net::IpAddr) -> Option<u64>,
) -> std::io::Result<()> {
    // Every HTTP connection's task, to wait for (bounded) at the stop.
    let connections = TaskTracker::new();
    let lingering = Arc::new(tokio::sync::Semaphore::new(MAX_LINGERING));
    let mut http = hyper::server::conn::http1::Builder::new();
    // Without a timer hyper applies no header timeout at all.
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Some(retry_after_ms) = admit(peer.ip()) {
            refuse(tcp, retry_after_ms, &lingering);
            continue;
        }
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = TowerToHyperService::new(router.clone());
        let conn = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            // At the stop, a connection finishes the request it is serving and closes.
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        debug!("http connections still open after the grace");
    }
    Ok(())
}

/// Refused connections lingering at once (each for at most [`LINGER`]); beyond, a refused
/// connection is dropped at once (the client may then see a reset instead of the 429).
const MAX_LINGERING: usize = 256;
/// How long a refused connection is kept open for the client to read the 429.
const LINGER: Duration = Duration::from_secs(1);

/// Answers a connection over its source's budget with a 429 and closes it. One write of a few
/// hundred bytes, then the client's request is read and discarded for at most [`LINGER`]
/// (closing with it unread would reset the connection before the client reads the answer), in
/// a task of at most [`MAX_LINGERING`].
fn refuse(tcp: TcpStream, retry_after_ms: u64, lingering: &Arc<tokio::sync::Semaphore>) {
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    let body = r#"{"error":{"code":"too_many_connections","message":"too many new connections from this address: retry after Retry-After seconds"}}"#;
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        retry_after_ms.div_ceil(1000).max(1),
        body.len()
    );
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tcp;
        let linger = async {
            tcp.write_all(answer.as_bytes()).await?;
            tcp.shutdown().await?;
            let mut sink = [0u8; 4096];
            while tcp.read(&mut sink).await? > 0 {}
            std::io::Result::Ok(())
        };
        let _ = tokio::time::timeout(LINGER, linger).await;
        drop(permit);
    });
}
