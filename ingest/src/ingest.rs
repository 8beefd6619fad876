//! [`Ingest`]: the write path the gateway (and later the HTTP batch endpoint) calls for every
//! position report, connect and disconnect. It checks, limits, encodes and produces each one
//! to the location topic under the user's key, and answers once the broker has acked it.

use std::sync::Arc;
use std::time::Duration;

use nearby_common::UserId;
use nearby_common::ids::user_key;
use nearby_schemas::{Connected, Disconnected, LocationBody, LocationEvent, PositionReport};

use crate::config::IngestConfig;
use crate::error::{IngestError, Result};
use crate::metrics::{EventKind, Metrics, MetricsSnapshot};
use crate::producer::LocationProducer;
use crate::rate_limit::RateLimiter;
use crate::rejection::Rejection;
use nearby_common::clock::now_ms;

use crate::report::{Report, ValidationLimits};

/// A record the broker acked: it is durable (`acks=all`) at this position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The partition of the location topic it was written to (the user's partition).
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// The server time written as the event's `received_at`, epoch ms.
    pub received_at: i64,
}

/// How one report is checked, for callers other than the live socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// The timestamp limits to apply.
    pub limits: ValidationLimits,
    /// Whether the report spends a token of the user's rate limit. The batch-upload path
    /// passes `false` and bounds its requests itself (batch size, requests per user), since a
    /// phone back online legitimately uploads more positions at once than a live burst.
    pub rate_limited: bool,
}

/// The write path into the location topic. Cheap to clone: clones share one producer, one
/// rate limiter and one set of counters.
///
/// Dropping the last clone purges records still queued in the producer; since every call
/// waits for its ack, that only loses the records of calls that were themselves dropped.
/// Call [`flush`](Self::flush) at shutdown to give those a chance.
#[derive(Debug, Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    producer: LocationProducer,
    limiter: RateLimiter,
    live_limits: ValidationLimits,
    metrics: Metrics,
}

impl Ingest {
    /// Ingest writing to `topic` (normally `Topics::location_updates()`) on `brokers`.
    ///
    /// Checks `config` first and fails with a message naming the setting to fix. Does not
    /// contact the brokers: the producer connects in the background, and an unreachable
    /// cluster shows up as retryable errors on the calls.
    pub fn new(brokers: &str, topic: impl Into<String>, config: &IngestConfig) -> Result<Self> {
        config.validate()?;
        let producer = LocationProducer::new(brokers, topic.into(), config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                producer,
                limiter: RateLimiter::new(config.rate_limit()),
                live_limits: config.live_limits(),
                metrics: Metrics::default(),
            }),
        })
    }

    /// The topic records are written to.
    pub fn topic(&self) -> &str {
        self.inner.producer.topic()
    }

    /// The validation limits of live reports (from the config).
    pub fn live_limits(&self) -> ValidationLimits {
        self.inner.live_limits
    }

    /// Checks, rate-limits and produces a live position report of `user` (from the verified
    /// token, never from the report), sent over the socket held by `gateway_id` (`None` when
    /// it did not come over a socket). Resolves once the broker acked it.
    ///
    /// A rejected report produces nothing and returns [`IngestError::Rejected`].
    pub async fn report(
        &self,
        user: UserId,
        gateway_id: Option<&str>,
        report: Report,
    ) -> Result<Accepted> {
        let options = ReportOptions {
            limits: self.inner.live_limits,
            rate_limited: true,
        };
        self.report_with(user, gateway_id, report, &options).await
    }

    /// [`report`](Self::report) with other limits (the batch-upload path).
    ///
    /// Everything up to handing the record to the producer happens on this future's first
    /// poll, before it first waits, so calls made one after another (or polled in order, as
    /// `join_all` does) enqueue in call order, and the idempotent producer keeps that order
    /// per user on the partition.
    pub async fn report_with(
        &self,
        user: UserId,
        gateway_id: Option<&str>,
        report: Report,
        options: &ReportOptions,
    ) -> Result<Accepted> {
        check_user(user)?;
        let received_at = now_ms();
        // Validation comes before the rate limit: a malformed report costs no token (it
        // reaches neither Kafka nor anyone's screen), and a client fixing its clock is not
        // locked out by its earlier mistakes.
        report
            .validate(received_at, &options.limits)
            .map_err(|r| self.reject(user, r))?;
        if options.rate_limited {
            self.inner.limiter.check(user).map_err(|limited| {
                self.reject(
                    user,
                    Rejection::RateLimited {
                        retry_after_ms: limited.retry_after_ms(),
                    },
                )
            })?;
        }
        let event = LocationEvent {
            user_id: user,
            gateway_id: gateway_id.map(str::to_owned),
            ts: report.ts,
            received_at,
            body: LocationBody::Position(PositionReport {
                lat: report.lat,
                lon: report.lon,
                accuracy_m: report.accuracy_m,
            }),
        };
        self.produce(event, EventKind::Position).await
    }

    /// Records that `user`'s socket opened on `gateway_id` as session `session_id`. Not
    /// rate-limited: the gateway, not the client, decides when this is sent, and bounds
    /// connections itself.
    pub async fn connected(
        &self,
        user: UserId,
        gateway_id: &str,
        session_id: &str,
    ) -> Result<Accepted> {
        let body = LocationBody::Connected(Connected {
            session_id: session_id.to_owned(),
        });
        self.session_event(user, gateway_id, body, EventKind::Connected)
            .await
    }

    /// Records that `user`'s session `session_id` on `gateway_id` closed. Never rate-limited
    /// or dropped on purpose: a lost disconnect would leave fanout routing to a dead socket.
    pub async fn disconnected(
        &self,
        user: UserId,
        gateway_id: &str,
        session_id: &str,
    ) -> Result<Accepted> {
        let body = LocationBody::Disconnected(Disconnected {
            session_id: session_id.to_owned(),
        });
        self.session_event(user, gateway_id, body, EventKind::Disconnected)
            .await
    }

    /// A copy of the counters and the rate limiter's gauge.
    pub fn metrics(&self) -> MetricsSnapshot {
        let limiter = &self.inner.limiter;
        self.inner
            .metrics
            .snapshot(limiter.tracked_users(), limiter.evictions())
    }

    /// Records handed to the producer and not yet acknowledged by Kafka (its queue's depth).
    pub fn queued(&self) -> usize {
        self.inner.producer.queued()
    }

    /// Waits up to `timeout` for records still queued in the producer to be delivered: call
    /// it at shutdown, after the callers have stopped.
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner.producer.flush(timeout).await
    }

    async fn session_event(
        &self,
        user: UserId,
        gateway_id: &str,
        body: LocationBody,
        kind: EventKind,
    ) -> Result<Accepted> {
        check_user(user)?;
        let now = now_ms();
        let event = LocationEvent {
            user_id: user,
            gateway_id: Some(gateway_id.to_owned()),
            // Connect and disconnect happen on the server: its clock is the event time.
            ts: now,
            received_at: now,
            body,
        };
        self.produce(event, kind).await
    }

    /// Encodes and produces `event` under its user's key, waiting for the ack.
    ///
    /// Waiting for the ack (rather than fire-and-forget) lets the caller tell the client its
    /// report is durable, and keeps a user's order when something goes wrong. The idempotent
    /// producer already keeps enqueued records in order across its own retries; what it cannot
    /// order is a record that failed (timed out) and is sent again by the caller. A caller that
    /// awaits each call learns of the failure before it enqueues anything newer, so its retry
    /// still lands before the newer events, and a Disconnected never overtakes the position
    /// sent just before it.
    async fn produce(&self, event: LocationEvent, kind: EventKind) -> Result<Accepted> {
        let metrics = &self.inner.metrics;
        let payload = nearby_schemas::to_vec(&event).inspect_err(|error| {
            metrics.produce_error(false);
            tracing::error!(%error, "location event failed to encode");
        })?;
        let key = user_key(event.user_id);
        match self.inner.producer.send(&key, &payload).await {
            Ok(written) => {
                metrics.produced(kind);
                Ok(Accepted {
                    partition: written.partition,
                    offset: written.offset,
                    received_at: event.received_at,
                })
            }
            Err(error) => {
                match &error {
                    IngestError::QueueFull { .. } => metrics.queue_full(),
                    other => metrics.produce_error(other.is_retryable()),
                }
                if error.is_retryable() {
                    tracing::warn!(topic = self.topic(), %error, "location event not produced");
                } else {
                    tracing::error!(topic = self.topic(), %error, "location event not produced");
                }
                Err(error)
            }
        }
    }

    /// Counts and logs a rejection, and wraps it as the error to return.
    fn reject(&self, user: UserId, rejection: Rejection) -> IngestError {
        self.inner.metrics.rejected(&rejection);
        tracing::debug!(user, code = rejection.code(), "location report rejected");
        IngestError::Rejected(rejection)
    }
}

/// User ids come from verified tokens and are never negative.
fn check_user(user: UserId) -> Result<()> {
    if user < 0 {
        return Err(IngestError::InvalidUserId(user));
    }
    Ok(())
}
