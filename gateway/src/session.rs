//! One WebSocket session: reads the client's frames (reports, paging, pings), writes the
//! frames queued for it, keeps the connection alive, and enforces the limits (frame size,
//! frame rate, idle time, slow writes).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use nearby_common::UserId;
use nearby_common::clock::now_ms;
use nearby_ingest::{IngestError, Rejection, Report};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, instrument, warn};

use crate::nearby::Cursor;
use crate::outbox::Outbox;
use crate::protocol::{ClientFrame, ServerFrame, close, codes};
use crate::registry::Connection;
use crate::state::Gateway;

/// A token bucket over all frames of one connection.
#[derive(Debug)]
struct FrameBudget {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl FrameBudget {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a session remembers between frames.
#[derive(Debug)]
struct State {
    /// The last accepted position: where pages are measured from.
    position: Option<(f64, f64)>,
    /// Rate-limit rejections in a row; past the tolerance the socket is closed.
    over_limit: u32,
    budget: FrameBudget,
}

/// What the loop should do after handling a frame.
enum Next {
    Continue,
    Close(u16, &'static str),
}

type Sink = futures::stream::SplitSink<WebSocket, Message>;

/// Runs a session until the client leaves, a limit closes it, or the gateway shuts down.
#[instrument(skip_all, fields(user, session))]
pub async fn run(gw: Arc<Gateway>, socket: WebSocket, user: UserId, _permit: OwnedSemaphorePermit) {
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    tracing::Span::current()
        .record("user", user)
        .record("session", &session_id);
    let conn = Arc::new(Connection {
        user,
        session_id: session_id.clone(),
        outbox: Outbox::new(gw.config.outbox_capacity, gw.metrics.outbox_dropped.clone()),
    });
    let (mut sink, mut stream) = socket.split();

    // Connected goes to the log before the socket is registered for deliveries; it and every
    // report of this session share the user's key, so fanout sees them in this order.
    // The large futures (Kafka produces, page reads) are boxed: held inline they would make
    // every idle session's task as big as the largest of them (13 KB before; RSS per socket is
    // a limit we measure).
    if let Err(e) = Box::pin(
        gw.ingest
            .connected(user, &gw.config.gateway_id, &session_id),
    )
    .await
    {
        warn!(error = %e, "could not record the connection; closing");
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 1011,
                reason: "try again".into(),
            })))
            .await;
        return;
    }
    gw.registry.insert(conn.clone());
    info!("connected");

    let cfg = &gw.config;
    let mut state = State {
        position: None,
        over_limit: 0,
        budget: FrameBudget::new(cfg.frame_rate, cfg.frame_burst),
    };
    let mut ping = tokio::time::interval_at(Instant::now() + cfg.ping_interval, cfg.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    // One idle timer for the session, moved on only when it fires: a new timer per loop turn
    // (every frame sent or read) costs a timer-wheel insert and removal each time.
    let idle = tokio::time::sleep_until(last_seen + cfg.idle_timeout);
    tokio::pin!(idle);
    let shutdown = gw.shutdown.clone();
    // Once this session has sent `reconnect` (the drain queues it in the outbox), the end of
    // the client's grace to close; made only then, so idle sessions stay small.
    let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;

    let close_with = loop {
        tokio::select! {
            // Shutdown first: a stopping gateway stops taking work before anything else.
            biased;
            () = shutdown.cancelled() => break Some((close::GOING_AWAY, "server shutting down")),
            () = async { if let Some(t) = grace.as_mut() { t.await } }, if grace.is_some() => {
                break Some((close::GOING_AWAY, "drained: connect again"));
            }
            batch = conn.outbox.next_batch() => {
                if batch.is_empty() {
                    break None;
                }
                // The client reconnects elsewhere and closes this socket; until it does, its
                // frames are still read and its reports still taken, so none is lost.
                if grace.is_none() && batch.iter().any(|f| matches!(f, ServerFrame::Reconnect { .. })) {
                    grace = Some(Box::pin(tokio::time::sleep(gw.drain.grace)));
                }
                if send_all(&mut sink, batch, cfg.send_timeout).await.is_err() {
                    debug!("client too slow or gone; closing");
                    break None;
                }
            }
            msg = stream.next() => {
                last_seen = Instant::now();
                let next = match msg {
                    Some(Ok(Message::Text(text))) => Box::pin(on_text(&gw, &mut sink, &mut state, user, text)).await,
                    Some(Ok(Message::Binary(_))) => {
                        reply(&mut sink, ServerFrame::error(codes::BINARY_NOT_SUPPORTED, "frames are JSON text"), cfg.send_timeout).await
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(Next::Continue),
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(e)) => {
                        // The transport refused the frame (over the hard size limit) or broke.
                        debug!(error = %e, "socket read failed");
                        break Some((close::TOO_BIG, "frame over the hard limit or broken frame"));
                    }
                };
                match next {
                    Ok(Next::Continue) => {}
                    Ok(Next::Close(code, reason)) => break Some((code, reason)),
                    Err(()) => break None,
                }
            }
            _ = ping.tick() => {
                if tokio::time::timeout(cfg.send_timeout, sink.send(Message::Ping(Default::default()))).await.map_or(true, |r| r.is_err()) {
                    break None;
                }
            }
            () = &mut idle => {
                if last_seen.elapsed() >= cfg.idle_timeout {
                    break Some((close::IDLE, "idle timeout"));
                }
                idle.as_mut().reset(last_seen + cfg.idle_timeout);
            }
        }
    };

    gw.registry.remove(&conn);
    conn.outbox.close();
    if let Some((code, reason)) = close_with {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(frame)).await;
        // The closing handshake: read (and drop) what the client still sends until its close
        // comes back, for at most a second. Dropping a socket with unread input makes the
        // kernel send a reset, which can destroy frames the client has not read yet (the
        // `flood` error before the close, say).
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    if let Err(e) = Box::pin(
        gw.ingest
            .disconnected(user, &gw.config.gateway_id, &session_id),
    )
    .await
    {
        warn!(error = %e, "could not record the disconnect");
    }
    info!(dropped = conn.outbox.dropped(), "disconnected");
}

async fn send_all(sink: &mut Sink, frames: Vec<ServerFrame>, timeout: Duration) -> Result<(), ()> {
    for frame in frames {
        let text = Message::Text(Utf8Bytes::from(frame.to_json()));
        // feed() buffers; one flush per batch keeps syscalls down for bursts.
        match tokio::time::timeout(timeout, sink.feed(text)).await {
            Ok(Ok(())) => {}
            _ => return Err(()),
        }
    }
    match tokio::time::timeout(timeout, sink.flush()).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn reply(sink: &mut Sink, frame: ServerFrame, timeout: Duration) -> Result<Next, ()> {
    send_all(sink, vec![frame], timeout)
        .await
        .map(|()| Next::Continue)
}

/// Counts a rate-limit rejection; past the tolerance, the connection closes.
async fn over_limit(
    gw: &Gateway,
    sink: &mut Sink,
    state: &mut State,
    message: String,
) -> Result<Next, ()> {
    state.over_limit += 1;
    if state.over_limit > gw.config.flood_tolerance {
        let frame = ServerFrame::error(codes::FLOOD, "too many frames: closing (1008)");
        send_all(sink, vec![frame], gw.config.send_timeout).await?;
        return Ok(Next::Close(close::FLOOD, "flood"));
    }
    reply(
        sink,
        ServerFrame::error(codes::RATE_LIMITED, message),
        gw.config.send_timeout,
    )
    .await
}

async fn on_text(
    gw: &Gateway,
    sink: &mut Sink,
    state: &mut State,
    user: UserId,
    text: Utf8Bytes,
) -> Result<Next, ()> {
    let cfg = &gw.config;
    if !state.budget.take() {
        let msg = format!(
            "more than {} frames per second: frame dropped",
            cfg.frame_rate
        );
        return over_limit(gw, sink, state, msg).await;
    }
    if text.len() > cfg.max_frame_bytes {
        let msg = format!(
            "frame of {} bytes is over the limit of {} bytes: dropped",
            text.len(),
            cfg.max_frame_bytes
        );
        return reply(
            sink,
            ServerFrame::error(codes::FRAME_TOO_LARGE, msg),
            cfg.send_timeout,
        )
        .await;
    }
    let frame = match serde_json::from_str::<ClientFrame>(text.as_str()) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("not a valid frame: {e}");
            return reply(
                sink,
                ServerFrame::error(codes::BAD_FRAME, msg),
                cfg.send_timeout,
            )
            .await;
        }
    };
    match frame {
        ClientFrame::Ping { id } => reply(sink, ServerFrame::Pong { id }, cfg.send_timeout).await,
        ClientFrame::Location {
            lat,
            lon,
            ts,
            accuracy_m,
        } => {
            let report = Report {
                lat,
                lon,
                ts,
                accuracy_m,
            };
            match gw.ingest.report(user, Some(&cfg.gateway_id), report).await {
                Ok(_) => {
                    gw.metrics.report("socket", "accepted");
                    state.over_limit = 0;
                    let first = state.position.is_none();
                    state.position = Some((lat, lon));
                    if first {
                        let page = page_frame(gw, user, (lat, lon), None).await;
                        return reply(sink, page, cfg.send_timeout).await;
                    }
                    Ok(Next::Continue)
                }
                Err(IngestError::Rejected(r @ Rejection::RateLimited { .. })) => {
                    gw.metrics.report("socket", r.code());
                    over_limit(gw, sink, state, r.message()).await
                }
                Err(IngestError::Rejected(r)) => {
                    gw.metrics.report("socket", r.code());
                    let mut frame = ServerFrame::error(r.code(), r.message());
                    if let ServerFrame::Error { reference, .. } = &mut frame {
                        *reference = Some("location".into());
                    }
                    reply(sink, frame, cfg.send_timeout).await
                }
                Err(e) => {
                    gw.metrics.report("socket", "unavailable");
                    warn!(error = %e, "report not stored");
                    let frame = ServerFrame::error(
                        codes::UNAVAILABLE,
                        "the report could not be stored: send it again",
                    );
                    reply(sink, frame, cfg.send_timeout).await
                }
            }
        }
        ClientFrame::More { cursor } => {
            let Some(position) = state.position else {
                let frame = ServerFrame::error(codes::NO_POSITION, "send a location first");
                return reply(sink, frame, cfg.send_timeout).await;
            };
            let Some(cursor) = Cursor::decode(&cursor) else {
                let frame = ServerFrame::error(
                    codes::BAD_CURSOR,
                    "unknown cursor: use the `next` of a page",
                );
                return reply(sink, frame, cfg.send_timeout).await;
            };
            let page = page_frame(gw, user, position, Some(cursor)).await;
            reply(sink, page, cfg.send_timeout).await
        }
    }
}

async fn page_frame(
    gw: &Gateway,
    user: UserId,
    at: (f64, f64),
    after: Option<Cursor>,
) -> ServerFrame {
    match gw.pager.page(user, at, after, now_ms()).await {
        Ok((friends, next)) => ServerFrame::Nearby { friends, next },
        Err(e) => {
            warn!(error = %e, "page failed");
            ServerFrame::error(
                codes::UNAVAILABLE,
                "the friend list is not available right now: try `more` again",
            )
        }
    }
}
