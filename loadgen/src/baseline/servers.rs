//! The baseline's WebSocket-server stand-ins, all on one thread (the servers' work, counted):
//! each subscribes to its users' friends' channels, filters each message by distance and, with
//! `--push`, writes each delivery to its recipient's socket; with `--intake` it also reads its
//! users' reports from their sockets ([`super::intake`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;

use super::Positions;
use super::intake::{Intake, IntakeCounts};
use super::phones::ws_text_frame;

/// What the subscriber thread counted.
#[derive(Debug, Default)]
pub(super) struct Received {
    pub(super) received: u64,
    pub(super) delivered: u64,
    pub(super) pushed_bytes: u64,
    pub(super) latencies_ms: Vec<f64>,
    pub(super) cpu_s: f64,
    pub(super) switches: (u64, u64),
}

/// The WebSocket-server stand-ins, all on one thread.
pub(super) struct Servers {
    pub(super) client: redis::Client,
    pub(super) prefix: String,
    /// Each person's friends.
    pub(super) friends: Vec<Vec<u32>>,
    /// How many servers (people spread over them by index).
    pub(super) count: usize,
    pub(super) radius_m: f64,
    pub(super) positions: Arc<Positions>,
    /// With `--intake`: the intake's counters.
    pub(super) intake: Option<Arc<IntakeCounts>>,
}

impl Servers {
    /// Subscribes each server to its users' friends' channels (and with `--intake` starts
    /// reading its users' sockets), then counts, filters and pushes messages until `stop`.
    pub(super) async fn run(
        self,
        sockets: Option<Vec<std::net::TcpStream>>,
        subscribed: &AtomicBool,
        stop: &AtomicBool,
    ) -> anyhow::Result<Received> {
        let mut frame = Vec::with_capacity(256);
        let mut streams = Vec::new();
        // Each server: channel (publisher index) → its local users who are that person's friends.
        let mut locals: Vec<HashMap<u32, Vec<u32>>> = vec![HashMap::new(); self.count];
        for (user, list) in self.friends.iter().enumerate() {
            let server = user % self.count;
            for &f in list {
                locals[server].entry(f).or_default().push(user as u32);
            }
        }
        for map in &locals {
            let (mut sink, stream) = self.client.get_async_pubsub().await?.split();
            let channels: Vec<String> = map.keys().map(|f| format!("{}{f}", self.prefix)).collect();
            for chunk in channels.chunks(1_000) {
                sink.subscribe(chunk).await?;
            }
            // The sink must live as long as the stream reads.
            streams.push((sink, stream));
        }
        let (mut writers, intakes) = self.sockets(sockets).await?;
        subscribed.store(true, Ordering::Release);

        let mut out = Received::default();
        let prefix = self.prefix.as_str();
        let mut merged = futures::stream::select_all(
            streams
                .iter_mut()
                .enumerate()
                .map(|(server, (_, stream))| stream.map(move |m| (server, m))),
        );
        loop {
            let next = tokio::time::timeout(Duration::from_millis(100), merged.next()).await;
            let Ok(Some((server, msg))) = next else {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                continue;
            };
            out.received += 1;
            let Some(sender) = msg
                .get_channel_name()
                .strip_prefix(prefix)
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // Payload: "lat,lon,send_us".
            let payload = std::str::from_utf8(msg.get_payload_bytes()).unwrap_or("");
            let mut parts = payload.split(',');
            let (Some(Ok(lat)), Some(Ok(lon)), Some(Ok(sent))) = (
                parts.next().map(str::parse::<f64>),
                parts.next().map(str::parse::<f64>),
                parts.next().map(str::parse::<i64>),
            ) else {
                continue;
            };
            let Some(local) = locals[server].get(&sender) else {
                continue;
            };
            let now = nearby_common::clock::now_us();
            for &user in local {
                let (ulat, ulon) = self.positions.get(user as usize);
                let distance_m = nearby_common::geo::haversine_m(lat, lon, ulat, ulon);
                if distance_m > self.radius_m {
                    continue;
                }
                out.delivered += 1;
                if let Some(w) = writers.get_mut(user as usize) {
                    // What our gateway sends for a delivery, framed as a server's WebSocket
                    // text message, one write per delivery (as the gateway does).
                    ws_text_frame(
                        &mut frame,
                        &format!(
                            r#"{{"type":"friend_location","user_id":"{sender}","name":"Person {sender}","lat":{lat},"lon":{lon},"distance_m":{:.2},"updated_at":{}}}"#,
                            distance_m,
                            sent / 1000
                        ),
                    );
                    write_now(w, &frame).await?;
                    out.pushed_bytes += frame.len() as u64;
                }
                out.latencies_ms
                    .push(now.saturating_sub(sent) as f64 / 1000.0);
            }
        }
        for task in intakes {
            task.abort();
        }
        Ok(out)
    }

    /// The servers' ends of the phones' sockets: their write halves, in person order, and
    /// with `--intake` a task per socket reading its reports (on this thread: the servers'
    /// work is counted here).
    async fn sockets(
        &self,
        sockets: Option<Vec<std::net::TcpStream>>,
    ) -> anyhow::Result<(
        Vec<tokio::net::tcp::OwnedWriteHalf>,
        Vec<tokio::task::JoinHandle<()>>,
    )> {
        let (mut writers, mut tasks) = (Vec::new(), Vec::new());
        let redis = match &self.intake {
            Some(_) => {
                let mut conns = Vec::with_capacity(self.count);
                for _ in 0..self.count {
                    conns.push(self.client.get_multiplexed_async_connection().await?);
                }
                conns
            }
            None => Vec::new(),
        };
        let prefix: Arc<str> = Arc::from(self.prefix.as_str());
        for (person, socket) in sockets.into_iter().flatten().enumerate() {
            socket.set_nonblocking(true)?;
            let (read, write) = tokio::net::TcpStream::from_std(socket)?.into_split();
            writers.push(write);
            if let Some(counts) = &self.intake {
                let intake = Intake {
                    person: person as u32,
                    redis: redis[person % self.count].clone(),
                    prefix: prefix.clone(),
                    positions: self.positions.clone(),
                    counts: counts.clone(),
                };
                tasks.push(tokio::spawn(intake.run(read)));
            }
        }
        Ok((writers, tasks))
    }
}

/// Writes `frame` at once when the socket takes it (the usual case: one syscall, no task
/// woken), else waits until it does.
async fn write_now(w: &mut tokio::net::tcp::OwnedWriteHalf, frame: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let done = match w.try_write(frame) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    if done < frame.len() {
        w.write_all(&frame[done..]).await?;
    }
    Ok(())
}
