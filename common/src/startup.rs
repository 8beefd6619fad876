//! Start-up that waits for what it needs. A stage started beside a stack that is itself still
//! starting meets transient states: a topic just created whose partitions have no leader yet, a
//! broker or CQL node not listening yet, Redis loading its data. Those are waits, not errors:
//! each is retried with exponential backoff and jitter (so a fleet restarted together does not
//! knock in step), one log line per wait saying what it waits for, until
//! `NEARBY_STARTUP_TIMEOUT` is spent; then the error names the missing thing.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use redis::aio::ConnectionManager;
use scylla::client::session::Session;
use tokio::time::Instant;

use crate::{Error, Result};

/// The first wait between two attempts; it doubles up to [`MAX_WAIT`], each wait jittered.
const MIN_WAIT: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const MAX_WAIT: Duration = Duration::from_secs(3);
/// How long one metadata request may take during a wait.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// How long start-up waits for the stack; built from `StackArgs::startup`.
#[derive(Debug, Clone, Copy)]
pub struct Startup {
    /// The longest start-up waits for any one thing.
    pub timeout: Duration,
}

impl Startup {
    /// Runs `attempt` until it succeeds, fails with an error that is not transient (returned at
    /// once), or `timeout` is spent (then [`Error::StartupTimeout`] names `what`).
    pub async fn retry<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(MIN_WAIT)
            .with_max_delay(MAX_WAIT)
            .with_jitter()
            .without_max_times();
        let outcome = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            // Only while there is time left: the last error is then returned, and named below.
            .when(|e: &Error| e.is_transient() && Instant::now() < deadline)
            // A jittered wait never runs past the deadline: the last attempt comes at it.
            .adjust(|_: &Error, wait: Option<Duration>| {
                wait.map(|w| w.min(deadline.saturating_duration_since(Instant::now())))
            })
            .notify(|e: &Error, wait: Duration| {
                tracing::info!(waiting_for = what, retry_in = ?wait, error = %e, "waiting for the stack");
            })
            .await;
        outcome.map_err(|last| {
            if last.is_transient() {
                Error::StartupTimeout {
                    what: what.to_owned(),
                    waited: started.elapsed(),
                    last: Box::new(last),
                }
            } else {
                last
            }
        })
    }

    /// A CQL session, once a contact point answers.
    pub async fn cql(&self, nodes: &[String]) -> Result<Session> {
        self.retry(&format!("the CQL store at {}", nodes.join(",")), || {
            crate::cql::connect(nodes)
        })
        .await
    }

    /// A Redis connection, once Redis answers a PING (not while it is loading its data).
    pub async fn redis(&self, url: &str) -> Result<ConnectionManager> {
        self.retry(&format!("Redis at {url}"), || async {
            let mut conn = crate::redis_store::connect(url).await?;
            redis::cmd("PING")
                .query_async::<()>(&mut conn)
                .await
                .map_err(Error::Redis)?;
            Ok(conn)
        })
        .await
    }

    /// Waits until `topic` exists and every partition has a leader; returns its partition
    /// count. A missing topic is waited for too (it may be being created this instant) and
    /// named, with the command that creates it, once the time is spent.
    pub async fn topic(&self, brokers: &str, topic: &str) -> Result<i32> {
        let what = format!(
            "topic {topic} on {brokers}, with a leader for every partition (create it with `nearby-admin topics create`)"
        );
        // A client of its own (metadata only, never subscribing): its requests block a thread,
        // so each runs off the runtime's workers.
        let client: std::sync::Arc<BaseConsumer> = std::sync::Arc::new(
            crate::kafka::client_config(brokers)
                .set("allow.auto.create.topics", "false")
                .create()?,
        );
        self.retry(&what, || {
            let (client, topic) = (client.clone(), topic.to_owned());
            async move {
                tokio::task::spawn_blocking(move || led_partitions(&*client, &topic))
                    .await
                    .map_err(|e| Error::Blocking(e.to_string()))?
            }
        })
        .await
    }
}

/// The partition count of `topic` if every partition has a leader; otherwise the transient
/// error that says why not. Reads the whole cluster's metadata, so that asking about a missing
/// topic cannot create it.
pub fn led_partitions<C: rdkafka::consumer::ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
) -> Result<i32> {
    let metadata = client.fetch_metadata(None, METADATA_TIMEOUT)?;
    let missing = |code| Error::Topic {
        topic: topic.to_owned(),
        code,
    };
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| missing(RDKafkaErrorCode::UnknownTopicOrPartition))?;
    if let Some(err) = t.error() {
        return Err(missing(err.into()));
    }
    if t.partitions().is_empty() {
        return Err(missing(RDKafkaErrorCode::UnknownTopicOrPartition));
    }
    for p in t.partitions() {
        if let Some(err) = p.error() {
            return Err(missing(err.into()));
        }
        if p.leader() < 0 {
            return Err(missing(RDKafkaErrorCode::LeaderNotAvailable));
        }
    }
    i32::try_from(t.partitions().len()).map_err(|_| missing(RDKafkaErrorCode::InvalidPartitions))
}

/// Whether a broker's error code is one of the states a starting cluster passes through.
pub fn transient_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::UnknownTopicOrPartition
            | C::UnknownPartition
            | C::UnknownTopic
            | C::ReplicaNotAvailable
            | C::NotEnoughReplicas
            | C::BrokerNotAvailable
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::NotController
            | C::UnknownLeaderEpoch
            | C::FencedLeaderEpoch
            | C::OffsetNotAvailable
            | C::KafkaStorageError
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_is_retried_until_it_clears() {
        let startup = Startup {
            timeout: Duration::from_secs(60),
        };
        let mut calls = 0;
        let got = startup
            .retry("a topic", || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 4 {
                        Err(Error::Topic {
                            topic: "t".into(),
                            code: RDKafkaErrorCode::LeaderNotAvailable,
                        })
                    } else {
                        Ok(n)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(got, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_wait_ends_with_an_error_naming_what_was_missing() {
        let startup = Startup {
            timeout: Duration::from_secs(10),
        };
        let began = Instant::now();
        let err = startup
            .retry("topic x.location-updates", || async {
                Err::<(), _>(Error::Topic {
                    topic: "x.location-updates".into(),
                    code: RDKafkaErrorCode::UnknownTopicOrPartition,
                })
            })
            .await
            .unwrap_err();
        let waited = began.elapsed();
        assert!(matches!(err, Error::StartupTimeout { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("topic x.location-updates"), "{text}");
        assert!(text.contains("NEARBY_STARTUP_TIMEOUT"), "{text}");
        // Stopped once the time was spent, not after: no wait runs past the deadline.
        assert!(
            waited >= Duration::from_secs(10) && waited <= Duration::from_millis(10_100),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_that_is_not_transient_is_returned_at_once() {
        let startup = Startup {
            timeout: Duration::from_secs(60),
        };
        let mut calls = 0;
        let err = startup
            .retry("a keyspace", || {
                calls += 1;
                async { Err::<(), _>(Error::InvalidKeyspace("a-b".into())) }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidKeyspace(_)), "{err}");
        assert_eq!(calls, 1);
    }
}
