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
//! `session` (the flags and set-up it shares with `ramp`: people, friendships, sockets),
//! `clients` (the sockets and their reader and writer tasks), `driver` (the measured window's
//! loop), `stages` (what the stages cost) and `report` (the result, its JSON and plot).

pub(crate) mod clients;
pub(crate) mod driver;
mod report;
pub(crate) mod session;
pub(crate) mod stages;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::driver::{Driver, Progress, Window};
pub use self::report::{Bucket, Counts, RunResult};
pub use self::session::SessionArgs;
use self::session::{Session, Started};
pub use self::stages::{Costs, StageCpu, SteadyCosts};
use crate::lag::{LagSample, LagTarget};

/// The gateway's per-user report limit is 1 a second (burst 10): never report more often.
pub(crate) const MIN_REPORT_GAP: Duration = Duration::from_secs(1);

/// The steady part of a run (its latency and costs apart) starts this long after the first
/// interval: everyone has reported once and been served a first page by then.
const STEADY_AFTER_FIRST: Duration = Duration::from_secs(5);

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
    /// The city, the system and the clients (shared with `ramp`).
    #[command(flatten)]
    pub session: SessionArgs,
    /// The scenario's name, for the result's file names.
    #[arg(long, default_value = "custom")]
    pub scenario: String,
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
    /// The consumer group whose lag on the location topic is sampled.
    #[arg(long, default_value = "nearby-history-sink")]
    pub lag_group: String,
    /// How often lag and the stages' `/readyz` are sampled.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub lag_every: Duration,
    /// Do not sample consumer lag.
    #[arg(long)]
    pub no_lag: bool,
}

/// Runs the scenario `args` against the system and writes its JSON and plot.
#[allow(clippy::cast_precision_loss)]
pub async fn run(args: &RunArgs) -> anyhow::Result<RunResult> {
    anyhow::ensure!(
        args.interval >= MIN_REPORT_GAP,
        "--interval must be at least 1 s (the gateway's per-user report limit)"
    );
    let mut session = Session::open(&args.session).await?;
    let n = session.people();
    let connected = session.connected;

    // The measured run.
    let total_secs = (args.duration + args.drain).as_secs() as usize + 30;
    let Started {
        shared,
        report_tx,
        tasks,
        stop_tx,
        stop_rx,
        started,
        started_at_ms,
    } = session.start(total_secs, false);
    let lag_task = spawn_lag(args, started, &stop_rx);
    let pb = bar(
        args.session.no_progress,
        args.duration.as_secs(),
        "run     {bar:40} {pos}/{len} s  {msg}",
    );
    let progress = Progress::new(pb.clone(), shared.clone(), started);
    let window = Window {
        interval: args.interval,
        jitter: args.jitter,
        duration: args.duration,
        drain: args.drain,
    };
    // The steady part starts where the latency after the first interval does; its CPU
    // counters are read by a second future beside the driver, on the same task, so the reading
    // is taken on time however long the driver's loop runs.
    let steady_from = args.interval + STEADY_AFTER_FIRST;
    let meter = &mut session.meter;
    let mark_steady = async {
        if steady_from < args.duration {
            tokio::time::sleep_until((started + steady_from).into()).await;
            let c = &shared.counters;
            meter.on_steady(
                steady_from.as_secs_f64(),
                c.reports.load(Ordering::Relaxed),
                c.friend_locations.load(Ordering::Relaxed),
            );
        }
    };
    tokio::join!(
        Driver::new(window, &mut session.city, &report_tx, progress).run(),
        mark_steady
    );
    drop(report_tx);
    let measured_s = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    pb.finish_and_clear();

    let parameters = report::parameters(args, &session.city);
    let header = session.header(&args.scenario, parameters, started_at_ms, measured_s)?;
    // Costs after, then what the tasks measured.
    let readings = session.meter.on_end();
    let samples = tasks.join().await?;
    let lag = match lag_task {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };

    // Summaries.
    let counts = Counts::read(&shared, n, session.friend_pairs, connected);
    let (latency, latency_steady) = report::latencies(&samples, steady_from.as_secs());
    let reports_per_s = &shared.counters.reports_per_s;
    let seconds = (measured_s.ceil() as usize).min(reports_per_s.len());
    let timeline = report::timeline(&samples, seconds, reports_per_s);
    let costs = readings.costs(counts.reports, counts.friend_locations, connected);
    let window = args.duration.as_secs_f64().max(1e-3);
    let result = RunResult {
        header,
        latency,
        latency_steady,
        reports_per_s: counts.reports as f64 / window,
        deliveries_per_s: counts.friend_locations as f64 / window,
        counts,
        timeline,
        costs,
        lag,
    };
    report::write(&result)?;
    Ok(result)
}

/// Starts sampling consumer lag and the stages' `/readyz` until the stop (unless `--no-lag`).
fn spawn_lag(
    args: &RunArgs,
    started: Instant,
    stop: &watch::Receiver<bool>,
) -> Option<JoinHandle<Vec<LagSample>>> {
    (!args.no_lag).then(|| {
        let target = LagTarget {
            brokers: args.session.stack.kafka_brokers.clone(),
            topic: location_topic(&args.session),
            group: args.lag_group.clone(),
            fanout_admin: args.session.fanout_admin.0,
            sink_admin: args.session.sink_admin.0,
        };
        tokio::spawn(crate::lag::sample_until(
            target,
            args.lag_every,
            started,
            stop.clone(),
        ))
    })
}

/// The location topic of the system `args` names (whose consumer groups' lag is read).
pub(crate) fn location_topic(args: &SessionArgs) -> String {
    format!("{}.location-updates", args.stack.topic_prefix)
}

/// A progress bar of `len` steps drawn with `template`, or a hidden one.
pub(crate) fn bar(hidden: bool, len: u64, template: &str) -> ProgressBar {
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
