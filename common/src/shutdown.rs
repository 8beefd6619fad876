//! One shutdown signal per process: a cancellation token cancelled on SIGINT or SIGTERM, which
//! every task of the process watches.

use tokio_util::sync::CancellationToken;

/// A token that is cancelled when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub fn on_signal() -> CancellationToken {
    on_signals().0
}

/// Two tokens: the first cancelled at the first SIGINT or SIGTERM, the second at the next one.
/// A stage with a long, orderly stop (a gateway draining its sockets) begins it at the first
/// signal and cuts it short at the second, as an operator pressing Ctrl-C twice expects.
pub fn on_signals() -> (CancellationToken, CancellationToken) {
    let (first, second) = (CancellationToken::new(), CancellationToken::new());
    tokio::spawn({
        let (first, second) = (first.clone(), second.clone());
        async move {
            wait_for_signal().await;
            tracing::info!("signal received: shutting down (a second signal stops at once)");
            first.cancel();
            wait_for_signal().await;
            tracing::info!("second signal received: stopping now");
            second.cancel();
        }
    });
    (first, second)
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
