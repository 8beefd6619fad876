//! One step of the ramp: the readings at its start and end ([`Mark`]: counters, the stages' CPU,
//! the machine's ticks), what they come to ([`Step`]: rates, latency, CPU per report and per
//! delivery, lag) and the stop rules ([`Limits`]) it is held to.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;

use super::RampArgs;
use crate::run::clients::{Sample, Shared};
use crate::run::stages::CostMeter;
use crate::stats::{self, Latency};

/// Each consumer group's lag at one moment (`None`: Kafka did not answer).
pub(super) type Lags = BTreeMap<String, Option<i64>>;

/// What ends the ramp after a step.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    /// The highest p99 delivery latency a step may have, ms.
    p99_ms: f64,
    /// The least share of the offered rate the generator must send.
    min_achieved: f64,
    /// Seconds of the offered rate a group's lag may grow by over a step.
    lag_slack_s: f64,
}

impl Limits {
    /// The limits `args` sets.
    pub(super) fn new(args: &RampArgs) -> Self {
        Self {
            p99_ms: args.p99_limit.as_secs_f64() * 1e3,
            min_achieved: args.min_achieved,
            lag_slack_s: args.lag_slack.as_secs_f64(),
        }
    }
}

/// The readings at one edge of a step, taken at once (no Kafka call among them).
#[derive(Debug)]
pub(super) struct Mark {
    at: Instant,
    /// Reports sent so far.
    reports: u64,
    /// `friend_location`s received so far.
    deliveries: u64,
    /// Each stage's CPU seconds so far.
    cpu: BTreeMap<String, f64>,
    /// The machine's (busy, total) ticks so far.
    machine: Option<(u64, u64)>,
}

impl Mark {
    /// Reads the counters of `shared` and the stages `meter` found.
    pub(super) fn read(meter: &CostMeter, shared: &Shared) -> Self {
        let c = &shared.counters;
        Self {
            at: Instant::now(),
            reports: c.reports.load(Ordering::Relaxed),
            deliveries: c.friend_locations.load(Ordering::Relaxed),
            cpu: meter.stage_cpu_now(),
            machine: crate::procfs::machine_ticks(),
        }
    }
}

/// One step, as the JSON records it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Its number, from 0.
    pub step: u32,
    /// Reports per second offered: `start_rate × factor^step`.
    pub offered_per_s: f64,
    /// Reports per second sent.
    pub achieved_per_s: f64,
    /// `friend_location`s per second received.
    pub deliveries_per_s: f64,
    /// Seconds the step lasted.
    pub seconds: f64,
    /// Latency of the deliveries received during the step (receive − send).
    pub latency: Latency,
    /// Per stage, CPU seconds used during the step.
    pub cpu_s: BTreeMap<String, f64>,
    /// Per stage, CPU seconds per report sent.
    pub cpu_s_per_report: BTreeMap<String, f64>,
    /// Per stage, CPU seconds per delivery received.
    pub cpu_s_per_delivery: BTreeMap<String, f64>,
    /// Per consumer group, its lag at the start of the step (`None`: Kafka did not answer).
    pub lag_start: BTreeMap<String, Option<i64>>,
    /// Per consumer group, its lag at the end.
    pub lag_end: BTreeMap<String, Option<i64>>,
    /// The groups whose lag grew through the step (by more than the slack).
    pub lag_grew: Vec<String>,
    /// How busy the whole machine was, share of all cores.
    pub machine_busy: Option<f64>,
    /// p99 within the limit, lag bounded, and the rate offered.
    pub sustained: bool,
    /// Why the ramp stopped after this step, if it did: `p99`, `lag` or `generator`, joined by
    /// `+` when several held.
    pub stop: Option<String>,
}

impl Step {
    /// Step `k`, offering `offered` reports/s, from its `marks` (start, end), each consumer
    /// group's `lags` (start, end) and the `samples` received during it, held to `limits`.
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn measure(
        k: u32,
        offered: f64,
        marks: (&Mark, &Mark),
        lags: (&Lags, &Lags),
        samples: Vec<Sample>,
        limits: &Limits,
    ) -> Self {
        let (start, end) = marks;
        let seconds = (end.at - start.at).as_secs_f64().max(1e-3);
        let reports = end.reports - start.reports;
        let deliveries = end.deliveries - start.deliveries;
        let mut ms: Vec<f32> = samples.into_iter().map(|s| s.1).collect();
        let latency = stats::summarize(&mut ms);
        let cpu_s: BTreeMap<String, f64> = end
            .cpu
            .iter()
            .filter_map(|(s, b)| Some((s.clone(), b - start.cpu.get(s)?)))
            .collect();
        let per = |n: u64| -> BTreeMap<String, f64> {
            if n == 0 {
                return BTreeMap::new();
            }
            cpu_s
                .iter()
                .map(|(s, c)| (s.clone(), c / n as f64))
                .collect()
        };
        let (lag_start, lag_end) = lags;
        let slack = offered * limits.lag_slack_s;
        let lag_grew: Vec<String> = lag_end
            .iter()
            .filter(|(g, after)| {
                matches!((lag_start.get(*g).copied().flatten(), after), (Some(b), Some(a)) if (a - b) as f64 > slack)
            })
            .map(|(g, _)| g.clone())
            .collect();
        let achieved_per_s = reports as f64 / seconds;
        // No deliveries timed: nothing says the latency is too high.
        let p99_over = latency.p99_ms.is_some_and(|p| p > limits.p99_ms);
        let short = achieved_per_s < limits.min_achieved * offered;
        let reasons: Vec<&str> = [
            (p99_over, "p99"),
            (!lag_grew.is_empty(), "lag"),
            (short, "generator"),
        ]
        .into_iter()
        .filter_map(|(hit, why)| hit.then_some(why))
        .collect();
        Self {
            step: k,
            offered_per_s: offered,
            achieved_per_s,
            deliveries_per_s: deliveries as f64 / seconds,
            seconds,
            latency,
            cpu_s_per_report: per(reports),
            cpu_s_per_delivery: per(deliveries),
            cpu_s,
            lag_start: lag_start.clone(),
            lag_end: lag_end.clone(),
            lag_grew,
            machine_busy: busy_between(start.machine, end.machine),
            sustained: reasons.is_empty(),
            stop: (!reasons.is_empty()).then(|| reasons.join("+")),
        }
    }

    /// One line for the log as the step ends.
    pub(super) fn line(&self) -> String {
        format!(
            "step {}: offered {:.0}/s, sent {:.0}/s, {:.0} deliveries/s, p99 {} ms{}",
            self.step,
            self.offered_per_s,
            self.achieved_per_s,
            self.deliveries_per_s,
            self.latency
                .p99_ms
                .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}")),
            self.stop
                .as_deref()
                .map_or_else(String::new, |s| format!("; stop ({s})"))
        )
    }
}

/// The machine's busy share between two (busy, total) tick readings.
#[allow(clippy::cast_precision_loss)]
fn busy_between(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    match (before, after) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(at: Instant, reports: u64, deliveries: u64, gw_cpu: f64) -> Mark {
        Mark {
            at,
            reports,
            deliveries,
            cpu: BTreeMap::from([("gateway".to_owned(), gw_cpu)]),
            machine: None,
        }
    }

    fn limits() -> Limits {
        Limits {
            p99_ms: 50.0,
            min_achieved: 0.9,
            lag_slack_s: 2.0,
        }
    }

    #[test]
    fn a_step_within_every_limit_is_sustained() {
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_secs(10);
        let lag = BTreeMap::from([("g".to_owned(), Some(5))]);
        let lag_end = BTreeMap::from([("g".to_owned(), Some(100))]);
        let samples = (0..100).map(|i| (0, i as f32 / 10.0)).collect();
        let s = Step::measure(
            0,
            50.0,
            (&mark(t0, 0, 0, 1.0), &mark(t1, 480, 2_000, 3.0)),
            (&lag, &lag_end),
            samples,
            &limits(),
        );
        assert!((s.achieved_per_s - 48.0).abs() < 1e-9);
        assert!((s.deliveries_per_s - 200.0).abs() < 1e-9);
        assert!((s.cpu_s_per_delivery["gateway"] - 0.001).abs() < 1e-12);
        assert!(s.sustained && s.stop.is_none(), "{s:?}");
    }

    #[test]
    fn latency_lag_and_a_short_rate_each_stop_the_ramp() {
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_secs(10);
        let lag = BTreeMap::from([("g".to_owned(), Some(0))]);
        let lag_end = BTreeMap::from([("g".to_owned(), Some(1_001))]);
        let samples = vec![(0, 80.0); 10];
        let s = Step::measure(
            2,
            50.0,
            (&mark(t0, 0, 0, 1.0), &mark(t1, 400, 0, 1.0)),
            (&lag, &lag_end),
            samples,
            &limits(),
        );
        assert_eq!(s.stop.as_deref(), Some("p99+lag+generator"));
        assert_eq!(s.lag_grew, ["g"]);
        assert!(!s.sustained);
        assert!(s.cpu_s_per_delivery.is_empty());
    }
}
