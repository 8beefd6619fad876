//! Friend pairs for `measure latency` and `measure changes`: two users made friends through the
//! API, each on a socket whose frames a task stamps with their arrival time, standing a few
//! hundred metres apart and seen by each other once before anything is timed.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use nearby_common::clock::{now_ms, now_us};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::Target;
use crate::net::{self, Ws};
use crate::setup;

/// Metres per degree of latitude (the haversine radius the project uses).
const M_PER_DEG: f64 = 111_195.08;
/// Where the latency pairs stand (San Francisco).
const HOME: (f64, f64) = (37.7749, -122.4194);

/// A frame as it arrived: wall time (epoch µs, taken before parsing) and the JSON.
pub(super) type Arrival = (i64, Value);

/// Splits a socket: the sending half for the caller, a task that stamps and forwards every
/// text frame (reading also answers the gateway's pings).
fn reader(ws: Ws) -> (SplitSink<Ws, Message>, mpsc::UnboundedReceiver<Arrival>) {
    let (sink, mut stream) = ws.split();
    // Unbounded: a pair's frames are few, and the stamp must not wait for the consumer.
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let at = now_us();
            match msg {
                Message::Text(text) => {
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if tx.send((at, v)).is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    (sink, rx)
}

/// The next frame of `kind` (other frames are passed to `skip`), within `within`.
pub(super) async fn next_of(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    kind: &str,
    within: Duration,
    mut skip: impl FnMut(&Arrival),
) -> Option<Arrival> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let arrival = tokio::time::timeout_at(deadline, rx.recv()).await.ok()??;
        if arrival.1["type"] == kind {
            return Some(arrival);
        }
        skip(&arrival);
    }
}

/// A `location` frame at `at` with report time `ts` (epoch ms).
pub(super) fn location(at: (f64, f64), ts: i64) -> Message {
    Message::text(json!({"type": "location", "lat": at.0, "lon": at.1, "ts": ts}).to_string())
}

/// A point `m` metres north of HOME.
pub(super) fn north(m: f64) -> (f64, f64) {
    (HOME.0 + m / M_PER_DEG, HOME.1)
}

/// Makes `a` and `b` accepted friends through the HTTP API (creating both profiles first).
async fn befriend(target: &Target, a: i64, b: i64) -> anyhow::Result<()> {
    let (ta, tb) = (target.token(a), target.token(b));
    for t in [&ta, &tb] {
        let (status, body) = net::http(target.gateway, "GET", "/v1/me", Some(t), "").await?;
        if status != 200 {
            bail!("GET /v1/me: {status} {body}");
        }
    }
    setup::befriend(target.gateway, &ta, &tb, a, b).await
}

/// One pair, connected, in range, and seen by each other once.
pub(super) struct Pair {
    /// The sender's id; the receiver's is the next.
    pub(super) sender: i64,
    /// The sender's socket, sending half.
    pub(super) tx: SplitSink<Ws, Message>,
    /// What the sender's socket got.
    pub(super) sender_rx: mpsc::UnboundedReceiver<Arrival>,
    /// What the receiver's socket got.
    pub(super) receiver_rx: mpsc::UnboundedReceiver<Arrival>,
    /// Keeps the receiver's socket open.
    _receiver_tx: SplitSink<Ws, Message>,
}

/// Sets up `sender` and `receiver` as a [`Pair`], `distance_m` apart; each wait for a first
/// page or the first sighting takes at most `timeout_secs` (15 s at least).
pub(super) async fn setup_pair(
    target: &Target,
    sender: i64,
    receiver: i64,
    distance_m: f64,
    timeout_secs: u64,
) -> anyhow::Result<Pair> {
    befriend(target, sender, receiver).await?;
    let (mut receiver_tx, mut receiver_rx) = reader(connect(target, receiver).await?);
    let (mut tx, mut sender_rx) = reader(connect(target, sender).await?);
    let wait = Duration::from_secs(timeout_secs.max(15));
    receiver_tx.send(location(HOME, now_ms())).await?;
    next_of(&mut receiver_rx, "nearby", wait, |_| {})
        .await
        .context("the receiver's first page never came")?;
    let t0 = now_ms();
    tx.send(location(north(distance_m), t0)).await?;
    next_of(&mut sender_rx, "nearby", wait, |_| {})
        .await
        .context("the sender's first page never came")?;
    // The receiver sees the sender come into range: the pipeline works for this pair.
    let sender_id = sender.to_string();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (_, v) = next_of(&mut receiver_rx, "friend_location", left, |_| {})
            .await
            .context("the receiver never saw the sender come into range")?;
        if v["user_id"].as_str() == Some(sender_id.as_str()) && v["updated_at"] == t0 {
            break;
        }
    }
    Ok(Pair {
        sender,
        tx,
        sender_rx,
        receiver_rx,
        _receiver_tx: receiver_tx,
    })
}

/// `user`'s socket to the gateway (a few sockets: the kernel picks the source address).
async fn connect(target: &Target, user: i64) -> anyhow::Result<Ws> {
    net::connect(target.gateway, &target.token(user)).await
}
