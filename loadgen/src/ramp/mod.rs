//! `nearby-loadgen ramp`: the saturation curve. The same simulated city as `run` (its
//! [`Session`]: set-up, sockets, readers and writers, latency matching, cost meter), but the
//! offered report rate is raised in steps, open loop: step k offers `start_rate × factor^k`
//! reports/s, spread over every connected person (each reports every `connected / rate`
//! seconds, ± jitter, never within 1 s of their last), for `--step`. After each step the ramp
//! stops if the step's p99 delivery latency passed `--p99-limit`, if a consumer group's lag grew
//! through the step, or if the generator could not offer the rate; else it goes on until
//! `--max-steps`. It writes the steps and the headline (the highest rate sustained, and the
//! step nearest 70 % of it) as JSON with an SVG plot beside it.
//!
//! This file holds the flags and [`ramp`]; `step` measures one step and applies the stop rules;
//! `report` holds the result, its JSON, plot and table.

mod report;
mod step;

use std::time::Duration;

pub use self::report::{Headline, RampResult, table};
pub use self::step::Step;
use self::step::{Lags, Limits, Mark};
use crate::run::driver::{Driver, Progress, Window};
use crate::run::session::{Session, Started};
use crate::run::{Counts, SessionArgs, bar, location_topic};

/// What `ramp` does: the city, the system, the steps and their stop rules.
#[derive(Debug, Clone, clap::Args)]
pub struct RampArgs {
    /// The city, the system and the clients (the same flags as `run`).
    #[command(flatten)]
    pub session: SessionArgs,
    /// The ramp's name, for the result's file names.
    #[arg(long, default_value = "ramp")]
    pub scenario: String,
    /// Reports per second offered in the first step (all people together).
    #[arg(long, default_value_t = 50.0)]
    pub start_rate: f64,
    /// Each step offers this many times the rate of the one before.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// How long each step lasts.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// The most steps, if no stop rule ends the ramp first.
    #[arg(long, default_value_t = 12)]
    pub max_steps: u32,
    /// Stop once a step's p99 delivery latency is above this.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub p99_limit: Duration,
    /// Stop once the generator sends less than this share of the offered rate.
    #[arg(long, default_value_t = 0.9)]
    pub min_achieved: f64,
    /// Each gap between one person's reports is their interval ± this share of it, at random.
    #[arg(long, default_value_t = 0.1)]
    pub jitter: f64,
    /// The consumer groups whose lag on the location topic is read at each step's start and
    /// end (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "nearby-history-sink,nearby-fanout"
    )]
    pub lag_groups: Vec<String>,
    /// A group's lag may grow over a step by this many seconds of the offered rate before it
    /// counts as growing: the lag is read from committed offsets, and fanout and the sink
    /// commit every 5 s, so a group that keeps up wobbles by up to a commit interval's records
    /// (a first run with 2 s stopped a keeping-up sink at 150 reports/s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub lag_slack: Duration,
    /// Do not read consumer lag (no lag rule).
    #[arg(long)]
    pub no_lag: bool,
    /// A warm-up at the first step's rate before the steps, judged by no stop rule: everyone
    /// becoming active at once (friend lists read, first pages) is not steady load. By default
    /// long enough for everyone to report about once (connected ÷ start rate, at most 2 min);
    /// `0s` for none.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,
    /// How long to keep reading after the last step, before the sockets close.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
}

impl RampArgs {
    /// The rate step `k` offers, reports/s.
    pub fn offered(&self, k: u32) -> f64 {
        self.start_rate * self.factor.powi(i32::try_from(k).unwrap_or(i32::MAX))
    }

    /// Checks the flags against each other.
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.start_rate > 0.0,
            "--start-rate must be above 0 reports/s"
        );
        anyhow::ensure!(
            self.factor > 1.0,
            "--factor must be above 1 (each step offers more than the last)"
        );
        anyhow::ensure!(self.max_steps >= 1, "--max-steps must be at least 1");
        anyhow::ensure!(
            self.step >= Duration::from_secs(1),
            "--step must be at least 1 s"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.min_achieved),
            "--min-achieved is a share, between 0 and 1"
        );
        Ok(())
    }

    /// The groups whose lag is read (none with `--no-lag`).
    fn groups(&self) -> &[String] {
        if self.no_lag { &[] } else { &self.lag_groups }
    }
}

/// Runs the ramp `args` against the system and writes its JSON and plot.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
pub async fn ramp(args: &RampArgs) -> anyhow::Result<RampResult> {
    args.check()?;
    let mut session = Session::open(&args.session).await?;
    let connected = session.connected;
    anyhow::ensure!(
        connected > 0,
        "no socket opened (see the errors above): nothing to ramp"
    );
    let warmup = args.warmup.unwrap_or_else(|| {
        Duration::from_secs_f64((connected as f64 / args.start_rate).min(120.0))
    });
    let steps_s = args.step.as_secs_f64() * f64::from(args.max_steps) + warmup.as_secs_f64();
    let total_secs = (steps_s + args.drain.as_secs_f64()) as usize + 30;
    // Live: each step's latency is needed as it ends, for the stop rule.
    let Started {
        shared,
        report_tx,
        tasks,
        stop_tx,
        stop_rx: _,
        started,
        started_at_ms,
    } = session.start(total_secs, true);
    let pb = bar(
        args.session.no_progress,
        steps_s as u64,
        "ramp    {bar:40} {pos}/{len} s  {msg}",
    );
    let limits = Limits::new(args);
    let topic = location_topic(&args.session);
    let brokers = &args.session.stack.kafka_brokers;

    let mut steps: Vec<Step> = Vec::new();
    let mut lag_before = read_lags(brokers, args.groups(), &topic).await;
    let mut warmup_step = None;
    // The warm-up first (index `None`), then the judged steps.
    let plan = (!warmup.is_zero())
        .then_some((None, warmup))
        .into_iter()
        .chain((0..args.max_steps).map(|k| (Some(k), args.step)));
    for (k, duration) in plan {
        let offered = args.offered(k.unwrap_or(0));
        // Open loop: the rate is spread over everyone, whatever the system answers.
        let window = Window {
            interval: Duration::from_secs_f64(connected as f64 / offered),
            jitter: args.jitter,
            duration,
            drain: Duration::ZERO,
        };
        let progress = Progress::new(pb.clone(), shared.clone(), started);
        let start = Mark::read(&session.meter, &shared);
        Driver::new(window, &mut session.city, &report_tx, progress)
            .run()
            .await;
        let end = Mark::read(&session.meter, &shared);
        let samples = shared.take_live();
        let lag_after = read_lags(brokers, args.groups(), &topic).await;
        let step = Step::measure(
            k.unwrap_or(0),
            offered,
            (&start, &end),
            (&lag_before, &lag_after),
            samples,
            &limits,
        );
        lag_before = lag_after;
        if k.is_none() {
            eprintln!("loadgen: warm-up (not judged): {}", step.line());
            warmup_step = Some(step);
            continue;
        }
        eprintln!("loadgen: {}", step.line());
        let stopped = step.stop.is_some();
        steps.push(step);
        if stopped {
            break;
        }
    }

    // The last deliveries, then the sockets close.
    tokio::time::sleep(args.drain).await;
    drop(report_tx);
    let measured_s = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    pb.finish_and_clear();
    let parameters = report::parameters(args, &session);
    let people = session.people();
    let header = session.header(&args.scenario, parameters, started_at_ms, measured_s)?;
    let readings = session.meter.on_end();
    tasks.join().await?;
    let counts = Counts::read(&shared, people, session.friend_pairs, connected);
    let costs = readings.costs(counts.reports, counts.friend_locations, connected);

    let result = RampResult {
        header,
        headline: Headline::of(&steps, args.max_steps),
        warmup: warmup_step,
        steps,
        counts,
        costs,
    };
    report::write(&result, args)?;
    Ok(result)
}

/// Each of `groups`' lag on `topic` now, read one after the other.
async fn read_lags(brokers: &str, groups: &[String], topic: &str) -> Lags {
    let mut lags = Lags::new();
    for g in groups {
        lags.insert(g.clone(), crate::lag::group_lag(brokers, g, topic).await);
    }
    lags
}
