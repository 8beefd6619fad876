//! The measured window: one loop owns the city and a queue of who reports next, hands each
//! report as it falls due to that person's writer, ends the reporting after `--duration`, waits
//! out `--drain`, and keeps the progress bar current meanwhile.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::ProgressBar;
use rand::Rng;
use rand::rngs::ThreadRng;
use tokio::sync::mpsc;
use tokio::time::{self, Instant, Interval, MissedTickBehavior};

use super::MIN_REPORT_GAP;
use super::clients::{Report, Shared};
use crate::sim::City;

/// How often the progress bar is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The run's progress bar, refreshed from the shared counters on its own clock.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
    tick: Interval,
    shared: Arc<Shared>,
    /// When the measured run started (the bar counts its seconds).
    started: std::time::Instant,
}

impl Progress {
    /// Draws on `bar` the counters of `shared` and the seconds since `started`.
    pub(crate) fn new(bar: ProgressBar, shared: Arc<Shared>, started: std::time::Instant) -> Self {
        let mut tick = time::interval(PROGRESS_EVERY);
        // A late redraw is not made up: the bar only ever shows the latest counts.
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Self {
            bar,
            tick,
            shared,
            started,
        }
    }

    /// Redraws the bar.
    fn on_tick(&self) {
        let c = &self.shared.counters;
        self.bar.set_position(self.started.elapsed().as_secs());
        self.bar.set_message(format!(
            "reports {}  deliveries {}  left {}  errors {}",
            c.reports.load(Ordering::Relaxed),
            c.matched.load(Ordering::Relaxed),
            c.friend_left.load(Ordering::Relaxed),
            c.error_frames.load(Ordering::Relaxed),
        ));
    }
}

/// The shape of a window: how often each person reports, for how long, and how long to read
/// after.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Time between one person's reports.
    pub(crate) interval: Duration,
    /// The share of the interval each gap may differ by, at random.
    pub(crate) jitter: f64,
    /// How long people report.
    pub(crate) duration: Duration,
    /// How long to wait after the last report.
    pub(crate) drain: Duration,
}

/// The state of the measured window. Each person's first report falls at random in the first
/// interval, the next ones an interval (± jitter) after.
#[derive(Debug)]
pub(crate) struct Driver<'a> {
    /// Moves the people between reports.
    city: &'a mut City,
    interval: Duration,
    /// The share of the interval each gap may differ by, at random.
    jitter: f64,
    rng: ThreadRng,
    /// Who reports next: (when due, person), earliest first.
    queue: BinaryHeap<Reverse<(Instant, usize)>>,
    /// When each person last moved.
    last_step: Vec<Instant>,
    /// Per person, the way to their writer (`None`: no socket); kept by the caller, so the
    /// writers outlive one window (`ramp` runs one per step).
    report_tx: &'a [Option<mpsc::UnboundedSender<Report>>],
    /// When reporting ends.
    end: Instant,
    drain: Duration,
    /// When the drain ends, once reporting has ended.
    drain_until: Option<Instant>,
    progress: Progress,
}

impl<'a> Driver<'a> {
    /// A window of `window`'s duration then its drain, moving the people of `city` and handing
    /// their reports to `report_tx`; it starts now.
    pub(crate) fn new(
        window: Window,
        city: &'a mut City,
        report_tx: &'a [Option<mpsc::UnboundedSender<Report>>],
        progress: Progress,
    ) -> Self {
        let mut rng = rand::rng();
        let t0 = Instant::now();
        let mut queue = BinaryHeap::new();
        for (i, tx) in report_tx.iter().enumerate() {
            if tx.is_some() {
                let first = window.interval.mul_f64(rng.random_range(0.0..1.0));
                queue.push(Reverse((t0 + first, i)));
            }
        }
        Self {
            last_step: vec![t0; report_tx.len()],
            city,
            interval: window.interval,
            jitter: window.jitter.clamp(0.0, 0.9),
            rng,
            queue,
            report_tx,
            end: t0 + window.duration,
            drain: window.drain,
            drain_until: None,
            progress,
        }
    }

    /// Runs the window to the end of the drain.
    pub(crate) async fn run(mut self) {
        loop {
            let due = self.next_due();
            tokio::select! {
                // Biased, top to bottom. A report due before the end goes out even when the
                // loop wakes late (past the end, or with many due at once): the window holds
                // every report scheduled in it. Only then does reporting end, and the drain is
                // counted from that moment. The bar comes last: it is for the eye and must
                // never hold up a report.
                biased;
                () = time::sleep_until(due.unwrap_or(self.end)), if due.is_some() => {
                    self.on_report_due();
                }
                () = time::sleep_until(self.end), if self.drain_until.is_none() => {
                    self.on_reporting_end();
                }
                () = time::sleep_until(self.drain_until.unwrap_or(self.end)),
                    if self.drain_until.is_some() => break,
                _ = self.progress.tick.tick() => self.progress.on_tick(),
            }
        }
    }

    /// When the next report is due, if before the end of reporting.
    fn next_due(&self) -> Option<Instant> {
        let Reverse((due, _)) = self.queue.peek()?;
        (*due < self.end).then_some(*due)
    }

    /// Moves the person whose report is due, hands the report to their writer and schedules
    /// their next one.
    fn on_report_due(&mut self) {
        let Some(Reverse((due, i))) = self.queue.pop() else {
            return;
        };
        let now = Instant::now();
        let at = self.city.step(i, (now - self.last_step[i]).as_secs_f64());
        self.last_step[i] = now;
        if let Some(tx) = &self.report_tx[i] {
            let _ = tx.send(at);
        }
        let gap = self
            .interval
            .mul_f64(1.0 + self.rng.random_range(-self.jitter..=self.jitter))
            .max(MIN_REPORT_GAP);
        self.queue.push(Reverse((due + gap, i)));
    }

    /// Ends reporting (nothing more is scheduled; the writers stay, for a later window or the
    /// stop), and the drain starts.
    fn on_reporting_end(&mut self) {
        self.queue.clear();
        self.drain_until = Some(Instant::now() + self.drain);
    }
}
