//! How ingest fails when Kafka cannot take records: a full producer queue turns into
//! `QueueFull` after the configured wait, and an undeliverable record into a retryable produce
//! error after the delivery timeout. No broker is needed: the producer points at a closed port.

use std::time::{Duration, Instant};

use nearby_common::clock::now_ms;
use nearby_ingest::{Ingest, IngestConfig, IngestError, Report};

/// A port nothing listens on.
const NO_BROKER: &str = "127.0.0.1:1";

#[tokio::test]
async fn a_full_queue_fails_after_the_bounded_wait_and_undelivered_records_time_out() {
    let config = IngestConfig {
        ingest_queue_max_messages: 1,
        ingest_queue_full_wait: Duration::from_millis(200),
        ingest_delivery_timeout: Duration::from_secs(2),
        ..IngestConfig::default()
    };
    let ingest = Ingest::new(NO_BROKER, "test.ingest.unreachable", &config).expect("ingest");
    let report = Report {
        lat: 1.0,
        lon: 2.0,
        ts: now_ms(),
        accuracy_m: None,
    };

    // The first record takes the queue's only slot and waits for a broker that never comes.
    let first = tokio::spawn({
        let ingest = ingest.clone();
        async move { ingest.report(1, Some("gw-1"), report).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = Instant::now();
    let second = ingest.report(2, Some("gw-1"), report).await;
    let waited = started.elapsed();
    match second {
        Err(e @ IngestError::QueueFull { .. }) => {
            assert!(e.is_retryable());
            assert_eq!(e.code(), "unavailable");
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(200),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");

    match first.await.expect("task") {
        Err(e @ IngestError::Produce { .. }) => {
            assert!(e.is_retryable(), "a delivery timeout is retryable: {e}");
        }
        other => panic!("expected a produce error, got {other:?}"),
    }
    let m = ingest.metrics();
    assert_eq!(
        (m.accepted, m.queue_full, m.produce_errors_retryable),
        (0, 1, 1)
    );
}

#[test]
fn inconsistent_config_is_refused_at_construction() {
    let config = IngestConfig {
        ingest_queue_full_wait: Duration::from_secs(40),
        ..IngestConfig::default()
    };
    let err = Ingest::new(NO_BROKER, "t", &config).expect_err("refused");
    assert!(matches!(err, IngestError::Config(_)), "{err}");
}
