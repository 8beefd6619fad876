//! The result of a run: its counts, latency summaries and per-second timeline, written as JSON
//! with an SVG plot beside it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use serde::Serialize;

use super::RunArgs;
use super::clients::{Sample, Shared};
use super::session::Header;
use super::stages::Costs;
use crate::lag::LagSample;
use crate::sim::City;
use crate::stats::{self, Latency};

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

impl Counts {
    /// The counts in `shared` once every socket task has ended, for `people` people with
    /// `friend_pairs` friendships of whom `connected` had a socket.
    pub(crate) fn read(
        shared: &Shared,
        people: usize,
        friend_pairs: usize,
        connected: usize,
    ) -> Self {
        let c = &shared.counters;
        Self {
            people,
            friend_pairs,
            connected,
            connect_failed: people - connected,
            reports: c.reports.load(Ordering::Relaxed),
            send_failed: c.send_failed.load(Ordering::Relaxed),
            friend_locations: c.friend_locations.load(Ordering::Relaxed),
            deliveries_timed: c.matched.load(Ordering::Relaxed),
            timed_from_own_report: c.by_own_report.load(Ordering::Relaxed),
            friend_left: c.friend_left.load(Ordering::Relaxed),
            nearby_pages: c.nearby_pages.load(Ordering::Relaxed),
            error_frames: c.error_frames.load(Ordering::Relaxed),
            errors: shared.errors.lock().expect("errors lock").clone(),
            closed_early: c.closed.load(Ordering::Relaxed),
        }
    }
}

/// The result of a run, as written to the JSON file.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Its name, parameters, set-up, timings, readiness before and files.
    #[serde(flatten)]
    pub header: Header,
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
}

/// The latency over all of `samples`, and over those from second `steady_from` on.
pub(super) fn latencies(samples: &[Sample], steady_from: u64) -> (Latency, Latency) {
    let mut all: Vec<f32> = samples.iter().map(|s| s.1).collect();
    let latency = stats::summarize(&mut all);
    let mut steady: Vec<f32> = samples
        .iter()
        .filter(|s| u64::from(s.0) >= steady_from)
        .map(|s| s.1)
        .collect();
    (latency, stats::summarize(&mut steady))
}

/// The first `seconds` seconds of the run: reports sent (from `reports_per_s`) and the
/// deliveries of `samples` received in each.
pub(super) fn timeline(
    samples: &[Sample],
    seconds: usize,
    reports_per_s: &[AtomicU64],
) -> Vec<Bucket> {
    let mut per_second: Vec<Vec<f32>> = vec![Vec::new(); seconds];
    for (s, ms) in samples {
        if let Some(v) = per_second.get_mut(*s as usize) {
            v.push(*ms);
        }
    }
    per_second
        .into_iter()
        .enumerate()
        .map(|(s, mut v)| {
            let l = stats::summarize(&mut v);
            Bucket {
                t_s: s as u64,
                reports: reports_per_s[s].load(Ordering::Relaxed),
                deliveries: l.count as u64,
                p50_ms: l.p50_ms,
                p90_ms: l.p90_ms,
                p99_ms: l.p99_ms,
                max_ms: l.max_ms,
            }
        })
        .collect()
}

/// The scenario's parameters as the result records them.
pub(super) fn parameters(args: &RunArgs, city: &City) -> serde_json::Value {
    serde_json::json!({
        "people": args.session.city.people,
        "degree": args.session.city.degree,
        "side_km": args.session.city.side_km,
        "local_share": args.session.city.local_share,
        "seed": args.session.city.seed,
        "mean_degree": city.mean_degree(),
        "interval_s": args.interval.as_secs_f64(),
        "jitter": args.jitter,
        "duration_s": args.duration.as_secs_f64(),
        "drain_s": args.drain.as_secs_f64(),
        "gateway": args.session.gateway.to_string(),
        "per_source": args.session.per_source,
        "connect_concurrency": args.session.connect_concurrency,
        "lag_group": args.lag_group,
    })
}

/// Writes `r` as JSON to its `json_path` and its plot to its `plot_path`.
pub(super) fn write(r: &RunResult) -> anyhow::Result<()> {
    std::fs::write(&r.header.json_path, serde_json::to_vec_pretty(r)?)
        .with_context(|| format!("writing {}", r.header.json_path.display()))?;
    plot(r, &r.header.plot_path)
}

/// The run's SVG: latency percentiles, deliveries/s and reports/s per second.
#[allow(clippy::cast_precision_loss)]
fn plot(r: &RunResult, path: &Path) -> anyhow::Result<()> {
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
            r.header.scenario,
            r.counts.people,
            r.counts.friend_pairs,
            r.header.parameters["interval_s"]
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
