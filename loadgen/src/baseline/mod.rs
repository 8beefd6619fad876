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
//! With `--intake` (which needs `--push`), the servers also take each report in as the original
//! design's servers do: the phones write it to their socket as a `location` frame, and the
//! server reads, parses and checks it, then `SET`s it in the location cache and `PUBLISH`es it
//! (see [`intake`]). Without it, a publisher thread standing in for the servers' intake
//! pipelines each 10 ms tick's reports to Redis in one round trip, and is not counted.
//!
//! Costs are read from /proc: Redis's CPU, and the harness's own threads separately (the
//! publisher stands in for the phones and is not counted as routing, nor are the phones'
//! readers; the subscriber thread is the servers' routing work). Not a product mode: a
//! bench-only harness.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use serde::Serialize;

use crate::sim::{City, CityConfig};
use intake::IntakeCounts;
use phones::{Phones, ws_masked_text_frame};
use servers::{Received, Servers};

mod intake;
mod phones;
mod servers;
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
    /// Also take each report in on the servers, as the original design's do: each phone writes
    /// its report to its socket as a `location` frame; the server reads, parses and checks it,
    /// then `SET`s and `PUBLISH`es it in one Redis round trip. Counted as the servers' work.
    #[arg(long, requires = "push")]
    pub intake: bool,
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
    /// Whether the servers took the reports in from the phones' sockets (`--intake`).
    pub intake: bool,
    /// Reports the servers took in, stored and published (`--intake`).
    pub intake_reports: u64,
    /// Frames the servers refused or could not store (`--intake`; 0 expected).
    pub intake_refused: u64,
    /// CPU seconds of Redis during the run.
    pub redis_cpu_s: f64,
    /// Times the servers' thread blocked and was woken again, per report (voluntary context
    /// switches), and times the scheduler took its core (involuntary), as `run` reports them
    /// for our stages.
    pub server_switches_per_report: (f64, f64),
    /// The same for Redis's threads.
    pub redis_switches_per_report: (f64, f64),
    /// CPU seconds of the servers' thread: routing, filtering, pushing, and with `--intake` the
    /// reports' intake.
    pub subscriber_cpu_s: f64,
    /// CPU seconds of the publisher side (the phones' stand-in, or the uncounted intake's
    /// without `--intake`).
    pub publisher_cpu_s: f64,
    /// Delivered messages per CPU-second of the routing layer (Redis + subscribers).
    pub delivered_per_cpu_s: f64,
    /// Publish (with `--intake`: the server's receipt of the report) → filtered receipt, ms.
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
#[derive(Debug)]
pub struct Positions(Vec<(AtomicU64, AtomicU64)>);

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

/// The (voluntary, involuntary) context switches of the calling thread (`thread-self`) or of
/// every thread of a process.
fn switches(pid: &str) -> (u64, u64) {
    if pid == "thread-self" {
        return nearby_common::procfs::switches(pid).unwrap_or_default();
    }
    nearby_common::procfs::thread_switches(pid)
        .values()
        .fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1))
}

fn minus(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))
}

#[allow(clippy::cast_precision_loss)]
fn per((v, i): (u64, u64), reports: u64) -> (f64, f64) {
    let n = reports.max(1) as f64;
    (v as f64 / n, i as f64 / n)
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

    // The phones (`--push`): one socket per person, drained (and with `--intake` written)
    // by a thread of their own (not counted); the servers' ends go to the servers' thread.
    let (phones, server_ends) = if args.push {
        let (phones, ends) = Phones::open(n, args.intake)?;
        (Some(phones), Some(ends))
    } else {
        (None, None)
    };
    let counts = Arc::new(IntakeCounts::default());

    // The subscriber thread: every server's connection, subscribed before anything is sent.
    let subscribed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let subscriber = std::thread::spawn({
        let (client, prefix, positions) = (client.clone(), prefix.clone(), positions.clone());
        let (subscribed, stop, counts) = (subscribed.clone(), stop.clone(), counts.clone());
        let (servers, radius_m, intake) = (args.servers, args.radius_m, args.intake);
        move || -> anyhow::Result<Received> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let cpu0 = cpu_secs("thread-self").unwrap_or(0.0);
            let switches0 = switches("thread-self");
            let servers = Servers {
                client,
                prefix,
                friends,
                count: servers,
                radius_m,
                positions,
                intake: intake.then_some(counts),
            };
            let mut out = rt.block_on(servers.run(server_ends, &subscribed, &stop))?;
            out.cpu_s = cpu_secs("thread-self").unwrap_or(0.0) - cpu0;
            out.switches = minus(switches("thread-self"), switches0);
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
    let redis_switches0 = switches(&redis_pid.to_string());
    let pub_cpu0 = cpu_secs("thread-self").unwrap_or(0.0);
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let published = rt.block_on(publish(
        args,
        city,
        &client,
        &prefix,
        &positions,
        phones.as_ref().filter(|_| args.intake),
    ))?;
    let seconds = started.elapsed().as_secs_f64();
    let publisher_cpu_s = cpu_secs("thread-self").unwrap_or(0.0) - pub_cpu0;
    // Let the last messages arrive, then stop the subscribers.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Release);
    let received = subscriber
        .join()
        .map_err(|_| anyhow::anyhow!("subscriber panicked"))??;
    let redis_cpu_s = cpu_secs(&redis_pid.to_string()).unwrap_or(0.0) - redis0;
    let redis_switches = minus(switches(&redis_pid.to_string()), redis_switches0);
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
        intake: args.intake,
        intake_reports: counts.reports.load(Ordering::Relaxed),
        intake_refused: counts.refused.load(Ordering::Relaxed),
        redis_cpu_s,
        server_switches_per_report: per(received.switches, published),
        redis_switches_per_report: per(redis_switches, published),
        subscriber_cpu_s: received.cpu_s,
        publisher_cpu_s,
        delivered_per_cpu_s: received.delivered as f64 / routing_cpu.max(1e-9),
        latency_ms: Percentiles::of(received.latencies_ms),
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join(file_name(args)),
        serde_json::to_string_pretty(&result)?,
    )?;
    Ok(result)
}

/// The file a baseline run writes its result to.
pub fn file_name(args: &BaselineArgs) -> &'static str {
    match (args.push, args.intake) {
        (_, true) => "baseline-intake.json",
        (true, false) => "baseline-push.json",
        (false, false) => "baseline.json",
    }
}

/// Publishes every person's report every `interval` (spread evenly, with jitter) for
/// `duration`; returns how many were published. With `phones` (`--intake`), each report goes
/// to the person's socket as a `location` frame instead, for the servers to take in.
async fn publish(
    args: &BaselineArgs,
    mut city: City,
    client: &redis::Client,
    prefix: &str,
    positions: &Positions,
    phones: Option<&Phones>,
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
        let mut frames = Vec::new();
        let mut count = 0;
        for i in 0..n {
            if due[i] > t {
                continue;
            }
            let at = city.step(i, t - last[i]);
            last[i] = t;
            let jitter = rng.random_range(-0.1..0.1) * interval;
            due[i] = t + (interval + jitter).max(1.0);
            count += 1;
            if phones.is_some() {
                let text = format!(
                    r#"{{"type":"location","lat":{},"lon":{},"ts":{}}}"#,
                    at.0,
                    at.1,
                    nearby_common::clock::now_ms()
                );
                frames.push((i as u32, ws_masked_text_frame(&text)));
                continue;
            }
            positions.set(i, at);
            pipe.publish(
                format!("{prefix}{i}"),
                format!("{},{},{}", at.0, at.1, nearby_common::clock::now_us()),
            )
            .ignore();
        }
        if count == 0 {
            continue;
        }
        match phones {
            Some(phones) => phones.send(frames).await?,
            // One round trip per tick: publishing is not what is measured.
            None => pipe.query_async::<()>(&mut conn).await?,
        }
        published += count;
    }
    Ok(published)
}
