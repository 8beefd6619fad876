//! One shutdown signal per process: [`Shutdown`], cancelled on SIGINT or SIGTERM, which every
//! task of the process watches. The first signal asks for an orderly stop (a gateway drains its
//! sockets, the history sink finishes its writes); a second one cuts that short.

use tokio_util::sync::CancellationToken;

/// How a stage is told to stop: `graceful` begins its orderly stop, `now` cuts it short.
/// Cancelling `now` cancels `graceful` too (for a [`Shutdown::new`] one), so a task that only
/// waits for `graceful` never outlives an immediate stop.
#[derive(Debug, Clone)]
pub struct Shutdown {
    graceful: CancellationToken,
    now: CancellationToken,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A shutdown nobody has asked for yet; tests call [`stop`](Self::stop) or
    /// [`stop_now`](Self::stop_now) on a clone.
    pub fn new() -> Self {
        let now = CancellationToken::new();
        Self {
            graceful: now.child_token(),
            now,
        }
    }

    /// A shutdown driven by the process's signals: the first SIGINT/SIGTERM stops gracefully,
    /// the second at once, as an operator pressing Ctrl-C twice expects.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                wait_for_signal().await;
                tracing::info!("signal received: shutting down (a second signal stops at once)");
                shutdown.stop();
                wait_for_signal().await;
                tracing::info!("second signal received: stopping now");
                shutdown.stop_now();
            }
        });
        shutdown
    }

    /// Asks for an orderly stop.
    pub fn stop(&self) {
        self.graceful.cancel();
    }

    /// Asks for a stop at once (and cuts an orderly one short).
    pub fn stop_now(&self) {
        self.now.cancel();
    }

    /// Cancelled when an orderly stop is asked for (or an immediate one).
    pub fn graceful(&self) -> &CancellationToken {
        &self.graceful
    }

    /// Cancelled when a stop at once is asked for.
    pub fn now(&self) -> &CancellationToken {
        &self.now
    }
}

impl From<CancellationToken> for Shutdown {
    /// A shutdown whose orderly stop is `token`'s cancellation (and never cut short).
    fn from(token: CancellationToken) -> Self {
        Self {
            graceful: token,
            now: CancellationToken::new(),
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_at_once_is_also_an_orderly_stop() {
        let s = Shutdown::new();
        s.stop_now();
        assert!(s.graceful().is_cancelled() && s.now().is_cancelled());
    }

    #[test]
    fn an_orderly_stop_is_not_cut_short() {
        let s = Shutdown::new();
        s.stop();
        assert!(s.graceful().is_cancelled());
        assert!(!s.now().is_cancelled());
    }
}
