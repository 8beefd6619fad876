//! The server's pings: one task pings every socket once per ping interval, a slice of the
//! sockets at a time, through each socket's writer (as a delivery is written).
//!
//! Why not a timer per session, as before: each firing woke a worker thread for one two-byte
//! write, and on the default scenario (5,000 sockets pinged every 20 s, 250 a second) those
//! wake-ups were a large share of the workers' CPU. A slice a second costs one wake-up for all
//! of its pings. A socket that cannot take its ping queues it, and its session closes it if it
//! takes nothing for the send timeout, as for any frame.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::writer::Frame;

/// A ping from the server: FIN and the ping opcode, unmasked, no payload.
const PING: &[u8] = &[0x89, 0x00];

/// About how often a slice of the sockets is pinged.
const SLICE_EVERY: Duration = Duration::from_secs(1);

/// How many slices the sockets fall in, and the time between two slices, for every socket to be
/// pinged once per `interval`.
fn slicing(interval: Duration) -> (u32, Duration) {
    // Whole slices; an interval of a day is 86,400 of them, far within u32.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let slices = ((interval.as_secs_f64() / SLICE_EVERY.as_secs_f64()).ceil() as u32).max(1);
    (slices, interval / slices)
}

/// Pings a slice of `registry`'s sockets at a time, each once per `interval`, until `shutdown`.
pub async fn run(registry: Arc<Registry>, interval: Duration, shutdown: CancellationToken) {
    let (slices, every) = slicing(interval);
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ping = Frame::other(Bytes::from_static(PING));
    let mut slice = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                registry.for_each_in_slice(slice, slices, |conn| {
                    conn.writer.send(ping.clone());
                });
                slice = (slice + 1) % slices;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socket_is_pinged_once_per_interval_a_slice_about_every_second() {
        assert_eq!(
            slicing(Duration::from_secs(20)),
            (20, Duration::from_secs(1))
        );
        assert_eq!(
            slicing(Duration::from_millis(1900)),
            (2, Duration::from_millis(950))
        );
        assert_eq!(
            slicing(Duration::from_millis(300)),
            (1, Duration::from_millis(300))
        );
    }
}
