//! The baseline servers' report intake (`--intake`): what the original design's WebSocket
//! server does with a phone's `location` frame — read it from the socket, unmask and parse it
//! (the same JSON and the same checks as our gateway's), keep the position as the person's
//! latest, then `SET` it in the location cache (10 minutes) and `PUBLISH` it on the person's
//! channel, in one round trip whose answer it awaits (our gateway awaits Kafka's).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nearby_ingest::{Report, ValidationLimits};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

use super::Positions;

/// How long a cached position lives, seconds (the design's 10-minute activity window).
const CACHE_TTL_S: u64 = 600;

/// The largest frame a server takes (as the gateway's `NEARBY_MAX_FRAME_BYTES`).
const MAX_FRAME_BYTES: usize = 4096;

/// A client frame: a `type` tag and, for `location`, the ingest crate's own [`Report`] (the
/// fields the gateway reads; only `location` is sent here).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Location(Report),
}

/// What the intake counted, over all sockets.
#[derive(Debug, Default)]
pub struct IntakeCounts {
    /// Reports stored and published.
    pub reports: AtomicU64,
    /// Frames refused (undecodable or failing a check) or Redis errors.
    pub refused: AtomicU64,
}

/// One person's socket on one server: reads frames until the socket closes.
pub struct Intake {
    /// The person this socket belongs to.
    pub person: u32,
    /// The server's command connection.
    pub redis: redis::aio::MultiplexedConnection,
    /// Channel and cache key prefix of this run.
    pub prefix: Arc<str>,
    /// Where the servers keep their users' latest positions.
    pub positions: Arc<Positions>,
    /// Counters shared by every socket.
    pub counts: Arc<IntakeCounts>,
}

impl Intake {
    /// Reads `socket` until it closes or fails, taking each report in turn.
    pub async fn run(mut self, mut socket: OwnedReadHalf) {
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        loop {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            while let Some((payload, used)) = next_frame(&buf) {
                let outcome = self.take(&payload).await;
                let counter = if outcome.is_ok() {
                    &self.counts.reports
                } else {
                    &self.counts.refused
                };
                counter.fetch_add(1, Ordering::Relaxed);
                buf.drain(..used);
            }
            if buf.len() > MAX_FRAME_BYTES + 14 {
                return;
            }
        }
    }

    /// Parses, checks, caches and publishes one report.
    async fn take(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let ClientFrame::Location(report) = serde_json::from_slice(payload)?;
        let Report { lat, lon, ts, .. } = report;
        let received_us = nearby_common::clock::now_us();
        report
            .validate(received_us / 1000, &ValidationLimits::LIVE)
            .map_err(|r| anyhow::anyhow!("{r:?}"))?;
        self.positions.set(self.person as usize, (lat, lon));
        let key = format!("{}{}", self.prefix, self.person);
        // The cache entry as the design keeps it; the message carries the server's receive
        // time for the latency figure.
        redis::pipe()
            .set_ex(&key, format!("{lat},{lon},{ts}"), CACHE_TTL_S)
            .ignore()
            .publish(&key, format!("{lat},{lon},{received_us}"))
            .ignore()
            .query_async::<()>(&mut self.redis)
            .await?;
        Ok(())
    }
}

/// The first whole frame in `buf`: its unmasked payload and the bytes it took. `None` until a
/// whole frame is there.
fn next_frame(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let [_, second, rest @ ..] = buf else {
        return None;
    };
    let masked = second & 0x80 != 0;
    let (len, rest) = match second & 0x7f {
        126 => {
            let [a, b, rest @ ..] = rest else { return None };
            (usize::from(u16::from_be_bytes([*a, *b])), rest)
        }
        127 => {
            let (len, rest) = rest.split_first_chunk::<8>()?;
            (u64::from_be_bytes(*len) as usize, rest)
        }
        n => (usize::from(n), rest),
    };
    let (key, rest) = if masked {
        let (key, rest) = rest.split_first_chunk::<4>()?;
        (*key, rest)
    } else {
        ([0; 4], rest)
    };
    let payload = rest.get(..len)?;
    let used = buf.len() - rest.len() + len;
    Some((
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect(),
        used,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::phones::ws_masked_text_frame;

    #[test]
    fn a_masked_frame_reads_back_whole_and_not_before() {
        let text = r#"{"type":"location","lat":37.7,"lon":-122.4,"ts":1}"#;
        let mut two = ws_masked_text_frame(text);
        let one = two.len();
        two.extend(ws_masked_text_frame(&"x".repeat(300)));
        let (payload, used) = next_frame(&two).expect("a whole frame");
        assert_eq!((payload.as_slice(), used), (text.as_bytes(), one));
        let (payload, used) = next_frame(&two[one..]).expect("the long one");
        assert_eq!((payload.len(), used), (300, two.len() - one));
        assert!(next_frame(&two[..one - 1]).is_none());
        assert!(next_frame(&two[one..two.len() - 1]).is_none());
    }
}
