//! `nearby-loadgen run`: drives a running system with the simulated city. Sets up the people
//! and friendships, opens one WebSocket per person (spread over 127.0.0.x source addresses),
//! has everyone report every `--interval` (with jitter, moving as the city moves them), and
//! times every `friend_location` on the receiving socket against the send time of the report
//! that caused it: the friend's report it carries (matched by sender and `updated_at` = the
//! report's `ts`), or the recipient's own latest report when that was sent later (a friend
//! shown because the recipient came into range carries the friend's older report). Meanwhile it
//! reads the stages' CPU time and the gateway's memory from /proc and samples the history sink's
//! consumer lag; at the end it writes a JSON result and an SVG plot.
//!
//! This file holds the flags and [`run`], which goes through the phases in order; the parts are
//! `clients` (the sockets and their reader and writer tasks), `driver` (the measured window's
//! loop), `stages` (what the stages cost) and `report` (the result, its JSON and plot).

mod clients;
mod driver;
mod report;
mod stages;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nearby_common::stack::StackArgs;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::clients::Shared;
use self::driver::{Driver, Progress};
pub use self::report::{Bucket, Counts, RunResult};
use self::stages::CostMeter;
pub use self::stages::{Costs, StageCpu};
use crate::lag::{LagSample, LagTarget};
use crate::net;
use crate::procfs;
use crate::setup::{self, SetupMode};
use crate::sim::{City, CityConfig};

/// The gateway's per-user report limit is 1 a second (burst 10): never report more often.
const MIN_REPORT_GAP: Duration = Duration::from_secs(1);

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

/// Runs the scenario `args` against the system and writes its JSON and plot.
#[allow(clippy::cast_precision_loss)]
pub async fn run(args: &RunArgs) -> anyhow::Result<RunResult> {
    anyhow::ensure!(
        args.interval >= MIN_REPORT_GAP,
        "--interval must be at least 1 s (the gateway's per-user report limit)"
    );
    let ready_before = ready_before(args).await?;

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
    eprintln!(
        "loadgen: {n} people, {} friend pairs ({:.1} each), {:.0} % of pairs within 5 miles; setup {mode:?}",
        pairs.len(),
        city.mean_degree(),
        100.0 * city.share_within(nearby_common::geo::NEARBY_RADIUS_M)
    );
    let setup_started = Instant::now();
    set_up(args, mode, &ids, &tokens, &pairs).await?;
    let setup_s = setup_started.elapsed().as_secs_f64();

    // Costs: where the stages are, and the gateway's memory before the sockets.
    let mut meter = CostMeter::new(args);
    let soft = procfs::raise_nofile(n as u64 + 1_024);
    if soft < n as u64 + 100 {
        eprintln!("loadgen: warning: open-file limit {soft} is under {n} sockets");
    }

    // Connections.
    let connect_started = Instant::now();
    let total_secs = (args.duration + args.drain).as_secs() as usize + 30;
    let mut shared = Shared::new(base, n, total_secs);
    let sockets = clients::connect_all(args, &tokens).await;
    let connected = sockets.iter().filter(|s| s.is_some()).count();
    let connect_s = connect_started.elapsed().as_secs_f64();
    // The gateway registers a socket once its `connected` event is in Kafka: let it settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    meter.on_connected();

    // The measured run.
    meter.on_start();
    let started = Instant::now();
    let started_at_ms = net::now_us() / 1000;
    // t0 is fixed now, before any socket task starts: they all count seconds from the same one.
    shared.t0_us = started_at_ms * 1000;
    let shared = Arc::new(shared);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (report_tx, tasks) = clients::spawn(sockets, &shared, &stop_rx);
    let lag_task = spawn_lag(args, started, &stop_rx);
    let pb = bar(
        args.no_progress,
        args.duration.as_secs(),
        "run     {bar:40} {pos}/{len} s  {msg}",
    );
    let progress = Progress::new(pb.clone(), shared.clone(), started);
    Driver::new(args, &mut city, report_tx, progress)
        .run()
        .await;
    let measured_s = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    pb.finish_and_clear();

    // Costs after, then what the tasks measured.
    let readings = meter.on_end();
    let samples = tasks.join().await?;
    let lag = match lag_task {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };

    // Summaries.
    let counts = Counts::read(&shared, n, pairs.len(), connected);
    let (latency, latency_steady) = report::latencies(&samples, args.interval.as_secs() + 5);
    let reports_per_s = &shared.counters.reports_per_s;
    let seconds = (measured_s.ceil() as usize).min(reports_per_s.len());
    let timeline = report::timeline(&samples, seconds, reports_per_s);
    let costs = readings.costs(counts.reports, counts.friend_locations, connected);
    let window = args.duration.as_secs_f64().max(1e-3);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let stem = format!("{}-{}", args.scenario, started_at_ms / 1000);
    let result = RunResult {
        scenario: args.scenario.clone(),
        parameters: report::parameters(args, &city),
        started_at_ms,
        setup: mode,
        setup_s,
        connect_s,
        measured_s,
        latency,
        latency_steady,
        reports_per_s: counts.reports as f64 / window,
        deliveries_per_s: counts.friend_locations as f64 / window,
        counts,
        timeline,
        costs,
        lag,
        ready_before,
        json_path: args.out.join(format!("{stem}.json")),
        plot_path: args.out.join(format!("{stem}.svg")),
    };
    report::write(&result)?;
    Ok(result)
}

/// The gateway's and fanout's `/readyz` before the run, for those with an admin address.
async fn ready_before(args: &RunArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut ready = BTreeMap::new();
    for (what, addr) in [
        ("gateway", args.gateway_admin.0),
        ("fanout", args.fanout_admin.0),
    ] {
        if let Some(addr) = addr {
            ready.insert(what.to_owned(), net::ready(addr, what).await?);
        }
    }
    Ok(ready)
}

/// Creates the people (`ids`, with their `tokens`) and their friendships (`pairs`), through the
/// gateway's API or straight into the store as `mode` says.
async fn set_up(
    args: &RunArgs,
    mode: SetupMode,
    ids: &[i64],
    tokens: &[String],
    pairs: &[(usize, usize)],
) -> anyhow::Result<()> {
    let pb = bar(
        args.no_progress,
        0,
        "setup   {bar:40} {pos}/{len} {elapsed}",
    );
    match mode {
        SetupMode::Api | SetupMode::Auto => {
            setup::via_api(
                args.gateway,
                tokens,
                ids,
                pairs,
                args.setup_concurrency,
                &pb,
            )
            .await?;
        }
        SetupMode::Bulk => {
            setup::via_store(
                &args.stack.cql_nodes,
                &args.stack.cql_keyspace,
                ids,
                pairs,
                args.setup_concurrency,
                &pb,
            )
            .await?;
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// Starts sampling consumer lag and the stages' `/readyz` until the stop (unless `--no-lag`).
fn spawn_lag(
    args: &RunArgs,
    started: Instant,
    stop: &watch::Receiver<bool>,
) -> Option<JoinHandle<Vec<LagSample>>> {
    (!args.no_lag).then(|| {
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
            stop.clone(),
        ))
    })
}

/// A progress bar of `len` steps drawn with `template`, or a hidden one.
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
