//! One row's write: retried with backoff until the CQL store takes it or the stop's drain gives
//! up on it; only a written row is reported done, so only it can move the committed position.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nearby_common::clock::now_s;
use nearby_common::history::{HistoryRow, HistoryStore};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::status::SinkStatus;

/// The next wait of a backoff that starts at `min` and doubles up to `max`.
fn next_backoff(current: Duration, max: Duration) -> Duration {
    (current * 2).min(max)
}

/// Writes one row, retrying with backoff until it is written or `abandon` is cancelled; only a
/// written row is reported done.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write(
    store: Arc<HistoryStore>,
    row: HistoryRow,
    at: (i32, i64),
    status: Arc<SinkStatus>,
    (retry_min, retry_max): (Duration, Duration),
    done: mpsc::UnboundedSender<(i32, i64)>,
    abandon: CancellationToken,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut wait = retry_min;
    loop {
        match store.insert(&row).await {
            Ok(()) => {
                status.rows.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Err(e) => {
                let retries = status.retries.fetch_add(1, Ordering::Relaxed) + 1;
                // Hundreds of writes fail together when the store is down: one line a second.
                let now = now_s();
                if status.last_warn_s.swap(now, Ordering::Relaxed) != now {
                    warn!(error = %e, retries, in_flight = status.in_flight.load(Ordering::Relaxed), "history writes failing; retrying with backoff");
                }
                tokio::select! {
                    () = abandon.cancelled() => {
                        status.in_flight.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                    () = tokio::time::sleep(wait) => {}
                }
                wait = next_backoff(wait, retry_max);
            }
        }
    }
    status.in_flight.fetch_sub(1, Ordering::Relaxed);
    let _ = done.send(at);
}
