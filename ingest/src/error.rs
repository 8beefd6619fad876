//! The crate's one error type: a refused report, or a record that could not be made durable
//! (saying whether trying again later may work).

use std::time::Duration;

use nearby_common::UserId;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::rejection::Rejection;

/// A `Result` whose error defaults to [`IngestError`].
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

/// Why an event was not written to the location topic. In every case nothing of it was acked.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The client's report broke a rule or the rate limit: answer the client, do not retry.
    #[error("report rejected: {0}")]
    Rejected(Rejection),

    /// The producer queue stayed full for the whole bounded wait: Kafka is slower than the
    /// load. Retryable: the client may send again later.
    #[error(
        "the Kafka producer queue stayed full for {waited:?}: the brokers are not keeping up; \
         try again later (or raise --ingest-queue-max-messages)"
    )]
    QueueFull {
        /// How long the report waited for room.
        waited: Duration,
    },

    /// The broker did not ack the record.
    #[error(
        "producing to {topic} failed ({}): {source}",
        if *retryable { "retryable" } else { "not retryable" }
    )]
    Produce {
        /// The topic written to.
        topic: String,
        /// Whether the same record may succeed if sent again later (a timeout, a leader
        /// change, brokers down), as opposed to one that never will (too large, no such
        /// topic, a fatal producer state).
        retryable: bool,
        /// The client's error.
        #[source]
        source: KafkaError,
    },

    /// The event could not be Avro-encoded (a bug: every validated event encodes).
    #[error("encoding the location event failed: {0}")]
    Encode(#[from] nearby_schemas::Error),

    /// The caller passed a negative user id; ids come from verified tokens and are `>= 0`.
    #[error("invalid user id {0}: user ids are non-negative (the caller's bug, not the client's)")]
    InvalidUserId(UserId),

    /// The configuration is inconsistent; the message says which setting to change.
    #[error("invalid ingest configuration: {0}")]
    Config(String),

    /// The Kafka producer could not be created (a bad librdkafka setting).
    #[error("creating the Kafka producer failed: {0}")]
    Client(#[source] KafkaError),
}

impl IngestError {
    /// Whether the same event may be accepted if sent again later. Rejections are not
    /// retryable as they are, except [`Rejection::RateLimited`] after its wait.
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Rejected(r) => matches!(r, Rejection::RateLimited { .. }),
            IngestError::QueueFull { .. } => true,
            IngestError::Produce { retryable, .. } => *retryable,
            IngestError::Encode(_)
            | IngestError::InvalidUserId(_)
            | IngestError::Config(_)
            | IngestError::Client(_) => false,
        }
    }

    /// A stable machine code for an error frame or HTTP body: the rejection's own code,
    /// `unavailable` when Kafka could not take the record now, `internal` otherwise.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Rejected(r) => r.code(),
            _ if self.is_retryable() => "unavailable",
            _ => "internal",
        }
    }
}

/// Whether a failed produce may succeed later. Transient broker and network states are;
/// anything about the record or the topic itself, or a fatal producer state, is not.
pub(crate) fn is_retryable_produce_error(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    match error {
        // The producer was dropped while the record was queued (a shutting-down gateway).
        KafkaError::Canceled => true,
        _ => matches!(
            error.rdkafka_error_code(),
            Some(
                C::MessageTimedOut
                    | C::QueueFull
                    | C::BrokerTransportFailure
                    | C::AllBrokersDown
                    | C::Resolve
                    | C::OperationTimedOut
                    | C::TimedOutQueue
                    | C::RequestTimedOut
                    | C::NetworkException
                    | C::LeaderNotAvailable
                    | C::NotLeaderForPartition
                    | C::BrokerNotAvailable
                    | C::ReplicaNotAvailable
                    | C::NotEnoughReplicas
                    | C::NotEnoughReplicasAfterAppend
                    | C::ISRInsufficient
                    | C::KafkaStorageError
                    | C::FencedLeaderEpoch
                    | C::UnknownLeaderEpoch
                    | C::ThrottlingQuotaExceeded
                    | C::Retry
                    | C::PurgeQueue
                    | C::PurgeInflight
            )
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(code: RDKafkaErrorCode) -> IngestError {
        let source = KafkaError::MessageProduction(code);
        IngestError::Produce {
            topic: "t".into(),
            retryable: is_retryable_produce_error(&source),
            source,
        }
    }

    #[test]
    fn retryable_and_codes() {
        let timed_out = produce(RDKafkaErrorCode::MessageTimedOut);
        assert!(timed_out.is_retryable());
        assert_eq!(timed_out.code(), "unavailable");
        assert!(timed_out.to_string().contains("(retryable)"), "{timed_out}");

        let too_large = produce(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(!too_large.is_retryable());
        assert_eq!(too_large.code(), "internal");
        assert!(
            too_large.to_string().contains("not retryable"),
            "{too_large}"
        );
        assert!(!produce(RDKafkaErrorCode::Fatal).is_retryable());
        assert!(!produce(RDKafkaErrorCode::UnknownTopicOrPartition).is_retryable());

        let limited = IngestError::Rejected(Rejection::RateLimited { retry_after_ms: 5 });
        assert!(limited.is_retryable());
        assert_eq!(limited.code(), "rate_limited");
        let bad = IngestError::Rejected(Rejection::InvalidAccuracy { accuracy_m: -1.0 });
        assert!(!bad.is_retryable());
        assert_eq!(bad.code(), "invalid_accuracy");
        let full = IngestError::QueueFull {
            waited: Duration::from_secs(1),
        };
        assert_eq!(full.code(), "unavailable");
    }
}
