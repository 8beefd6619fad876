//! The ramp's result: its steps and headline (the highest rate sustained, and the step nearest
//! 70 % of it), written as JSON with an SVG beside it (each stage's CPU per delivery and the
//! latency against the offered rate), and the short table printed at the end.

use std::fmt::Write as _;

use anyhow::Context;
use serde::Serialize;

use super::RampArgs;
use super::step::Step;
use crate::run::session::Header;
use crate::run::session::Session;
use crate::run::{Costs, Counts};

/// The share of the sustained rate a system is run at with headroom.
const HEADROOM_SHARE: f64 = 0.7;

/// What the ramp comes to.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    /// The highest offered rate of a sustained step (p99 within the limit, lag bounded, the
    /// rate offered), reports/s; `None` if not even the first step was.
    pub sustained_per_s: Option<f64>,
    /// That step.
    pub sustained_step: Option<u32>,
    /// The sustained step whose offered rate is nearest 70 % of that.
    pub near_70_percent_step: Option<u32>,
    /// Its offered rate, reports/s.
    pub near_70_percent_per_s: Option<f64>,
    /// Why the ramp ended: the last step's stop rules (`p99`, `lag`, `generator`), or
    /// `max_steps`.
    pub stopped_by: String,
}

impl Headline {
    /// The headline of `steps`, a ramp of at most `max_steps`.
    pub fn of(steps: &[Step], max_steps: u32) -> Self {
        let sustained = steps
            .iter()
            .filter(|s| s.sustained)
            .max_by(|a, b| a.offered_per_s.total_cmp(&b.offered_per_s));
        let near = sustained.and_then(|top| {
            let target = HEADROOM_SHARE * top.offered_per_s;
            steps.iter().filter(|s| s.sustained).min_by(|a, b| {
                (a.offered_per_s - target)
                    .abs()
                    .total_cmp(&(b.offered_per_s - target).abs())
            })
        });
        let stopped_by = steps
            .last()
            .and_then(|s| s.stop.clone())
            .unwrap_or_else(|| {
                if steps.len() >= max_steps as usize {
                    "max_steps".to_owned()
                } else {
                    "none".to_owned()
                }
            });
        Self {
            sustained_per_s: sustained.map(|s| s.offered_per_s),
            sustained_step: sustained.map(|s| s.step),
            near_70_percent_step: near.map(|s| s.step),
            near_70_percent_per_s: near.map(|s| s.offered_per_s),
            stopped_by,
        }
    }
}

/// The result of a ramp, as written to the JSON file.
#[derive(Debug, Clone, Serialize)]
pub struct RampResult {
    /// Its name, parameters (the city's and the ramp's), set-up, timings (from the start of
    /// the warm-up), readiness before and files.
    #[serde(flatten)]
    pub header: Header,
    /// The highest rate sustained, and the step nearest 70 % of it.
    pub headline: Headline,
    /// The warm-up before the steps (judged by no stop rule), if there was one.
    pub warmup: Option<Step>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Counts over the whole ramp.
    pub counts: Counts,
    /// Per-stage costs over the whole ramp.
    pub costs: Costs,
}

/// The ramp's parameters as the result records them.
pub(super) fn parameters(args: &RampArgs, session: &Session) -> serde_json::Value {
    let city = &args.session.city;
    serde_json::json!({
        "people": city.people,
        "degree": city.degree,
        "side_km": city.side_km,
        "local_share": city.local_share,
        "seed": city.seed,
        "mean_degree": session.city.mean_degree(),
        "connected": session.connected,
        "start_rate_per_s": args.start_rate,
        "factor": args.factor,
        "step_s": args.step.as_secs_f64(),
        "max_steps": args.max_steps,
        "p99_limit_ms": args.p99_limit.as_secs_f64() * 1e3,
        "min_achieved": args.min_achieved,
        "jitter": args.jitter,
        "lag_groups": args.groups(),
        "lag_slack_s": args.lag_slack.as_secs_f64(),
        "gateway": args.session.gateway.to_string(),
    })
}

/// Writes `r` as JSON to its `json_path` and its plot to its `plot_path`.
pub(super) fn write(r: &RampResult, args: &RampArgs) -> anyhow::Result<()> {
    std::fs::write(&r.header.json_path, serde_json::to_vec_pretty(r)?)
        .with_context(|| format!("writing {}", r.header.json_path.display()))?;
    plot(r, args.p99_limit.as_secs_f64() * 1e3)
}

/// The stages in the order the plot and table show them.
const STAGES: [&str; 3] = ["gateway", "fanout", "history_sink"];

/// The ramp's SVG: each stage's CPU µs per delivery, and the latency percentiles with the
/// `limit_ms`, against the offered rate.
fn plot(r: &RampResult, limit_ms: f64) -> anyhow::Result<()> {
    use plotters::style::{BLUE, GREEN, RED, RGBColor};
    let orange = RGBColor(230, 140, 0);
    let grey = RGBColor(120, 120, 120);
    let line = |f: &dyn Fn(&Step) -> Option<f64>| -> Vec<(f64, f64)> {
        r.steps
            .iter()
            .filter_map(|s| Some((s.offered_per_s, f(s)?)))
            .collect()
    };
    let per_delivery = |stage: &'static str| {
        line(&move |s: &Step| s.cpu_s_per_delivery.get(stage).map(|c| c * 1e6))
    };
    let costs = STAGES
        .iter()
        .zip([BLUE, orange, GREEN])
        .map(|(stage, color)| (*stage, color, per_delivery(stage)))
        .collect();
    crate::plot::draw_over(
        &r.header.plot_path,
        &format!(
            "{}: {} people, {} friend pairs, steps of {} s",
            r.header.scenario,
            r.counts.people,
            r.counts.friend_pairs,
            r.header.parameters["step_s"]
        ),
        "offered reports/s",
        &[
            ("CPU per delivery, by stage", "CPU µs / delivery", costs),
            (
                "report-to-friend latency (receive − send)",
                "ms",
                vec![
                    ("p50", GREEN, line(&|s| s.latency.p50_ms)),
                    ("p99", RED, line(&|s| s.latency.p99_ms)),
                    ("p99 limit", grey, line(&|_| Some(limit_ms))),
                ],
            ),
        ],
    )
}

/// The short table of the steps and the headline, for stdout.
pub fn table(r: &RampResult) -> String {
    let opt =
        |v: Option<f64>, scale: f64| v.map_or("-".to_owned(), |v| format!("{:.1}", v * scale));
    let mut t = String::new();
    let h = [
        "step",
        "offered/s",
        "sent/s",
        "deliv/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "CPU µs/delivery",
        "busy",
        "lag at end",
        "stop",
    ];
    let _ = writeln!(
        t,
        "{:>4} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}  {:>18}  {:>5}  {:<14} {}",
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10]
    );
    let _ = writeln!(t, "{:>69}", "gw / fanout / sink");
    for s in &r.steps {
        let cpu: Vec<String> = STAGES
            .iter()
            .map(|st| opt(s.cpu_s_per_delivery.get(*st).copied(), 1e6))
            .collect();
        let lag: Vec<String> = s
            .lag_end
            .values()
            .map(|l| l.map_or("-".to_owned(), |l| l.to_string()))
            .collect();
        let _ = writeln!(
            t,
            "{:>4} {:>9.1} {:>9.1} {:>9.0} {:>7} {:>7} {:>7}  {:>18}  {:>5}  {:<14} {}",
            s.step,
            s.offered_per_s,
            s.achieved_per_s,
            s.deliveries_per_s,
            opt(s.latency.p50_ms, 1.0),
            opt(s.latency.p90_ms, 1.0),
            opt(s.latency.p99_ms, 1.0),
            cpu.join(" / "),
            s.machine_busy
                .map_or("-".to_owned(), |b| format!("{:.0}%", b * 100.0)),
            lag.join(" / "),
            s.stop.as_deref().unwrap_or("")
        );
    }
    let h = &r.headline;
    let _ = writeln!(
        t,
        "sustained: {} reports/s (step {}); nearest 70 %: {} reports/s (step {}); stopped by {}",
        opt(h.sustained_per_s, 1.0),
        h.sustained_step.map_or("-".to_owned(), |s| s.to_string()),
        opt(h.near_70_percent_per_s, 1.0),
        h.near_70_percent_step
            .map_or("-".to_owned(), |s| s.to_string()),
        h.stopped_by
    );
    t
}
