//! Draining: taking a gateway out of service without dropping anyone abruptly. Once a drain
//! starts, readiness turns false (a load balancer sends no new sockets), new upgrades get 503
//! `draining`, and one task queues a `reconnect` frame on each open socket in turn, evenly
//! spaced over the drain window, so the clients do not all land on the other gateways in the
//! same second. A session keeps reading (and producing the reports of) its client after the
//! `reconnect` until the client closes, or for the grace period at most; then it closes with
//! 1001. The gateway stops when no socket is left, or when the window and the grace have passed.
//!
//! Why one task and the outboxes rather than a timer in every session: sessions then pay
//! nothing for draining until it happens (no extra branch polled at each frame), and the
//! spacing is even rather than random.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest drain window, configured or asked for in a `POST /drain`.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// A gateway's drain: not started, or started at a moment with a window.
#[derive(Debug)]
pub struct Drain {
    started: CancellationToken,
    /// When it started, and its window (set once, before `started` is cancelled).
    plan: Mutex<Option<(Instant, Duration)>>,
    /// How long a session waits for its client to close after the `reconnect`.
    pub grace: Duration,
    default_window: Duration,
}

impl Drain {
    /// A drain not started, with the configured window and grace.
    pub fn new(window: Duration, grace: Duration) -> Self {
        Self {
            started: CancellationToken::new(),
            plan: Mutex::new(None),
            grace,
            default_window: window,
        }
    }

    /// Starts the drain with `window` (the configured one if `None`). A second call changes
    /// nothing and returns the first call's window: a drain cannot be hurried or undone.
    pub fn start(&self, window: Option<Duration>) -> Duration {
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        let (_, window) =
            *plan.get_or_insert_with(|| (Instant::now(), window.unwrap_or(self.default_window)));
        // Cancelled after the plan is set, so whoever wakes on it finds the plan.
        self.started.cancel();
        window
    }

    /// Whether a drain has started.
    pub fn is_started(&self) -> bool {
        self.started.is_cancelled()
    }

    /// Resolves when a drain starts.
    pub async fn started(&self) {
        self.started.cancelled().await;
    }

    /// The start and window of the drain, once started.
    pub fn plan(&self) -> Option<(Instant, Duration)> {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the `i`-th of `n` sockets is sent `reconnect`: evenly spaced over the window, the
    /// first at its start.
    pub fn turn(&self, i: usize, n: usize) -> Instant {
        let (start, window) = self.plan().unwrap_or((Instant::now(), Duration::ZERO));
        start + window.mul_f64(i as f64 / n.max(1) as f64)
    }

    /// When the gateway stops even if sockets are still open: the window, the grace, and a
    /// second for the closing handshakes.
    pub fn deadline(&self) -> Option<Instant> {
        self.plan()
            .map(|(start, window)| start + window + self.grace + Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_are_spread_over_the_window_and_a_second_start_keeps_the_first() {
        let drain = Drain::new(Duration::from_secs(10), Duration::from_secs(2));
        assert!(!drain.is_started());
        assert_eq!(
            drain.start(Some(Duration::from_secs(4))),
            Duration::from_secs(4)
        );
        assert_eq!(drain.start(None), Duration::from_secs(4));
        assert!(drain.is_started());
        let (start, _) = drain.plan().expect("planned");
        let turns: Vec<Duration> = (0..1_000).map(|i| drain.turn(i, 1_000) - start).collect();
        assert_eq!(turns[0], Duration::ZERO);
        assert_eq!(turns[500], Duration::from_secs(2));
        assert!(turns.windows(2).all(|w| w[0] <= w[1]));
        assert!(turns[999] < Duration::from_secs(4));
        assert_eq!(
            drain.deadline(),
            Some(start + Duration::from_secs(4 + 2 + 1))
        );
    }
}
