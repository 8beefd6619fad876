//! The baseline: the original design's routing layer, driven by the same simulated people.
//! Each person's report is `PUBLISH`ed to their own Redis channel; each WebSocket-server
//! stand-in holds one pub/sub connection subscribed to the channels of its users' friends,
//! and for every message checks each local friend's distance — the subscriber-side filter of
//! the original design — counting what passes as a delivery.
//!
//! With `--push`, the servers also do what the original design's WebSocket servers do next:
//! each delivery that passes the filter is written as a JSON text frame (WebSocket framing) to
//! its recipient's own TCP socket, one socket per person, read by a separate "phones" thread —
//! the per-delivery socket write our gateway pays too, so the two figures compare like with
//! like.
//!
//! Costs are read from /proc: Redis's CPU, and the harness's own threads separately (the
//! publisher stands in for the phones and is not counted as routing, nor are the phones'
//! readers; the subscriber thread is the servers' routing work). Not a product mode: a
//! bench-only harness.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use rand::Rng;
use serde::Serialize;

use crate::sim::{City, CityConfig};
use nearby_common::procfs::cpu_secs;

/// What the baseline run does.
#[derive(Debug, Clone, clap::Args)]
pub struct BaselineArgs {
    /// The simulated city (the same flags as the real run, so both see the same people).
    #[command(flatten)]
    pub city: CityConfig,
    /// Time between one person's reports (as the real run's `--interval`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How long to publish for (as the real run's `--duration`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// WebSocket-server stand-ins (one pub/sub connection each; people spread over them).
    #[arg(long, default_value_t = 2)]
    pub servers: usize,
    /// Also write each delivery to its recipient's own socket, as the servers of the original
    /// design push to phones (one loopback TCP socket per person: needs 2 × `--people` open
    /// files).
    #[arg(long)]
    pub push: bool,
    /// The distance filter, metres.
    #[arg(long, default_value_t = nearby_common::geo::NEARBY_RADIUS_M)]
    pub radius_m: f64,
    /// Redis to use.
    #[arg(
        long,
        env = "NEARBY_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,
    /// The Redis server's process id (default: the `redis-server` listening on the URL's port).
    #[arg(long)]
    pub redis_pid: Option<u32>,
    /// Where to write `baseline.json`.
    #[arg(long, default_value = "target/loadgen")]
    pub out: PathBuf,
}

/// What the baseline measured.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineResult {
    /// People simulated and their friends on average.
    pub people: usize,
    /// Friends per person on average.
    pub mean_degree: f64,
    /// Seconds published.
    pub seconds: f64,
    /// Reports published.
    pub published: u64,
    /// Messages Redis delivered to the subscriber connections (before the distance filter).
    pub received: u64,
    /// Messages that passed the distance filter (what a client would be sent).
    pub delivered: u64,
    /// Whether each delivery was also written to its recipient's socket (`--push`).
    pub push: bool,
    /// Bytes written to the recipients' sockets (`--push`).
    pub pushed_bytes: u64,
    /// CPU seconds of Redis during the run.
    pub redis_cpu_s: f64,
    /// CPU seconds of the subscriber side (the servers' routing and filtering).
    pub subscriber_cpu_s: f64,
    /// CPU seconds of the publisher side (the phones' stand-in; not routing).
    pub publisher_cpu_s: f64,
    /// Delivered messages per CPU-second of the routing layer (Redis + subscribers).
    pub delivered_per_cpu_s: f64,
    /// Publish → filtered receipt, ms.
    pub latency_ms: Percentiles,
}

/// Latency percentiles, ms.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples`.
    pub fn of(mut samples: Vec<f64>) -> Percentiles {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| crate::stats::percentile(&samples, q).unwrap_or(f64::NAN);
        Percentiles {
            count: samples.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// The process id of the `redis-server` listening on `port`. Found by `comm` and the address
/// in its command line: Redis rewrites its title to `redis-server ADDR:PORT`, so
/// [`nearby_common::procfs::pids_named`]'s `argv[0]` check does not match it.
fn find_redis(port: u16) -> Option<u32> {
    let want = format!(":{port}");
    nearby_common::procfs::processes()
        .into_iter()
        .find(|(_, comm, cmdline)| comm == "redis-server" && cmdline.contains(&want))
        .map(|(pid, _, _)| pid)
}

/// Positions as the servers know them (each server hears its own users' reports), shared
/// lock-free between the publishing and the subscribing thread: f64 bits in atomics.
struct Positions(Vec<(AtomicU64, AtomicU64)>);

impl Positions {
    fn set(&self, i: usize, (lat, lon): (f64, f64)) {
        self.0[i].0.store(lat.to_bits(), Ordering::Relaxed);
        self.0[i].1.store(lon.to_bits(), Ordering::Relaxed);
    }
    fn get(&self, i: usize) -> (f64, f64) {
        (
            f64::from_bits(self.0[i].0.load(Ordering::Relaxed)),
            f64::from_bits(self.0[i].1.load(Ordering::Relaxed)),
        )
    }
}

/// What the subscriber thread counted.
#[derive(Debug, Default)]
struct Received {
    received: u64,
    delivered: u64,
    pushed_bytes: u64,
    latencies_ms: Vec<f64>,
    cpu_s: f64,
}

/// Runs the baseline and writes `baseline.json` into `args.out`.
pub fn run(args: &BaselineArgs) -> anyhow::Result<BaselineResult> {
    let city = City::new(&args.city);
    let n = city.len();
    anyhow::ensure!(n > 1 && args.servers > 0, "need people and servers");
    let client = redis::Client::open(args.redis_url.as_str())?;
    let port = client.get_connection_info().addr().to_string();
    let port: u16 = port
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(6379);
    let redis_pid = args
        .redis_pid
        .or_else(|| find_redis(port))
        .context("no redis-server process found: pass --redis-pid")?;
    // Channels of this run only: other runs and tests share the Redis.
    let prefix = format!("bench:{:08x}:loc:", rand::rng().random::<u32>());
    let positions = Arc::new(Positions(
        (0..n)
            .map(|i| {
                let (lat, lon) = city.position(i);
                (AtomicU64::new(lat.to_bits()), AtomicU64::new(lon.to_bits()))
            })
            .collect(),
    ));
    let friends: Vec<Vec<u32>> = (0..n).map(|i| city.friends(i).to_vec()).collect();
    let mean_degree = city.mean_degree();

    // The phones (`--push`): one socket per person, accepted and drained by a thread of
    // their own (not counted); the servers' ends go to the subscriber thread.
    let phones = if args.push {
        Some(Phones::open(n)?)
    } else {
        None
    };
    let server_ends = phones.as_ref().map(|p| p.server_ends()).transpose()?;

    // The subscriber thread: every server's connection, subscribed before anything is sent.
    let subscribed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let subscriber = std::thread::spawn({
        let (client, prefix, positions) = (client.clone(), prefix.clone(), positions.clone());
        let (subscribed, stop) = (subscribed.clone(), stop.clone());
        let (servers, radius_m) = (args.servers, args.radius_m);
        move || -> anyhow::Result<Received> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let cpu0 = cpu_secs("thread-self").unwrap_or(0.0);
            let mut out = rt.block_on(subscribe_and_filter(
                &client,
                &prefix,
                &friends,
                servers,
                radius_m,
                &positions,
                server_ends,
                &subscribed,
                &stop,
            ))?;
            out.cpu_s = cpu_secs("thread-self").unwrap_or(0.0) - cpu0;
            Ok(out)
        }
    });
    while !subscribed.load(Ordering::Acquire) {
        if subscriber.is_finished() {
            return Err(subscriber
                .join()
                .map_err(|_| anyhow::anyhow!("subscriber panicked"))?
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("subscriber ended")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // The publisher: this thread, standing in for the phones.
    let redis0 = cpu_secs(&redis_pid.to_string()).unwrap_or(0.0);
    let pub_cpu0 = cpu_secs("thread-self").unwrap_or(0.0);
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let published = rt.block_on(publish(args, city, &client, &prefix, &positions))?;
    let seconds = started.elapsed().as_secs_f64();
    let publisher_cpu_s = cpu_secs("thread-self").unwrap_or(0.0) - pub_cpu0;
    // Let the last messages arrive, then stop the subscribers.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Release);
    let received = subscriber
        .join()
        .map_err(|_| anyhow::anyhow!("subscriber panicked"))??;
    let redis_cpu_s = cpu_secs(&redis_pid.to_string()).unwrap_or(0.0) - redis0;
    if let Some(phones) = phones {
        phones.stop();
    }

    let routing_cpu = redis_cpu_s + received.cpu_s;
    let result = BaselineResult {
        people: n,
        mean_degree,
        seconds,
        published,
        received: received.received,
        delivered: received.delivered,
        push: args.push,
        pushed_bytes: received.pushed_bytes,
        redis_cpu_s,
        subscriber_cpu_s: received.cpu_s,
        publisher_cpu_s,
        delivered_per_cpu_s: received.delivered as f64 / routing_cpu.max(1e-9),
        latency_ms: Percentiles::of(received.latencies_ms),
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join(if args.push {
            "baseline-push.json"
        } else {
            "baseline.json"
        }),
        serde_json::to_string_pretty(&result)?,
    )?;
    Ok(result)
}

/// Subscribes each server to its users' friends' channels, then counts and filters messages
/// until `stop`.
#[allow(clippy::too_many_arguments)]
async fn subscribe_and_filter(
    client: &redis::Client,
    prefix: &str,
    friends: &[Vec<u32>],
    servers: usize,
    radius_m: f64,
    positions: &Positions,
    mut sockets: Option<Vec<std::net::TcpStream>>,
    subscribed: &AtomicBool,
    stop: &AtomicBool,
) -> anyhow::Result<Received> {
    use std::io::Write;
    let mut frame = Vec::with_capacity(256);
    let mut streams = Vec::new();
    // Each server: channel (publisher index) → its local users who are that person's friends.
    let mut locals: Vec<HashMap<u32, Vec<u32>>> = vec![HashMap::new(); servers];
    for (user, list) in friends.iter().enumerate() {
        let server = user % servers;
        for &f in list {
            locals[server].entry(f).or_default().push(user as u32);
        }
    }
    for map in &locals {
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        let channels: Vec<String> = map.keys().map(|f| format!("{prefix}{f}")).collect();
        for chunk in channels.chunks(1_000) {
            sink.subscribe(chunk).await?;
        }
        // The sink must live as long as the stream reads.
        streams.push((sink, stream));
    }
    subscribed.store(true, Ordering::Release);

    let mut out = Received::default();
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
            let (ulat, ulon) = positions.get(user as usize);
            let distance_m = nearby_common::geo::haversine_m(lat, lon, ulat, ulon);
            if distance_m <= radius_m {
                out.delivered += 1;
                if let Some(sockets) = sockets.as_mut() {
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
                    sockets[user as usize].write_all(&frame)?;
                    out.pushed_bytes += frame.len() as u64;
                }
                out.latencies_ms
                    .push(now.saturating_sub(sent) as f64 / 1000.0);
            }
        }
    }
    Ok(out)
}

/// Publishes every person's report every `interval` (spread evenly, with jitter) for
/// `duration`; returns how many were published.
async fn publish(
    args: &BaselineArgs,
    mut city: City,
    client: &redis::Client,
    prefix: &str,
    positions: &Positions,
) -> anyhow::Result<u64> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let n = city.len();
    let mut rng = rand::rng();
    // Each person's next report time (s from the start), spread over the first interval.
    let (interval, duration) = (args.interval.as_secs_f64(), args.duration.as_secs_f64());
    let mut due: Vec<f64> = (0..n).map(|i| interval * i as f64 / n as f64).collect();
    let mut last: Vec<f64> = vec![0.0; n];
    let started = Instant::now();
    let mut published = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        let t = started.elapsed().as_secs_f64();
        if t >= duration {
            break;
        }
        let mut pipe = redis::pipe();
        let mut count = 0;
        for i in 0..n {
            if due[i] > t {
                continue;
            }
            let at = city.step(i, t - last[i]);
            last[i] = t;
            positions.set(i, at);
            let jitter = rng.random_range(-0.1..0.1) * interval;
            due[i] = t + (interval + jitter).max(1.0);
            pipe.publish(
                format!("{prefix}{i}"),
                format!("{},{},{}", at.0, at.1, nearby_common::clock::now_us()),
            )
            .ignore();
            count += 1;
        }
        if count > 0 {
            // One round trip per tick: publishing is not what is measured.
            pipe.query_async::<()>(&mut conn).await?;
            published += count;
        }
    }
    Ok(published)
}

/// `buf` := a server-to-client WebSocket text frame (FIN, unmasked) carrying `text`.
fn ws_text_frame(buf: &mut Vec<u8>, text: &str) {
    buf.clear();
    buf.push(0x81);
    let len = text.len();
    if len < 126 {
        buf.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        buf.push(126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    buf.extend_from_slice(text.as_bytes());
}

/// The phones of `--push`: a listener whose accepted sockets a thread of their own drains.
struct Phones {
    listener_addr: std::net::SocketAddr,
    people: usize,
    stop: Arc<AtomicBool>,
    reader: std::thread::JoinHandle<()>,
}

impl Phones {
    /// Listens on a loopback port and starts the draining thread for `people` sockets.
    fn open(people: usize) -> anyhow::Result<Phones> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let listener_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let reader = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    use tokio::io::AsyncReadExt;
                    let Ok(listener) = listener
                        .set_nonblocking(true)
                        .and_then(|()| tokio::net::TcpListener::from_std(listener))
                    else {
                        return;
                    };
                    let mut readers = Vec::with_capacity(people);
                    for _ in 0..people {
                        let Ok((mut socket, _)) = listener.accept().await else {
                            break;
                        };
                        readers.push(tokio::spawn(async move {
                            let mut buf = vec![0u8; 4096];
                            while socket.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                        }));
                    }
                    while !stop.load(Ordering::Acquire) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    for r in readers {
                        r.abort();
                    }
                });
            }
        });
        Ok(Phones {
            listener_addr,
            people,
            stop,
            reader,
        })
    }

    /// The servers' ends: one connected socket per person, in person order, Nagle off (as the
    /// gateway's).
    fn server_ends(&self) -> anyhow::Result<Vec<std::net::TcpStream>> {
        (0..self.people)
            .map(|_| {
                let s = std::net::TcpStream::connect(self.listener_addr)
                    .context("a phone socket (open files: `ulimit -n` ≥ 2 × --people)")?;
                s.set_nodelay(true)?;
                Ok(s)
            })
            .collect()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.reader.join();
    }
}
