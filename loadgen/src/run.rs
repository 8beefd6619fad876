//! `nearby-loadgen run`: drives a running system with the simulated city. Sets up the people
//! and friendships, opens one WebSocket per person (spread over 127.0.0.x source addresses),
//! has everyone report every `--interval` (with jitter, moving as the city moves them), and
//! times every `friend_location` on the receiving socket against the send time of the report
//! that caused it: the friend's report it carries (matched by sender and `updated_at` = the
//! report's `ts`), or the recipient's own latest report when that was sent later (a friend
//! shown because the recipient came into range carries the friend's older report). Meanwhile it reads the
//! stages' CPU time and the gateway's memory from /proc and samples the history sink's
//! consumer lag; at the end it writes a JSON result and an SVG plot.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use nearby_common::stack::StackArgs;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::lag::{LagSample, LagTarget};
use crate::net::{self, Ws};
use crate::procfs;
use crate::setup::{self, SetupMode};
use crate::sim::{City, CityConfig};
use crate::stats::{self, Latency};

/// The gateway's per-user report limit is 1 a second (burst 10): never report more often.
const MIN_REPORT_GAP: Duration = Duration::from_secs(1);
/// Send times kept per person (enough for every report still in flight).
const SENT_KEPT: usize = 64;

/// An admin address, or `none` for a system that has none to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeAddr(pub Option<SocketAddr>);

impl FromStr for MaybeAddr {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            Ok(Self(None))
        } else {
            s.parse().map(|a| Self(Some(a)))
        }
    }
}

/// What `run` does: the city, the system, the load and where the result goes.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The simulated city.
    #[command(flatten)]
    pub city: CityConfig,
    /// The stack (Kafka for the lag readings, the CQL store for `--setup bulk`).
    #[command(flatten)]
    pub stack: StackArgs,
    /// The scenario's name, for the result's file names.
    #[arg(long, default_value = "custom")]
    pub scenario: String,
    /// The gateway's client port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub gateway: SocketAddr,
    /// The gateway's admin port (`none`: not asked).
    #[arg(long, default_value = "127.0.0.1:9080")]
    pub gateway_admin: MaybeAddr,
    /// The fanout's admin port (`none`: not asked).
    #[arg(long, default_value = "127.0.0.1:9081")]
    pub fanout_admin: MaybeAddr,
    /// The history sink's admin port (`none`: not asked).
    #[arg(long, default_value = "127.0.0.1:9082")]
    pub sink_admin: MaybeAddr,
    /// The HS256 secret the gateway verifies tokens with.
    #[arg(
        long,
        env = "NEARBY_JWT_SECRET",
        default_value = nearby_common::auth::DEV_SECRET,
        hide_env_values = true
    )]
    pub jwt_secret: String,
    /// How people and friendships are created.
    #[arg(long, value_enum, default_value_t = SetupMode::Auto)]
    pub setup: SetupMode,
    /// Setup calls or writes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// Time between one person's reports (at least 1 s: the gateway's per-user limit).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Each gap between reports is the interval ± this share of it, at random.
    #[arg(long, default_value_t = 0.1)]
    pub jitter: f64,
    /// How long people report.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How long to keep reading after the last report.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// The first client source address; the next ones follow (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, default_value = "127.0.0.2")]
    pub first_source: Ipv4Addr,
    /// Sockets per source address.
    #[arg(long, default_value_t = 5_000)]
    pub per_source: usize,
    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Where the JSON and the plot go.
    #[arg(long, default_value = "target/loadgen")]
    pub out: PathBuf,
    /// Do not read the stages' CPU and memory from /proc (for a system in this process).
    #[arg(long)]
    pub no_costs: bool,
    /// The gateway's pid (default: the one process named `nearby-gateway`).
    #[arg(long)]
    pub gateway_pid: Option<u32>,
    /// The fanout's pid (default: the one process named `nearby-fanout`).
    #[arg(long)]
    pub fanout_pid: Option<u32>,
    /// The history sink's pid (default: the one process named `nearby-history-sink`).
    #[arg(long)]
    pub sink_pid: Option<u32>,
    /// The consumer group whose lag on the location topic is sampled.
    #[arg(long, default_value = "nearby-history-sink")]
    pub lag_group: String,
    /// How often lag and the stages' `/readyz` are sampled.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub lag_every: Duration,
    /// Do not sample consumer lag.
    #[arg(long)]
    pub no_lag: bool,
    /// No progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Counters shared by every socket's tasks.
#[derive(Debug, Default)]
struct Counters {
    reports: AtomicU64,
    send_failed: AtomicU64,
    friend_locations: AtomicU64,
    matched: AtomicU64,
    by_own_report: AtomicU64,
    friend_left: AtomicU64,
    nearby_pages: AtomicU64,
    error_frames: AtomicU64,
    closed: AtomicU64,
    /// Reports sent per second of the run.
    reports_per_s: Vec<AtomicU64>,
}

/// What every socket task shares.
#[derive(Debug)]
struct Shared {
    base: i64,
    /// When the measured run starts, epoch µs.
    t0_us: i64,
    /// Per person: (ts, send time in epoch µs) of the latest reports.
    sent: Vec<Mutex<VecDeque<(i64, i64)>>>,
    counters: Counters,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn second(&self, at_us: i64) -> usize {
        usize::try_from((at_us - self.t0_us).max(0) / 1_000_000).unwrap_or(0)
    }
}

/// The part of a server frame the load generator reads.
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    user_id: Option<&'a str>,
    updated_at: Option<i64>,
    #[serde(borrow)]
    code: Option<&'a str>,
}

/// A socket's reader: what it measured. Samples are (second of the run, latency ms).
#[derive(Debug, Default)]
struct ReaderResult {
    samples: Vec<(u32, f32)>,
}

/// Reads one socket until told to stop: times `friend_location`s, counts the rest.
async fn read_socket(
    mut stream: futures::stream::SplitStream<Ws>,
    me: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> ReaderResult {
    let mut out = ReaderResult::default();
    let n = shared.sent.len() as i64;
    let c = &shared.counters;
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = stop.changed() => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                // The answer to our own close at the end is not an early close.
                if !*stop.borrow() {
                    c.closed.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            Some(Ok(_)) => continue,
        };
        // Stamped before parsing: the parse is the client's cost, not the system's.
        let at = net::now_us();
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text.as_str()) else {
            continue;
        };
        match frame.kind {
            "friend_location" => {
                c.friend_locations.fetch_add(1, Ordering::Relaxed);
                let idx = frame
                    .user_id
                    .and_then(|u| u.parse::<i64>().ok())
                    .map(|id| id - shared.base)
                    .filter(|i| (0..n).contains(i));
                let (Some(idx), Some(ts)) = (idx, frame.updated_at) else {
                    continue;
                };
                let sent_us = shared.sent[usize::try_from(idx).unwrap_or(0)]
                    .lock()
                    .expect("sent lock")
                    .iter()
                    .find(|(t, _)| *t == ts)
                    .map(|(_, us)| *us);
                if let Some(friend_sent_us) = sent_us {
                    c.matched.fetch_add(1, Ordering::Relaxed);
                    // The cause is the later of the friend's report and this socket's own last
                    // one: a friend who comes into range because *this* person moved is shown
                    // with the friend's older report, and timing that from the friend's send
                    // would count the friend's reporting interval as latency.
                    let own_us = shared.sent[me]
                        .lock()
                        .expect("sent lock")
                        .back()
                        .map_or(i64::MIN, |(_, us)| *us);
                    let sent_us = if own_us > friend_sent_us && own_us <= at {
                        c.by_own_report.fetch_add(1, Ordering::Relaxed);
                        own_us
                    } else {
                        friend_sent_us
                    };
                    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                    let ms = ((at - sent_us) as f64 / 1000.0) as f32;
                    let second = u32::try_from(shared.second(at)).unwrap_or(u32::MAX);
                    out.samples.push((second, ms));
                }
            }
            "friend_left" => {
                c.friend_left.fetch_add(1, Ordering::Relaxed);
            }
            "nearby" => {
                c.nearby_pages.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                c.error_frames.fetch_add(1, Ordering::Relaxed);
                let code = frame.code.unwrap_or("?").to_owned();
                *shared
                    .errors
                    .lock()
                    .expect("errors lock")
                    .entry(code)
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    out
}

/// Writes one socket's reports as the driver hands them over, never two within
/// [`MIN_REPORT_GAP`], recording each one's send time; closes the socket when told to stop.
async fn write_socket(
    mut sink: futures::stream::SplitSink<Ws, Message>,
    idx: usize,
    shared: Arc<Shared>,
    mut reports: mpsc::UnboundedReceiver<(f64, f64)>,
    mut stop: watch::Receiver<bool>,
) {
    let c = &shared.counters;
    let mut last: Option<tokio::time::Instant> = None;
    loop {
        let (lat, lon) = tokio::select! {
            r = reports.recv() => match r {
                Some(at) => at,
                None => break,
            },
            _ = stop.changed() => break,
        };
        if let Some(last) = last {
            tokio::time::sleep_until(last + MIN_REPORT_GAP).await;
        }
        last = Some(tokio::time::Instant::now());
        let send_us = net::now_us();
        let ts = send_us.div_euclid(1000);
        {
            let mut sent = shared.sent[idx].lock().expect("sent lock");
            if sent.len() >= SENT_KEPT {
                sent.pop_front();
            }
            sent.push_back((ts, send_us));
        }
        let frame = format!(r#"{{"type":"location","lat":{lat},"lon":{lon},"ts":{ts}}}"#);
        if sink.send(Message::text(frame)).await.is_ok() {
            c.reports.fetch_add(1, Ordering::Relaxed);
            let s = shared.second(send_us).min(c.reports_per_s.len() - 1);
            c.reports_per_s[s].fetch_add(1, Ordering::Relaxed);
        } else {
            c.send_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Wait for the end of the reading window before closing.
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Seconds since the start of the measured run.
    pub t_s: u64,
    /// Reports sent in that second.
    pub reports: u64,
    /// `friend_location`s received (and timed) in that second.
    pub deliveries: u64,
    /// Their latency.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// The largest.
    pub max_ms: Option<f64>,
}

/// One stage's CPU time over the measured run.
#[derive(Debug, Clone, Serialize)]
pub struct StageCpu {
    /// Its pid.
    pub pid: u32,
    /// CPU seconds (user + system) used during the run.
    pub cpu_s: f64,
    /// CPU seconds per million reports sent.
    pub cpu_s_per_million_reports: Option<f64>,
}

/// The per-stage costs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Costs {
    /// Per stage (`gateway`, `fanout`, `history_sink`), those found.
    pub stages: BTreeMap<String, StageCpu>,
    /// Deliveries received per CPU-second of gateway + fanout.
    pub deliveries_per_cpu_s_gateway_fanout: Option<f64>,
    /// Gateway VmRSS before connecting, KiB.
    pub gateway_rss_before_kib: Option<u64>,
    /// Gateway VmRSS once every socket was open (before any report), KiB.
    pub gateway_rss_connected_kib: Option<u64>,
    /// Gateway VmRSS at the end of the run, KiB.
    pub gateway_rss_end_kib: Option<u64>,
    /// (connected − before) / sockets opened, bytes.
    pub gateway_rss_bytes_per_connection: Option<f64>,
    /// This load generator's own CPU seconds during the run.
    pub loadgen_cpu_s: Option<f64>,
    /// How busy the whole machine was during the run, share of all cores.
    pub machine_busy: Option<f64>,
    /// Cores of the machine.
    pub machine_cores: usize,
}

/// Counts of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// People simulated.
    pub people: usize,
    /// Friend pairs.
    pub friend_pairs: usize,
    /// Sockets opened.
    pub connected: usize,
    /// Sockets that failed to open.
    pub connect_failed: usize,
    /// Reports sent.
    pub reports: u64,
    /// Reports that could not be written (socket gone).
    pub send_failed: u64,
    /// `friend_location` frames received.
    pub friend_locations: u64,
    /// Of those, matched to a report sent in this run (the latency samples).
    pub deliveries_timed: u64,
    /// Of the timed ones, those timed from the recipient's own report (sent after the
    /// friend's): the friend came into range because the recipient moved.
    pub timed_from_own_report: u64,
    /// `friend_left` frames received.
    pub friend_left: u64,
    /// `nearby` pages received.
    pub nearby_pages: u64,
    /// `error` frames received, all codes.
    pub error_frames: u64,
    /// By code.
    pub errors: BTreeMap<String, u64>,
    /// Sockets the server closed (or that broke) before the end.
    pub closed_early: u64,
}

/// The result of a run, as written to the JSON file.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The scenario's name.
    pub scenario: String,
    /// Its parameters.
    pub parameters: serde_json::Value,
    /// Epoch ms at the start of the measured run.
    pub started_at_ms: i64,
    /// How the people were set up, and how long it took.
    pub setup: SetupMode,
    /// Seconds the setup took.
    pub setup_s: f64,
    /// Seconds the sockets took to open.
    pub connect_s: f64,
    /// Seconds of reporting (plus the drain).
    pub measured_s: f64,
    /// Counts.
    pub counts: Counts,
    /// Report-to-friend latency over the whole run (receive − send).
    pub latency: Latency,
    /// The same after the first `--interval` (plus 5 s): once everyone has reported once, so
    /// without the start, when every user becomes active (friend lists read, first pages
    /// served) within one interval.
    pub latency_steady: Latency,
    /// Reports per second sent, over the reporting window.
    pub reports_per_s: f64,
    /// Deliveries per second received, over the reporting window.
    pub deliveries_per_s: f64,
    /// Per second of the run.
    pub timeline: Vec<Bucket>,
    /// Per-stage costs.
    pub costs: Costs,
    /// Lag of `lag_group` on the location topic, and the stages' `/readyz`, over the run.
    pub lag: Vec<LagSample>,
    /// The gateway's and fanout's `/readyz` before the run.
    pub ready_before: BTreeMap<String, String>,
    /// Where the JSON was written.
    pub json_path: PathBuf,
    /// Where the plot was written.
    pub plot_path: PathBuf,
}

fn bar(hidden: bool, len: u64, template: &str) -> ProgressBar {
    let bar = if hidden {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The stages' pids (unless `--no-costs`); a stage not found is left out, with a warning.
fn stage_pids(args: &RunArgs) -> BTreeMap<String, u32> {
    let mut pids = BTreeMap::new();
    if args.no_costs {
        return pids;
    }
    for (stage, given, program) in [
        ("gateway", args.gateway_pid, "nearby-gateway"),
        ("fanout", args.fanout_pid, "nearby-fanout"),
        ("history_sink", args.sink_pid, "nearby-history-sink"),
    ] {
        match given.map_or_else(|| procfs::pid_named(program), Ok) {
            Ok(pid) => {
                pids.insert(stage.to_owned(), pid);
            }
            Err(e) => eprintln!("loadgen: no CPU reading for {stage}: {e:#}"),
        }
    }
    pids
}

/// Runs the scenario `args` against the system and writes its JSON and plot.
#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
pub async fn run(args: &RunArgs) -> anyhow::Result<RunResult> {
    anyhow::ensure!(
        args.interval >= MIN_REPORT_GAP,
        "--interval must be at least 1 s (the gateway's per-user report limit)"
    );
    let mut ready_before = BTreeMap::new();
    for (what, addr) in [
        ("gateway", args.gateway_admin.0),
        ("fanout", args.fanout_admin.0),
    ] {
        if let Some(addr) = addr {
            ready_before.insert(what.to_owned(), net::ready(addr, what).await?);
        }
    }

    // The city and its people.
    let mut city = City::new(&args.city);
    let n = city.len();
    let base = net::user_base();
    let ids: Vec<i64> = (0..n).map(|i| base + i as i64).collect();
    let tokens: Vec<String> = ids
        .iter()
        .map(|&id| net::token(&args.jwt_secret, id, setup::TOKEN_TTL))
        .collect();
    let pairs = setup::pairs(&city);
    let mode = setup::resolve(args.setup, pairs.len());
    let hidden = args.no_progress;
    eprintln!(
        "loadgen: {n} people, {} friend pairs ({:.1} each), {:.0} % of pairs within 5 miles; setup {mode:?}",
        pairs.len(),
        city.mean_degree(),
        100.0 * city.share_within(nearby_common::geo::NEARBY_RADIUS_M)
    );
    let setup_started = Instant::now();
    let pb = bar(hidden, 0, "setup   {bar:40} {pos}/{len} {elapsed}");
    match mode {
        SetupMode::Api | SetupMode::Auto => {
            setup::via_api(
                args.gateway,
                &tokens,
                &ids,
                &pairs,
                args.setup_concurrency,
                &pb,
            )
            .await?;
        }
        SetupMode::Bulk => {
            setup::via_store(
                &args.stack.cql_nodes,
                &args.stack.cql_keyspace,
                &ids,
                &pairs,
                args.setup_concurrency,
                &pb,
            )
            .await?;
        }
    }
    pb.finish_and_clear();
    let setup_s = setup_started.elapsed().as_secs_f64();

    // Costs: where the stages are, and the gateway's memory before the sockets.
    let pids = stage_pids(args);
    let gw_pid = pids.get("gateway").map(u32::to_string);
    let rss = |pid: &Option<String>| pid.as_deref().and_then(|p| procfs::vm_kib(p, "VmRSS").ok());
    let rss_before = rss(&gw_pid);
    let soft = procfs::raise_nofile(n as u64 + 1_024);
    if soft < n as u64 + 100 {
        eprintln!("loadgen: warning: open-file limit {soft} is under {n} sockets");
    }

    // Connections.
    let connect_started = Instant::now();
    let total_secs = (args.duration + args.drain).as_secs() as usize + 30;
    let shared = Arc::new(Shared {
        base,
        t0_us: 0,
        sent: (0..n).map(|_| Mutex::new(VecDeque::new())).collect(),
        counters: Counters {
            reports_per_s: (0..total_secs).map(|_| AtomicU64::new(0)).collect(),
            ..Counters::default()
        },
        errors: Mutex::default(),
    });
    let pb = bar(hidden, n as u64, "connect {bar:40} {pos}/{len} {elapsed}");
    let mut sockets: Vec<Option<Ws>> = (0..n).map(|_| None).collect();
    let mut connect_errors: BTreeMap<String, usize> = BTreeMap::new();
    {
        // Bounded: a burst of thousands of handshakes would overflow the listen backlog.
        let mut opens = futures::stream::iter(0..n)
            .map(|i| {
                let source = net::source_for(args.first_source, args.per_source, i);
                let token = &tokens[i];
                async move { (i, net::connect_from(source, args.gateway, token).await) }
            })
            .buffer_unordered(args.connect_concurrency.max(1));
        while let Some((i, result)) = opens.next().await {
            match result {
                Ok(ws) => sockets[i] = Some(ws),
                Err(e) => *connect_errors.entry(format!("{e:#}")).or_default() += 1,
            }
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    let connected = sockets.iter().filter(|s| s.is_some()).count();
    let connect_s = connect_started.elapsed().as_secs_f64();
    for (e, count) in &connect_errors {
        eprintln!("loadgen: {count} × could not connect: {e}");
    }
    // The gateway registers a socket once its `connected` event is in Kafka: let it settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = rss(&gw_pid);

    // The measured run.
    let cpu = |pids: &BTreeMap<String, u32>| -> BTreeMap<String, f64> {
        pids.iter()
            .filter_map(|(s, p)| Some((s.clone(), procfs::cpu_secs(&p.to_string())?)))
            .collect()
    };
    let cpu_before = cpu(&pids);
    let my_cpu_before = procfs::cpu_secs("self");
    let machine_before = procfs::machine_ticks();
    let started = Instant::now();
    let started_at_ms = net::now_us() / 1000;
    let shared = {
        // t0 is fixed now; the tasks get the final copy.
        let mut s = Arc::into_inner(shared).context("shared state still borrowed")?;
        s.t0_us = started_at_ms * 1000;
        Arc::new(s)
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = Vec::with_capacity(connected);
    let mut writers = Vec::with_capacity(connected);
    let mut report_tx: Vec<Option<mpsc::UnboundedSender<(f64, f64)>>> = Vec::with_capacity(n);
    // One reader and one writer task per socket: reading never waits on writing, and a slow
    // socket holds up only itself.
    for (i, ws) in sockets.into_iter().enumerate() {
        let Some(ws) = ws else {
            report_tx.push(None);
            continue;
        };
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        report_tx.push(Some(tx));
        readers.push(tokio::spawn(read_socket(
            stream,
            i,
            shared.clone(),
            stop_rx.clone(),
        )));
        writers.push(tokio::spawn(write_socket(
            sink,
            i,
            shared.clone(),
            rx,
            stop_rx.clone(),
        )));
    }
    let lag_task = (!args.no_lag).then(|| {
        let target = LagTarget {
            brokers: args.stack.kafka_brokers.clone(),
            topic: format!("{}.location-updates", args.stack.topic_prefix),
            group: args.lag_group.clone(),
            fanout_admin: args.fanout_admin.0,
            sink_admin: args.sink_admin.0,
        };
        tokio::spawn(crate::lag::sample_until(
            target,
            args.lag_every,
            started,
            stop_rx.clone(),
        ))
    });

    // The progress bar reads the counters on its own clock.
    let pb = bar(
        hidden,
        args.duration.as_secs(),
        "run     {bar:40} {pos}/{len} s  {msg}",
    );
    let progress = {
        let (pb, shared, mut stop) = (pb.clone(), shared.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                let c = &shared.counters;
                pb.set_position(started.elapsed().as_secs());
                pb.set_message(format!(
                    "reports {}  deliveries {}  left {}  errors {}",
                    c.reports.load(Ordering::Relaxed),
                    c.matched.load(Ordering::Relaxed),
                    c.friend_left.load(Ordering::Relaxed),
                    c.error_frames.load(Ordering::Relaxed),
                ));
            }
        })
    };

    // The driver: one task owns the city and a queue of who reports next. Each person's first
    // report falls at random in the first interval, the next ones an interval (± jitter) after.
    let mut rng = rand::rng();
    let t0 = tokio::time::Instant::now();
    let end = t0 + args.duration;
    let mut queue: BinaryHeap<Reverse<(tokio::time::Instant, usize)>> = BinaryHeap::new();
    let mut last_step = vec![t0; n];
    for (i, tx) in report_tx.iter().enumerate() {
        if tx.is_some() {
            let first = args.interval.mul_f64(rng.random_range(0.0..1.0));
            queue.push(Reverse((t0 + first, i)));
        }
    }
    let jitter = args.jitter.clamp(0.0, 0.9);
    while let Some(Reverse((due, i))) = queue.pop() {
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let now = tokio::time::Instant::now();
        let at = city.step(i, (now - last_step[i]).as_secs_f64());
        last_step[i] = now;
        if let Some(tx) = &report_tx[i] {
            let _ = tx.send(at);
        }
        let gap = args
            .interval
            .mul_f64(1.0 + rng.random_range(-jitter..=jitter))
            .max(MIN_REPORT_GAP);
        queue.push(Reverse((due + gap, i)));
    }
    tokio::time::sleep_until(end).await;
    drop(report_tx);
    tokio::time::sleep(args.drain).await;
    let measured_s = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    pb.finish_and_clear();
    let _ = progress.await;

    // Costs after.
    let cpu_after = cpu(&pids);
    let my_cpu = procfs::cpu_secs("self")
        .zip(my_cpu_before)
        .map(|(a, b)| a - b);
    let machine_busy = procfs::busy_share(machine_before);
    let rss_end = rss(&gw_pid);

    let mut samples: Vec<(u32, f32)> = Vec::new();
    for r in readers {
        samples.extend(r.await.context("a reader panicked")?.samples);
    }
    for w in writers {
        let _ = w.await;
    }
    let lag = match lag_task {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };

    // Summaries.
    let c = &shared.counters;
    let reports = c.reports.load(Ordering::Relaxed);
    let mut all: Vec<f32> = samples.iter().map(|s| s.1).collect();
    let latency = stats::summarize(&mut all);
    let steady_from = args.interval.as_secs() + 5;
    let mut steady: Vec<f32> = samples
        .iter()
        .filter(|s| u64::from(s.0) >= steady_from)
        .map(|s| s.1)
        .collect();
    let latency_steady = stats::summarize(&mut steady);
    let seconds = (measured_s.ceil() as usize).min(c.reports_per_s.len());
    let mut per_second: Vec<Vec<f32>> = vec![Vec::new(); seconds];
    for (s, ms) in &samples {
        if let Some(v) = per_second.get_mut(*s as usize) {
            v.push(*ms);
        }
    }
    let timeline: Vec<Bucket> = per_second
        .into_iter()
        .enumerate()
        .map(|(s, mut v)| {
            let l = stats::summarize(&mut v);
            Bucket {
                t_s: s as u64,
                reports: c.reports_per_s[s].load(Ordering::Relaxed),
                deliveries: l.count as u64,
                p50_ms: l.p50_ms,
                p90_ms: l.p90_ms,
                p99_ms: l.p99_ms,
                max_ms: l.max_ms,
            }
        })
        .collect();
    let friend_locations = c.friend_locations.load(Ordering::Relaxed);
    let mut stages = BTreeMap::new();
    for (stage, pid) in &pids {
        if let (Some(a), Some(b)) = (cpu_before.get(stage), cpu_after.get(stage)) {
            let cpu_s = b - a;
            stages.insert(
                stage.clone(),
                StageCpu {
                    pid: *pid,
                    cpu_s,
                    cpu_s_per_million_reports: (reports > 0).then(|| cpu_s * 1e6 / reports as f64),
                },
            );
        }
    }
    let gw_fanout_cpu: Option<f64> = ["gateway", "fanout"]
        .iter()
        .map(|s| stages.get(*s).map(|c| c.cpu_s))
        .sum();
    let costs = Costs {
        deliveries_per_cpu_s_gateway_fanout: gw_fanout_cpu
            .filter(|&s| s > 0.0)
            .map(|s| friend_locations as f64 / s),
        stages,
        gateway_rss_before_kib: rss_before,
        gateway_rss_connected_kib: rss_connected,
        gateway_rss_end_kib: rss_end,
        gateway_rss_bytes_per_connection: rss_before
            .zip(rss_connected)
            .filter(|_| connected > 0)
            .map(|(b, a)| (a as f64 - b as f64) * 1024.0 / connected as f64),
        loadgen_cpu_s: my_cpu,
        machine_busy,
        machine_cores: std::thread::available_parallelism().map_or(0, usize::from),
    };
    let window = args.duration.as_secs_f64().max(1e-3);
    let counts = Counts {
        people: n,
        friend_pairs: pairs.len(),
        connected,
        connect_failed: n - connected,
        reports,
        send_failed: c.send_failed.load(Ordering::Relaxed),
        friend_locations,
        deliveries_timed: c.matched.load(Ordering::Relaxed),
        timed_from_own_report: c.by_own_report.load(Ordering::Relaxed),
        friend_left: c.friend_left.load(Ordering::Relaxed),
        nearby_pages: c.nearby_pages.load(Ordering::Relaxed),
        error_frames: c.error_frames.load(Ordering::Relaxed),
        errors: shared.errors.lock().expect("errors lock").clone(),
        closed_early: c.closed.load(Ordering::Relaxed),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let stem = format!("{}-{}", args.scenario, started_at_ms / 1000);
    let json_path = args.out.join(format!("{stem}.json"));
    let plot_path = args.out.join(format!("{stem}.svg"));
    let result = RunResult {
        scenario: args.scenario.clone(),
        parameters: serde_json::json!({
            "people": args.city.people,
            "degree": args.city.degree,
            "side_km": args.city.side_km,
            "local_share": args.city.local_share,
            "seed": args.city.seed,
            "mean_degree": city.mean_degree(),
            "interval_s": args.interval.as_secs_f64(),
            "jitter": args.jitter,
            "duration_s": args.duration.as_secs_f64(),
            "drain_s": args.drain.as_secs_f64(),
            "gateway": args.gateway.to_string(),
            "per_source": args.per_source,
            "connect_concurrency": args.connect_concurrency,
            "lag_group": args.lag_group,
        }),
        started_at_ms,
        setup: mode,
        setup_s,
        connect_s,
        measured_s,
        counts,
        latency,
        latency_steady,
        reports_per_s: reports as f64 / window,
        deliveries_per_s: friend_locations as f64 / window,
        timeline,
        costs,
        lag,
        ready_before,
        json_path: json_path.clone(),
        plot_path: plot_path.clone(),
    };
    std::fs::write(&json_path, serde_json::to_vec_pretty(&result)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    plot(&result, &plot_path)?;
    Ok(result)
}

/// The run's SVG: latency percentiles, deliveries/s and reports/s per second.
fn plot(r: &RunResult, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::style::{BLUE, GREEN, RED, RGBColor};
    let line = |f: &dyn Fn(&Bucket) -> Option<f64>| -> Vec<(f64, f64)> {
        r.timeline
            .iter()
            .filter_map(|b| Some((b.t_s as f64, f(b)?)))
            .collect()
    };
    let orange = RGBColor(230, 140, 0);
    crate::plot::draw(
        path,
        &format!(
            "{}: {} people, {} friend pairs, report every {} s",
            r.scenario, r.counts.people, r.counts.friend_pairs, r.parameters["interval_s"]
        ),
        &[
            (
                "report-to-friend latency (receive − send)",
                "ms",
                vec![
                    ("p50", GREEN, line(&|b| b.p50_ms)),
                    ("p90", BLUE, line(&|b| b.p90_ms)),
                    ("p99", RED, line(&|b| b.p99_ms)),
                ],
            ),
            (
                "deliveries per second",
                "friend_location/s",
                vec![("deliveries", orange, line(&|b| Some(b.deliveries as f64)))],
            ),
            (
                "reports per second",
                "reports/s",
                vec![("reports", BLUE, line(&|b| Some(b.reports as f64)))],
            ),
        ],
    )
}
