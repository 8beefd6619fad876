//! One WebSocket session: reads the client's frames (reports, paging, pings), writes the
//! frames queued for it, keeps the connection alive, and enforces the limits (frame size,
//! frame rate, idle time, slow writes).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nearby_common::UserId;
use nearby_common::clock::now_ms;
use nearby_ingest::{IngestError, Rejection, Report};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tracing::{debug, info, instrument, warn};

use crate::duplex::Duplex;
use crate::nearby::Cursor;
use crate::protocol::{ClientFrame, ServerFrame, close, codes};
use crate::registry::Connection;
use crate::state::Gateway;
use crate::writer::{Flushed, Frame, SocketWriter};

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
enum Next<'g> {
    Continue,
    Close(u16, &'static str),
    /// A report handed to the producer whose broker acknowledgement is still to come.
    Acking(Ack<'g>),
}

/// A report's produce, awaited beside the read loop: its result and the reported position.
type Ack<'g> = std::pin::Pin<
    Box<
        dyn Future<Output = (Result<nearby_ingest::Accepted, IngestError>, (f64, f64))> + Send + 'g,
    >,
>;

/// Reports of one socket whose acknowledgement may be awaited at once; past it, the session
/// stops reading the socket until one is answered (the client's TCP window fills: backpressure).
/// 32 covers a broker's restart: at the report limit of one a second, 30 s of the producer's
/// delivery timeout (`NEARBY_INGEST_DELIVERY_TIMEOUT`) is 30 reports.
const MAX_ACKS_PENDING: usize = 32;

/// Sends a reply frame (ahead of nothing: it queues behind what waits); `Err` once the socket
/// is closed.
fn reply(conn: &Connection, frame: ServerFrame) -> Result<Next<'static>, ()> {
    if conn.send_frame(&frame) {
        Ok(Next::Continue)
    } else {
        Err(())
    }
}

/// Runs a session until the client leaves, a limit closes it, or the gateway shuts down.
#[instrument(skip_all, fields(user, session))]
pub async fn run(
    gw: Arc<Gateway>,
    socket: TcpStream,
    early: Bytes,
    user: UserId,
    // The gateway's connection permit and the user's socket slot, given back at the end.
    _held: (OwnedSemaphorePermit, crate::user_sockets::SocketSlot),
) {
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    tracing::Span::current()
        .record("user", user)
        .record("session", &session_id);
    let cfg = &gw.config;
    let (read, write) = socket.into_split();
    let writer = Arc::new(SocketWriter::new(
        write,
        cfg.outbox_capacity,
        gw.metrics.outbox_dropped.clone(),
    ));
    let conn = Arc::new(Connection {
        user,
        session_id: session_id.clone(),
        writer: writer.clone(),
        told_to_reconnect: Notify::new(),
        ping_slot: gw.registry.next_ping_slot(),
    });
    // The library reads the client's frames and writes its own control frames (pongs, the
    // close) through the shared writer; text frames go to the writer directly.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.ws_read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(cfg.hard_frame_bytes))
        .max_frame_size(Some(cfg.hard_frame_bytes));
    // `early` is a view of the HTTP connection's 8 KiB read buffer. Its bytes are copied out
    // and it is dropped here: kept (as a parameter the session holds) or turned into a `Vec`
    // (which takes over its allocation, and which the WebSocket library then keeps as its read
    // buffer), that buffer stayed alive as long as the socket, 8 KiB of every idle socket's
    // memory (heaptrack on `measure idle`).
    let early = {
        let bytes = early.to_vec();
        drop(early);
        bytes
    };
    let ws = WebSocketStream::from_partially_read(
        Duplex::new(read, writer),
        early,
        Role::Server,
        Some(ws_config),
    )
    .await;
    let (mut sink, mut stream) = ws.split();

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
                code: 1011.into(),
                reason: "try again".into(),
            })))
            .await;
        let _ = conn.writer.flush(cfg.send_timeout).await;
        return;
    }
    // Counted once on the log: the last of the user's sessions here to end names it.
    gw.user_sockets.connected(user, &session_id);
    gw.registry.insert(conn.clone());
    info!("connected");

    let mut state = State {
        position: None,
        over_limit: 0,
        budget: FrameBudget::new(cfg.frame_rate, cfg.frame_burst),
    };
    let mut last_seen = Instant::now();
    // One idle timer for the session, moved on only when it fires: a new timer per loop turn
    // (every frame sent or read) costs a timer-wheel insert and removal each time.
    let idle = tokio::time::sleep_until(last_seen + cfg.idle_timeout);
    tokio::pin!(idle);
    let shutdown = gw.shutdown.clone();
    // Once this session has sent `reconnect` (the drain queues it in the outbox), the end of
    // the client's grace to close; made only then, so idle sessions stay small.
    let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    // Reports whose broker ack is awaited, answered in the order read. Why beside the loop and
    // not inline: a stalled broker (a restart takes ~15 s) must not stall reading the socket.
    // Read later, the reports a phone sent a second apart met the per-user rate limit back to
    // back once the broker returned, and the phone was closed as a flooder.
    let mut acks: futures::stream::FuturesOrdered<Ack<'_>> = futures::stream::FuturesOrdered::new();

    // Set when the socket took no write for the send timeout (the end is counted by reason).
    let mut slow = false;
    let close_with = loop {
        tokio::select! {
            // Shutdown first: a stopping gateway stops taking work before anything else.
            biased;
            () = shutdown.cancelled() => break Some((close::GOING_AWAY, "server shutting down")),
            () = async { if let Some(t) = grace.as_mut() { t.await } }, if grace.is_some() => {
                break Some((close::GOING_AWAY, "drained: connect again"));
            }
            // The client reconnects elsewhere and closes this socket; until it does, its
            // frames are still read and its reports still taken, so none is lost.
            () = conn.told_to_reconnect.notified(), if grace.is_none() => {
                grace = Some(Box::pin(tokio::time::sleep(gw.drain.grace)));
            }
            // Frames queued while the socket was full: written as it drains; a socket that
            // takes nothing for the send timeout is closed.
            () = conn.writer.wanted() => {
                if Box::pin(conn.writer.flush(cfg.send_timeout)).await != Flushed::Done {
                    debug!("client too slow or gone; closing");
                    slow = true;
                    break None;
                }
            }
            Some((result, at)) = acks.next(), if !acks.is_empty() => {
                match reported(&gw, &conn, &mut state, at, result) {
                    Ok(Next::Close(code, reason)) => break Some((code, reason)),
                    Ok(_) => {}
                    Err(()) => break None,
                }
            }
            msg = stream.next(), if acks.len() < MAX_ACKS_PENDING => {
                last_seen = Instant::now();
                let next = match msg {
                    Some(Ok(Message::Text(text))) => Box::pin(on_text(&gw, &conn, &mut state, user, text.as_str())).await,
                    // Every frame counts against the budget, whatever its type.
                    Some(Ok(Message::Binary(_))) => over_budget(&gw, &conn, &mut state).unwrap_or_else(|| {
                        reply(&conn, ServerFrame::error(codes::BINARY_NOT_SUPPORTED, "frames are JSON text"))
                    }),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        over_budget(&gw, &conn, &mut state).unwrap_or(Ok(Next::Continue))
                    }
                    Some(Ok(Message::Frame(_))) => Ok(Next::Continue),
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(e)) => {
                        // The transport refused the frame (over the hard size limit) or broke.
                        debug!(error = %e, "socket read failed");
                        break Some((close::TOO_BIG, "frame over the hard limit or broken frame"));
                    }
                };
                match next {
                    Ok(Next::Continue) => {}
                    Ok(Next::Acking(ack)) => acks.push_back(ack),
                    Ok(Next::Close(code, reason)) => break Some((code, reason)),
                    Err(()) => break None,
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

    gw.metrics.session_closed(match close_with {
        None if slow => "slow",
        None => "client",
        Some((close::FLOOD, _)) => "flood",
        Some((close::IDLE, _)) => "idle",
        Some((close::TOO_BIG, _)) => "too_big",
        Some(_) => "going_away",
    });
    // Once removed, the delivery reader writes nothing more here (it writes under the
    // registry's read lock).
    gw.registry.remove(&conn);
    if let Some((code, reason)) = close_with {
        // Boxed, as the other rare paths: inline, its futures would count in every idle
        // session's task.
        Box::pin(close_handshake(&mut sink, &mut stream, &conn, code, reason)).await;
    }
    conn.writer.close();
    // Another socket of the user's here keeps the deliveries coming: only the last one to end
    // records the disconnect, naming the session fanout holds.
    if let Some(latest) = gw.user_sockets.leaving(user)
        && let Err(e) = Box::pin(gw.ingest.disconnected(user, &gw.config.gateway_id, &latest)).await
    {
        warn!(error = %e, "could not record the disconnect");
    }
    info!(dropped = conn.writer.dropped(), "disconnected");
}

/// Sends our close (`code`, `reason`), lets what is queued before it go out, and reads (and
/// drops) what the client still sends until its close comes back, for at most a second each.
/// Dropping a socket with unread input makes the kernel send a reset, which can destroy frames
/// the client has not read yet (the `flood` error before the close, say).
async fn close_handshake<S, R>(
    sink: &mut S,
    stream: &mut R,
    conn: &Connection,
    code: u16,
    reason: &'static str,
) where
    S: futures::Sink<Message> + Unpin,
    R: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let frame = Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(frame)).await;
    // Nothing may follow the close; what is queued before it still goes out.
    conn.writer.seal();
    let _ = conn.writer.flush(Duration::from_secs(1)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Takes one frame from the budget; when it is spent, the answer to the frame (dropped, counted
/// towards a flood).
fn over_budget(
    gw: &Gateway,
    conn: &Connection,
    state: &mut State,
) -> Option<Result<Next<'static>, ()>> {
    if state.budget.take() {
        return None;
    }
    let msg = format!(
        "more than {} frames per second: frame dropped",
        gw.config.frame_rate
    );
    Some(over_limit(gw, conn, state, msg))
}

/// Counts a rate-limit rejection; past the tolerance, the connection closes.
fn over_limit(
    gw: &Gateway,
    conn: &Connection,
    state: &mut State,
    message: String,
) -> Result<Next<'static>, ()> {
    state.over_limit += 1;
    if state.over_limit > gw.config.flood_tolerance {
        let frame = ServerFrame::error(codes::FLOOD, "too many frames: closing (1008)");
        reply(conn, frame)?;
        return Ok(Next::Close(close::FLOOD, "flood"));
    }
    reply(conn, ServerFrame::error(codes::RATE_LIMITED, message))
}

async fn on_text<'g>(
    gw: &'g Gateway,
    conn: &Connection,
    state: &mut State,
    user: UserId,
    text: &str,
) -> Result<Next<'g>, ()> {
    let cfg = &gw.config;
    if let Some(refused) = over_budget(gw, conn, state) {
        return refused;
    }
    if text.len() > cfg.max_frame_bytes {
        let msg = format!(
            "frame of {} bytes is over the limit of {} bytes: dropped",
            text.len(),
            cfg.max_frame_bytes
        );
        return reply(conn, ServerFrame::error(codes::FRAME_TOO_LARGE, msg));
    }
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("not a valid frame: {e}");
            return reply(conn, ServerFrame::error(codes::BAD_FRAME, msg));
        }
    };
    match frame {
        ClientFrame::Ping { id } => reply(conn, ServerFrame::Pong { id }),
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
            if state.position.is_some() {
                let mut produce = Box::pin(gw.ingest.report(user, Some(&cfg.gateway_id), report));
                // The first poll checks the report and hands it to the producer (so reports
                // enqueue in the order read); the ack is awaited beside the read loop. Only a
                // full producer queue defers the hand-over, and a later report may then go
                // first: harmless, as fanout keeps the newest `ts` and history is keyed by it.
                return match futures::poll!(produce.as_mut()) {
                    std::task::Poll::Ready(result) => reported(gw, conn, state, (lat, lon), result),
                    std::task::Poll::Pending => Ok(Next::Acking(Box::pin(async move {
                        (produce.await, (lat, lon))
                    }))),
                };
            }
            // The first accepted report is answered with the first page, the snapshot the
            // deliveries update: those that come meanwhile (this report's own, say) wait
            // behind it rather than overtake it.
            conn.writer.hold();
            let result = gw.ingest.report(user, Some(&cfg.gateway_id), report).await;
            if result.is_err() {
                conn.writer.release_with(None);
                return reported(gw, conn, state, (lat, lon), result);
            }
            reported(gw, conn, state, (lat, lon), result)?;
            let page = page_frame(gw, user, (lat, lon), None).await;
            let page = Frame::other(crate::wsframe::text(&page));
            if conn.writer.release_with(Some(page)) {
                Ok(Next::Continue)
            } else {
                Err(())
            }
        }
        ClientFrame::More { cursor } => {
            let Some(position) = state.position else {
                let frame = ServerFrame::error(codes::NO_POSITION, "send a location first");
                return reply(conn, frame);
            };
            let Some(cursor) = Cursor::decode(&cursor) else {
                let frame = ServerFrame::error(
                    codes::BAD_CURSOR,
                    "unknown cursor: use the `next` of a page",
                );
                return reply(conn, frame);
            };
            let page = page_frame(gw, user, position, Some(cursor)).await;
            reply(conn, page)
        }
    }
}

/// Answers a report's outcome: an accepted one moves the position pages are measured from;
/// a refused one gets its error frame (and counts towards the flood tolerance if rate-limited).
fn reported(
    gw: &Gateway,
    conn: &Connection,
    state: &mut State,
    at: (f64, f64),
    result: Result<nearby_ingest::Accepted, IngestError>,
) -> Result<Next<'static>, ()> {
    match result {
        Ok(_) => {
            gw.metrics.report("socket", "accepted");
            state.over_limit = 0;
            state.position = Some(at);
            Ok(Next::Continue)
        }
        Err(IngestError::Rejected(r @ Rejection::RateLimited { .. })) => {
            gw.metrics.report("socket", r.code());
            over_limit(gw, conn, state, r.message())
        }
        Err(IngestError::Rejected(r)) => {
            gw.metrics.report("socket", r.code());
            let mut frame = ServerFrame::error(r.code(), r.message());
            if let ServerFrame::Error { reference, .. } = &mut frame {
                *reference = Some("location".into());
            }
            reply(conn, frame)
        }
        Err(e) => {
            gw.metrics.report("socket", "unavailable");
            warn!(error = %e, "report not stored");
            let frame = ServerFrame::error(
                codes::UNAVAILABLE,
                "the report could not be stored: send it again",
            );
            reply(conn, frame)
        }
    }
}

/// The pauses before a page's second and third attempts, when its store reads fail.
///
/// Why retry here: a reconnect storm (a drained gateway's clients all arriving at another,
/// whose caches are cold) sends a burst of reads to the CQL store, and on a busy node some
/// time out that succeed a moment later. The client would only send `more` again; a short
/// retry spares it the error. The deliveries held behind a first page wait meanwhile (bounded,
/// latest-wins: see `writer.rs`).
const PAGE_RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(600)];

async fn page_frame(
    gw: &Gateway,
    user: UserId,
    at: (f64, f64),
    after: Option<Cursor>,
) -> ServerFrame {
    let mut pauses = PAGE_RETRY_PAUSES.iter();
    loop {
        match gw.pager.page(user, at, after, now_ms()).await {
            Ok((friends, next)) => return ServerFrame::Nearby { friends, next },
            Err(e) => {
                warn!(error = %e, user, "page failed");
                let Some(pause) = pauses.next() else {
                    return ServerFrame::error(
                        codes::UNAVAILABLE,
                        "the friend list is not available right now: try `more` again",
                    );
                };
                tokio::time::sleep(*pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn of five arguments returns, without calling it.
    fn future_size<A, B, C, D, E, F>(_: fn(A, B, C, D, E) -> F) -> usize {
        size_of::<F>()
    }

    /// Every open socket holds one session future (inline in its task): 1,280 bytes when this
    /// was written, the largest part of an idle socket's memory (docs/PERFORMANCE.md). A large
    /// future awaited inline (a Kafka produce, a page: 13 KB once) must be boxed instead.
    #[test]
    fn an_idle_sessions_task_stays_small() {
        let size = future_size(run as fn(_, _, _, _, _) -> _);
        println!("session future: {size} bytes");
        assert!(size <= 2048, "the session future grew to {size} bytes");
    }
}
