//! Measures a RUNNING system (start it with `scripts/run.sh`) from the outside, with real
//! WebSocket clients and tokens minted here with the deployment's HS256 secret
//! (`NEARBY_JWT_SECRET`, the development secret by default). User ids are random per run.
//!
//! ```text
//! # Memory per idle connection: opens N authenticated sockets, reads the gateway's VmRSS before
//! # and after, closes them.
//! cargo run --release -p nearby-loadgen --example measure -- idle --connections 10000 --gateway-pid PID
//!
//! # End-to-end latency: P friend pairs a few hundred metres apart; each sender reports R times;
//! # latency = when the friend's socket got the `friend_location` − when the report was sent.
//! cargo run --release -p nearby-loadgen --example measure -- latency --pairs 50 --reports 20 --interval-ms 1100
//!
//! # Change latency: P friend pairs in range; C times, one pair's sender unfriends the receiver
//! # (or turns sharing off); latency = when the receiver got `friend_left` − when the HTTP call
//! # returned. Each change is undone (befriend again, sharing on) and that timed the same way.
//! cargo run --release -p nearby-loadgen --example measure -- changes --pairs 20 --changes 200
//! ```
//!
//! Measure idle memory on a freshly started gateway: memory freed after earlier connections stays
//! in its allocator and is reused, which would hide the growth.
//!
//! The idle clients spread over the source addresses 127.0.0.2, 127.0.0.3, ... (5,000 a source by
//! default) so the ephemeral ports of one address do not run out. Both this process and the
//! gateway need an open-file limit above N: this tool raises its own soft limit (with
//! `prlimit`, as far as the hard limit allows) and says what the gateway's is.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use futures::{SinkExt, StreamExt};
use nearby_common::clock::{now_ms, now_us};
use nearby_loadgen::net::user_base;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Metres per degree of latitude (the haversine radius the project uses).
const M_PER_DEG: f64 = 111_195.08;
/// Where the latency pairs stand (San Francisco).
const HOME: (f64, f64) = (37.7749, -122.4194);
/// How long one socket may take to connect and upgrade.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the minted tokens last.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

type Ws = WebSocketStream<TcpStream>;

#[derive(Debug, Parser)]
#[command(about = "Measures a running Nearby Friends system: idle memory and end-to-end latency")]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    mode: Mode,
}

/// Where the system runs and how to sign tokens.
#[derive(Debug, Args)]
struct Target {
    /// The gateway's client port.
    #[arg(long, global = true, default_value = "127.0.0.1:8080")]
    gateway: SocketAddr,
    /// The gateway's admin port (`/readyz` reports its connection count).
    #[arg(long, global = true, default_value = "127.0.0.1:9080")]
    gateway_admin: SocketAddr,
    /// The fanout's admin port.
    #[arg(long, global = true, default_value = "127.0.0.1:9081")]
    fanout_admin: SocketAddr,
    /// The HS256 secret the gateway verifies tokens with.
    #[arg(
        long,
        global = true,
        env = "NEARBY_JWT_SECRET",
        default_value = nearby_common::auth::DEV_SECRET,
        hide_env_values = true
    )]
    jwt_secret: String,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Gateway memory per idle authenticated connection.
    Idle(IdleArgs),
    /// Report-to-friend latency through gateway → Kafka → fanout → Kafka → gateway.
    Latency(LatencyArgs),
    /// Change-to-socket latency: from an unfriend or sharing-off call returning to the friend's
    /// socket getting `friend_left` (and from the undoing call to `friend_location`).
    Changes(ChangesArgs),
}

#[derive(Debug, Clone, Args)]
struct ChangesArgs {
    /// Friend pairs to take turns (each change waits for its effect before the next).
    #[arg(long, default_value_t = 20)]
    pairs: usize,
    /// Changes that end visibility (half unfriend, half sharing off), each undone after.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Seconds to wait for an effect before counting it missing.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// How many sockets to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// The gateway's process id (default: the one process named `nearby-gateway`).
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// The first client source address; the next ones follow (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, default_value = "127.0.0.2")]
    first_source: Ipv4Addr,
    /// Sockets per source address.
    #[arg(long, default_value_t = 5_000)]
    per_source: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds to wait, once all are open and registered, before reading the RSS.
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// Seconds to keep them open after the reading (past a ping round: 20 s), then read again.
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
    /// Print a JSON summary as well.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Args)]
struct LatencyArgs {
    /// Friend pairs (each a sender and a receiver).
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// Reports per sender.
    #[arg(long, default_value_t = 20)]
    reports: usize,
    /// Milliseconds between one sender's reports (the default limit is 1 report/s, burst 10).
    #[arg(long, default_value_t = 1100)]
    interval_ms: u64,
    /// How far apart the pair stands, metres (in range: under 5 miles).
    #[arg(long, default_value_t = 300.0)]
    distance_m: f64,
    /// Seconds to wait for a delivery before counting it missing.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Pairs set up (friendship, sockets, first positions) at once.
    #[arg(long, default_value_t = 10)]
    setup_concurrency: usize,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.mode {
        Mode::Idle(args) => idle(&cli.target, args).await,
        Mode::Latency(args) => latency(&cli.target, args).await,
        Mode::Changes(args) => changes(&cli.target, args).await,
    }
}

// ---------------------------------------------------------------------------------------------
// shared helpers

fn token(target: &Target, user: i64) -> String {
    nearby_common::auth::mint_hs256(target.jwt_secret.as_bytes(), user, TOKEN_TTL)
}

/// A minimal HTTP/1.1 call (one request per connection): status and body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    nearby_loadgen::net::http(addr, method, path, token, "").await
}

/// `/readyz` of an admin port; fails unless it answers 200.
async fn ready(addr: SocketAddr, what: &str) -> anyhow::Result<String> {
    let (status, body) = http(addr, "GET", "/readyz", None)
        .await
        .with_context(|| format!("{what} admin port {addr}: is the system running?"))?;
    if status != 200 {
        bail!("{what} at {addr} is not ready: {status} {body}");
    }
    Ok(body.trim().to_owned())
}

/// The connection count in the gateway's `/readyz` ("ready, N connections").
async fn gateway_connections(admin: SocketAddr) -> Option<usize> {
    let (_, body) = http(admin, "GET", "/readyz", None).await.ok()?;
    body.split(", ").nth(1)?.split(' ').next()?.parse().ok()
}

/// Percentile by nearest rank over sorted samples.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// /proc (the readings are shared with the load generator: `nearby_common::procfs`)

use nearby_common::procfs::{cpu_secs, machine_ticks, nofile, parse_limit, raise_nofile, vm_kib};

/// How busy the whole machine was since a `machine_ticks` reading, percent of all cores.
fn busy_percent(before: Option<(u64, u64)>) -> String {
    nearby_common::procfs::busy_share(before)
        .map_or("?".to_owned(), |b| format!("{:.0}%", b * 100.0))
}

/// Open file descriptors of a process.
fn open_fds(pid: &str) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The one process named `nearby-gateway`.
fn find_gateway_pid() -> anyhow::Result<u32> {
    nearby_common::procfs::pid_named("nearby-gateway").context("give --gateway-pid")
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// idle

/// Counters shared by the idle sockets' tasks.
#[derive(Debug, Default)]
struct IdleStats {
    /// Sockets open right now.
    open: AtomicUsize,
    /// Sockets the server closed or that broke before we closed them.
    lost: AtomicUsize,
    /// Pings the gateway sent (answered by tungstenite while reading).
    pings: AtomicU64,
}

/// Keeps one idle socket: reads it (which answers pings) until told to close.
async fn hold(mut ws: Ws, stop: CancellationToken, stats: Arc<IdleStats>) {
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = ws.close(None).await;
                let drain = async { while let Some(Ok(_)) = ws.next().await {} };
                let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
                break;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Ping(_))) => {
                    stats.pings.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    stats.lost.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
async fn idle(target: &Target, args: &IdleArgs) -> anyhow::Result<()> {
    let n = args.connections;
    let pid = match args.gateway_pid {
        Some(p) => p,
        None => find_gateway_pid()?,
    }
    .to_string();
    let me = std::process::id().to_string();
    let _ = raise_nofile(n as u64 + 1024);
    let (my_soft, my_hard) = nofile(&me).unwrap_or_default();
    let (gw_soft, gw_hard) = nofile(&pid).unwrap_or_default();
    let sources = n.div_ceil(args.per_source.max(1)).max(1);
    let last_source = Ipv4Addr::from(u32::from(args.first_source) + (sources as u32 - 1));
    println!(
        "idle: {n} connections to {} from {}..{} ({} a source), {} handshakes in flight",
        target.gateway, args.first_source, last_source, args.per_source, args.concurrency
    );
    println!(
        "  open-file limit: measure soft {my_soft} hard {my_hard}; gateway (pid {pid}) soft {gw_soft} hard {gw_hard}, {} fds open",
        open_fds(&pid).map_or("?".into(), |c| c.to_string())
    );
    if parse_limit(&gw_soft) < n as u64 + 100 {
        eprintln!(
            "  warning: the gateway's soft open-file limit ({gw_soft}) is under {n} + its own files: \
             start it with a higher `ulimit -n` or `prlimit --pid {pid} --nofile=65536:65536`"
        );
    }
    println!(
        "  gateway: {}",
        ready(target.gateway_admin, "the gateway").await?
    );

    let rss_before = vm_kib(&pid, "VmRSS")?;
    let (gw_cpu0, my_cpu0, machine0) = (cpu_secs(&pid), cpu_secs("self"), machine_ticks());
    let base = user_base();
    let stop = CancellationToken::new();
    let stats = Arc::new(IdleStats::default());
    let started = Instant::now();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut tasks = Vec::with_capacity(n);
    let mut opens = futures::stream::iter(0..n)
        .map(|i| {
            let source =
                Ipv4Addr::from(u32::from(args.first_source) + (i / args.per_source) as u32);
            let token = token(target, base + i as i64);
            let gateway = target.gateway;
            async move {
                // A gateway out of file descriptors leaves sockets in its backlog, unanswered.
                tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    nearby_loadgen::net::connect_from(source, gateway, &token),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no handshake within {CONNECT_TIMEOUT:?}")))
            }
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(result) = opens.next().await {
        match result {
            Ok(ws) => {
                stats.open.fetch_add(1, Ordering::Relaxed);
                tasks.push(tokio::spawn(hold(ws, stop.clone(), stats.clone())));
            }
            Err(e) => *errors.entry(format!("{e:#}")).or_default() += 1,
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    let opened = tasks.len();
    let cpu_used = |before: Option<f64>, pid: &str| match (before, cpu_secs(pid)) {
        (Some(a), Some(b)) => format!("{:.2} s", b - a),
        _ => "?".to_owned(),
    };
    println!(
        "  opened {opened}/{n} in {open_secs:.2} s ({:.0}/s), {} failed; CPU used meanwhile: gateway {}, this client {}, machine {} busy",
        opened as f64 / open_secs,
        n - opened,
        cpu_used(gw_cpu0, &pid),
        cpu_used(my_cpu0, "self"),
        busy_percent(machine0),
    );
    for (e, count) in &errors {
        println!("    {count} × {e}");
    }

    // Settle: the gateway registers a socket once its `connected` event is in Kafka.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut registered = gateway_connections(target.gateway_admin).await;
    while registered.is_none_or(|c| c < opened) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        registered = gateway_connections(target.gateway_admin).await;
    }
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let registered = gateway_connections(target.gateway_admin).await;
    let rss_after = vm_kib(&pid, "VmRSS")?;
    let gw_fds = open_fds(&pid);
    let still_open = stats.open.load(Ordering::Relaxed);
    let per_conn = if opened == 0 {
        f64::NAN
    } else {
        (rss_after as f64 - rss_before as f64) * 1024.0 / opened as f64
    };
    println!(
        "  after {} s settling: {still_open} open here, gateway counts {}, gateway fds {}",
        args.settle_secs,
        registered.map_or("?".into(), |c| c.to_string()),
        gw_fds.map_or("?".into(), |c| c.to_string())
    );
    println!(
        "  gateway VmRSS before: {rss_before} KiB ({:.1} MiB)",
        mib(rss_before)
    );
    println!(
        "  gateway VmRSS after:  {rss_after} KiB ({:.1} MiB)",
        mib(rss_after)
    );
    println!(
        "  per idle connection:  {per_conn:.0} bytes ({:.2} KiB) = (after − before) / {opened}",
        per_conn / 1024.0
    );
    let my_rss = vm_kib("self", "VmRSS").unwrap_or(0);
    println!(
        "  (this client's own VmRSS: {my_rss} KiB, {:.1} MiB)",
        mib(my_rss)
    );

    let mut held = None;
    if args.hold_secs > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
        let rss_held = vm_kib(&pid, "VmRSS")?;
        let open_now = stats.open.load(Ordering::Relaxed);
        println!(
            "  after {} s more: {open_now} open, {} pings answered, gateway VmRSS {rss_held} KiB ({:.1} MiB, {:.0} bytes/connection)",
            args.hold_secs,
            stats.pings.load(Ordering::Relaxed),
            mib(rss_held),
            (rss_held as f64 - rss_before as f64) * 1024.0 / opened.max(1) as f64
        );
        held = Some((rss_held, open_now));
    }

    let closing = Instant::now();
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let close_secs = closing.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while gateway_connections(target.gateway_admin)
        .await
        .is_some_and(|c| c > 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rss_closed = vm_kib(&pid, "VmRSS")?;
    let lost = stats.lost.load(Ordering::Relaxed);
    println!(
        "  closed all in {close_secs:.2} s ({lost} had been closed by the server or broke); gateway VmRSS after closing: {rss_closed} KiB ({:.1} MiB)",
        mib(rss_closed)
    );

    if args.json {
        let summary = json!({
            "mode": "idle",
            "connections": n,
            "opened": opened,
            "failed": n - opened,
            "open_seconds": open_secs,
            "gateway_pid": pid,
            "gateway_nofile": {"soft": gw_soft, "hard": gw_hard},
            "gateway_registered": registered,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "bytes_per_connection": per_conn,
            "held": held.map(|(rss, open)| json!({"seconds": args.hold_secs, "rss_kib": rss, "open": open})),
            "rss_after_close_kib": rss_closed,
            "lost": lost,
        });
        println!("{summary}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// latency

/// A frame as it arrived: wall time (epoch µs, taken before parsing) and the JSON.
type Arrival = (i64, Value);

/// Splits a socket: the sending half for the caller, a task that stamps and forwards every
/// text frame (reading also answers the gateway's pings).
fn reader(
    ws: Ws,
) -> (
    futures::stream::SplitSink<Ws, Message>,
    mpsc::UnboundedReceiver<Arrival>,
) {
    let (sink, mut stream) = ws.split();
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
async fn next_of(
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

async fn ws_connect(target: &Target, user: i64) -> anyhow::Result<Ws> {
    let connect = async {
        let stream = TcpStream::connect(target.gateway).await?;
        stream.set_nodelay(true)?;
        let url = format!(
            "ws://{}/v1/ws?access_token={}",
            target.gateway,
            token(target, user)
        );
        anyhow::Ok(tokio_tungstenite::client_async(url, stream).await?.0)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .context("no WebSocket handshake in time")?
}

fn location(at: (f64, f64), ts: i64) -> Message {
    Message::text(json!({"type": "location", "lat": at.0, "lon": at.1, "ts": ts}).to_string())
}

/// A point `m` metres north of HOME.
fn north(m: f64) -> (f64, f64) {
    (HOME.0 + m / M_PER_DEG, HOME.1)
}

/// Makes `a` and `b` accepted friends through the HTTP API.
async fn befriend(target: &Target, a: i64, b: i64) -> anyhow::Result<()> {
    let (ta, tb) = (token(target, a), token(target, b));
    for t in [&ta, &tb] {
        let (status, body) = http(target.gateway, "GET", "/v1/me", Some(t)).await?;
        if status != 200 {
            bail!("GET /v1/me: {status} {body}");
        }
    }
    for (t, other, want) in [(&ta, b, "requested"), (&tb, a, "accepted")] {
        let path = format!("/v1/me/friends/{other}");
        let (status, body) = http(target.gateway, "PUT", &path, Some(t)).await?;
        let got: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status != 200 || got["status"] != want {
            bail!("PUT {path}: {status} {body} (wanted {want})");
        }
    }
    Ok(())
}

/// One pair, connected, in range, and seen by each other once.
struct Pair {
    sender: i64,
    tx: futures::stream::SplitSink<Ws, Message>,
    sender_rx: mpsc::UnboundedReceiver<Arrival>,
    receiver_rx: mpsc::UnboundedReceiver<Arrival>,
    /// Keeps the receiver's socket open.
    _receiver_tx: futures::stream::SplitSink<Ws, Message>,
}

async fn setup_pair(
    target: &Target,
    args: &LatencyArgs,
    sender: i64,
    receiver: i64,
) -> anyhow::Result<Pair> {
    befriend(target, sender, receiver).await?;
    let (mut receiver_tx, mut receiver_rx) = reader(ws_connect(target, receiver).await?);
    let (mut tx, mut sender_rx) = reader(ws_connect(target, sender).await?);
    let wait = Duration::from_secs(args.timeout_secs.max(15));
    receiver_tx.send(location(HOME, now_ms())).await?;
    next_of(&mut receiver_rx, "nearby", wait, |_| {})
        .await
        .context("the receiver's first page never came")?;
    let t0 = now_ms();
    tx.send(location(north(args.distance_m), t0)).await?;
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

/// What one pair measured.
#[derive(Debug, Default)]
struct PairResult {
    sent: usize,
    send_failed: usize,
    /// Latency samples, ms: receive − the exact send time the `ts` was taken from.
    by_send: Vec<f64>,
    /// Latency samples, ms: receive wall time − `updated_at` (whole ms).
    by_updated_at: Vec<f64>,
    duplicates: usize,
    /// `error` frames the sender got, by code.
    errors: BTreeMap<String, usize>,
}

#[allow(clippy::cast_precision_loss)]
async fn run_pair(
    mut pair: Pair,
    args: &LatencyArgs,
    start_at: tokio::time::Instant,
) -> PairResult {
    let mut result = PairResult::default();
    let interval = Duration::from_millis(args.interval_ms);
    // ts (ms) → exact send time (µs).
    let mut sent: HashMap<i64, i64> = HashMap::new();
    let mut got: HashMap<i64, i64> = HashMap::new();
    let sender_id = pair.sender.to_string();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut count_error = |v: &Value| {
        if v["type"] == "error" {
            let code = v["code"].as_str().unwrap_or("?").to_owned();
            *errors.entry(code).or_default() += 1;
        }
    };
    let on_receiver = |(at, v): Arrival, got: &mut HashMap<i64, i64>, dup: &mut usize| {
        if v["type"] == "friend_location"
            && v["user_id"].as_str() == Some(sender_id.as_str())
            && let Some(ts) = v["updated_at"].as_i64()
            && got.insert(ts, at).is_some()
        {
            *dup += 1;
        }
    };
    let mut duplicates = 0;
    let mut tick = tokio::time::interval_at(start_at, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..args.reports {
        // Wait for the next tick while taking in what arrives.
        let mut ticked = std::pin::pin!(tick.tick());
        loop {
            tokio::select! {
                _ = &mut ticked => break,
                Some(a) = pair.receiver_rx.recv() => on_receiver(a, &mut got, &mut duplicates),
                Some((_, v)) = pair.sender_rx.recv() => count_error(&v),
            }
        }
        // A little movement each time (alternating 0/1 m), within range.
        let at = north(args.distance_m + (i % 2) as f64);
        let send_us = now_us();
        let ts = send_us.div_euclid(1000);
        if pair.tx.send(location(at, ts)).await.is_ok() {
            sent.insert(ts, send_us);
            result.sent += 1;
        } else {
            result.send_failed += 1;
        }
    }
    // Wait for the rest, up to the timeout after the last send.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    while sent.keys().any(|ts| !got.contains_key(ts)) {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            a = pair.receiver_rx.recv() => match a {
                Some(a) => on_receiver(a, &mut got, &mut duplicates),
                None => break,
            },
            Some((_, v)) = pair.sender_rx.recv() => count_error(&v),
        }
    }
    while let Ok((_, v)) = pair.sender_rx.try_recv() {
        count_error(&v);
    }
    for (ts, send_us) in &sent {
        if let Some(at) = got.get(ts) {
            result.by_send.push((at - send_us) as f64 / 1000.0);
            result.by_updated_at.push((at - ts * 1000) as f64 / 1000.0);
        }
    }
    result.duplicates = duplicates;
    result.errors = errors;
    let _ = pair.tx.close().await;
    result
}

#[derive(Debug)]
struct Stats {
    count: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
    min: f64,
}

#[allow(clippy::cast_precision_loss)]
fn stats(mut samples: Vec<f64>) -> Stats {
    samples.sort_by(f64::total_cmp);
    let count = samples.len();
    Stats {
        count,
        p50: percentile(&samples, 0.50),
        p90: percentile(&samples, 0.90),
        p99: percentile(&samples, 0.99),
        max: samples.last().copied().unwrap_or(f64::NAN),
        min: samples.first().copied().unwrap_or(f64::NAN),
        mean: samples.iter().sum::<f64>() / count.max(1) as f64,
    }
}

fn stats_json(s: &Stats) -> Value {
    json!({"count": s.count, "p50_ms": s.p50, "p90_ms": s.p90, "p99_ms": s.p99, "max_ms": s.max, "min_ms": s.min, "mean_ms": s.mean})
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
async fn latency(target: &Target, args: &LatencyArgs) -> anyhow::Result<()> {
    let gw_ready = ready(target.gateway_admin, "the gateway").await?;
    let fanout_ready = ready(target.fanout_admin, "the fanout").await?;
    if args.interval_ms < 1000 {
        eprintln!(
            "measure: warning: {} ms between reports is over the default limit of 1 report/s \
             (burst 10): start the gateway with a higher NEARBY_INGEST_RATE_PER_SEC",
            args.interval_ms
        );
    }
    if !args.json {
        println!(
            "latency: {} pairs × {} reports every {} ms, {} m apart, via {}",
            args.pairs, args.reports, args.interval_ms, args.distance_m, target.gateway
        );
        println!("  gateway: {gw_ready}; fanout: {fanout_ready}");
    }

    // Set up: friendships, sockets, first positions, and one delivery each way.
    let base = user_base();
    let setup_started = Instant::now();
    let setups: Vec<(usize, anyhow::Result<Pair>)> = futures::stream::iter(0..args.pairs)
        .map(|i| {
            let sender = base + 2 * i as i64;
            async move { (i, setup_pair(target, args, sender, sender + 1).await) }
        })
        .buffer_unordered(args.setup_concurrency.max(1))
        .collect()
        .await;
    let mut pairs = Vec::new();
    let mut setup_errors: BTreeMap<String, usize> = BTreeMap::new();
    for (_, r) in setups {
        match r {
            Ok(p) => pairs.push(p),
            Err(e) => *setup_errors.entry(format!("{e:#}")).or_default() += 1,
        }
    }
    if !args.json {
        println!(
            "  set up {}/{} pairs in {:.1} s",
            pairs.len(),
            args.pairs,
            setup_started.elapsed().as_secs_f64()
        );
        for (e, c) in &setup_errors {
            println!("    {c} × {e}");
        }
    }

    // Measure: the senders' reports spread evenly over one interval.
    let interval = Duration::from_millis(args.interval_ms);
    let t0 = tokio::time::Instant::now() + Duration::from_millis(500);
    let pairs_ok = pairs.len();
    let n_pairs = pairs_ok.max(1) as u32;
    let measuring = Instant::now();
    let machine0 = machine_ticks();
    let tasks: Vec<_> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, pair)| {
            let start_at = t0 + interval * (i as u32) / n_pairs;
            let args = args.clone();
            tokio::spawn(async move { run_pair(pair, &args, start_at).await })
        })
        .collect();
    let mut by_send = Vec::new();
    let mut by_updated_at = Vec::new();
    let (mut sent, mut send_failed, mut duplicates) = (0, 0, 0);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        let r = task.await?;
        sent += r.sent;
        send_failed += r.send_failed;
        duplicates += r.duplicates;
        by_send.extend(r.by_send);
        by_updated_at.extend(r.by_updated_at);
        for (code, c) in r.errors {
            *errors.entry(code).or_default() += c;
        }
    }
    let busy = busy_percent(machine0);
    let wanted = args.pairs * args.reports;
    let missing = wanted - by_send.len();
    let missing_of_sent = sent - by_send.len();
    let s = stats(by_send);
    let u = stats(by_updated_at);

    if args.json {
        let summary = json!({
            "mode": "latency",
            "pairs": args.pairs,
            "pairs_set_up": pairs_ok,
            "reports_per_pair": args.reports,
            "interval_ms": args.interval_ms,
            "wanted": wanted,
            "sent": sent,
            "send_failed": send_failed,
            "missing": missing,
            "missing_of_sent": missing_of_sent,
            "duplicates": duplicates,
            "sender_errors": errors,
            "setup_errors": setup_errors,
            "latency": stats_json(&s),
            "latency_by_updated_at": stats_json(&u),
            "seconds": measuring.elapsed().as_secs_f64(),
            "machine_busy": busy,
        });
        println!("{summary}");
        return Ok(());
    }
    println!(
        "  measured in {:.1} s (machine {busy} busy): {} samples of {wanted} wanted ({sent} sent, {send_failed} send failures), {missing} missing ({missing_of_sent} of those sent), {duplicates} duplicates",
        measuring.elapsed().as_secs_f64(),
        s.count
    );
    if !errors.is_empty() {
        println!("  error frames the senders got: {errors:?}");
    }
    println!(
        "  latency (ms, receive − send): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (min {:.2}, mean {:.2}, count {})",
        s.p50, s.p90, s.p99, s.max, s.min, s.mean, s.count
    );
    println!(
        "  latency (ms, receive − updated_at): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (count {})",
        u.p50, u.p90, u.p99, u.max, u.count
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// changes

/// Waits for the frame of `kind` about `friend` on `rx`; its arrival time (epoch µs).
async fn arrival_of(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    kind: &str,
    friend: i64,
    within: Duration,
) -> Option<(i64, Value)> {
    let id = friend.to_string();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (at, v) = next_of(rx, kind, left, |_| {}).await?;
        if v["user_id"].as_str() == Some(id.as_str()) {
            return Some((at, v));
        }
    }
}

/// A call that must answer 200, timed: (start, return) in epoch µs.
async fn timed_call(
    target: &Target,
    user: i64,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(i64, i64)> {
    let start = now_us();
    let (status, answer) = nearby_loadgen::net::http(
        target.gateway,
        method,
        path,
        Some(&token(target, user)),
        body,
    )
    .await?;
    let returned = now_us();
    if status != 200 {
        bail!("{method} {path}: {status} {answer}");
    }
    Ok((start, returned))
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
async fn changes(target: &Target, args: &ChangesArgs) -> anyhow::Result<()> {
    let gw_ready = ready(target.gateway_admin, "the gateway").await?;
    let fanout_ready = ready(target.fanout_admin, "the fanout").await?;
    let setup_args = LatencyArgs {
        pairs: args.pairs,
        reports: 0,
        interval_ms: 1000,
        distance_m: 300.0,
        timeout_secs: args.timeout_secs,
        setup_concurrency: 10,
        json: args.json,
    };
    let base = user_base();
    let mut pairs = Vec::new();
    for i in 0..args.pairs.max(1) {
        let sender = base + 2 * i as i64;
        pairs.push(setup_pair(target, &setup_args, sender, sender + 1).await?);
    }
    if !args.json {
        println!(
            "changes: {} changes over {} pairs, one at a time, via {}",
            args.changes, args.pairs, target.gateway
        );
        println!("  gateway: {gw_ready}; fanout: {fanout_ready}");
    }
    let within = Duration::from_secs(args.timeout_secs);
    let (mut left_after_return, mut left_after_start) = (Vec::new(), Vec::new());
    let mut back_after_return = Vec::new();
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut missing = 0usize;
    for k in 0..args.changes {
        let n = pairs.len();
        let pair = &mut pairs[k % n];
        let (sender, receiver) = (pair.sender, pair.sender + 1);
        let unfriend = k % 2 == 0;
        let (start, returned) = if unfriend {
            let path = format!("/v1/me/friends/{receiver}");
            timed_call(target, sender, "DELETE", &path, "").await?
        } else {
            let body = r#"{"enabled": false}"#;
            timed_call(target, sender, "PUT", "/v1/me/sharing", body).await?
        };
        let reason = if unfriend {
            "unfriended"
        } else {
            "sharing_off"
        };
        match arrival_of(&mut pair.receiver_rx, "friend_left", sender, within).await {
            Some((at, v)) if v["reason"] == reason => {
                let ms = (at - returned) as f64 / 1000.0;
                left_after_return.push(ms);
                left_after_start.push((at - start) as f64 / 1000.0);
                by_kind.entry(reason).or_default().push(ms);
            }
            _ => missing += 1,
        }
        // Undo it, and time the friend coming back the same way.
        let (_, returned) = if unfriend {
            let path = format!("/v1/me/friends/{receiver}");
            timed_call(target, sender, "PUT", &path, "").await?;
            let path = format!("/v1/me/friends/{sender}");
            timed_call(target, receiver, "PUT", &path, "").await?
        } else {
            let body = r#"{"enabled": true}"#;
            timed_call(target, sender, "PUT", "/v1/me/sharing", body).await?
        };
        match arrival_of(&mut pair.receiver_rx, "friend_location", sender, within).await {
            Some((at, _)) => back_after_return.push((at - returned) as f64 / 1000.0),
            None => missing += 1,
        }
        // The sender's own socket gets its side too; drop what it holds.
        while pair.sender_rx.try_recv().is_ok() {}
    }
    let left = stats(left_after_return);
    let left_start = stats(left_after_start);
    let back = stats(back_after_return);
    if args.json {
        let kinds: serde_json::Map<String, Value> = by_kind
            .into_iter()
            .map(|(k, v)| (k.to_owned(), stats_json(&stats(v))))
            .collect();
        println!(
            "{}",
            json!({
                "mode": "changes",
                "pairs": args.pairs,
                "changes": args.changes,
                "missing": missing,
                "friend_left_after_return": stats_json(&left),
                "friend_left_after_call_start": stats_json(&left_start),
                "friend_left_by_reason": kinds,
                "friend_back_after_return": stats_json(&back),
            })
        );
        return Ok(());
    }
    let line = |name: &str, s: &Stats| {
        println!(
            "  {name}: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms  (min {:.2}, count {})",
            s.p50, s.p90, s.p99, s.max, s.min, s.count
        );
    };
    println!("  {missing} effects missing");
    line("friend_left after the call returned", &left);
    line("friend_left after the call started ", &left_start);
    for (reason, samples) in by_kind {
        line(&format!("  of which {reason:<11}"), &stats(samples));
    }
    line("friend back after the undo returned", &back);
    Ok(())
}
