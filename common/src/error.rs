//! The one error type of the shared crate.

/// What went wrong while talking to the stack or reading its configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name that Kafka would reject or that would collide with another topic.
    #[error("invalid topic name {name:?}: {why}")]
    InvalidTopicName {
        /// The name as given.
        name: String,
        /// What rule it breaks.
        why: &'static str,
    },
    /// A Kafka client call failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// No broker answered a metadata request in time.
    #[error(
        "no Kafka broker answered at {brokers} within {timeout:?}: {source} (is it up? `stack/stack.sh status`)"
    )]
    Unreachable {
        /// The bootstrap servers tried.
        brokers: String,
        /// How long we waited.
        timeout: std::time::Duration,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A topic operation failed on the broker for one topic.
    #[error("kafka topic {topic}: {code} (is the broker up? `stack/stack.sh status`)")]
    Topic {
        /// The topic concerned.
        topic: String,
        /// The broker's error code.
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// The CQL session could not be opened.
    #[error("cql connect to {nodes:?}: {source} (is Cassandra up? `stack/stack.sh status`)")]
    CqlConnect {
        /// The contact points tried.
        nodes: Vec<String>,
        /// The driver's error.
        #[source]
        source: Box<scylla::errors::NewSessionError>,
    },
    /// A CQL statement failed.
    #[error("cql: {0}")]
    Cql(#[from] Box<scylla::errors::ExecutionError>),
    /// A CQL statement could not be prepared (a schema missing? run the schema step).
    #[error("cql prepare: {0} (are the tables created? `nearby-admin schema create`)")]
    CqlPrepare(#[from] Box<scylla::errors::PrepareError>),
    /// Paging through a CQL result failed.
    #[error("cql paging: {0}")]
    CqlPaging(String),
    /// A CQL row did not have the shape the code expects.
    #[error("cql row: {0}")]
    CqlDecode(String),
    /// No profile with this id.
    #[error("user {0} not found")]
    UnknownUser(i64),
    /// A person cannot befriend themself.
    #[error("you cannot be your own friend")]
    SelfFriendship,
    /// A friend list is full.
    #[error("user {user} has reached the limit of {cap} friends and requests")]
    FriendCap {
        /// Whose list is full.
        user: i64,
        /// The limit.
        cap: usize,
    },
    /// A person holds as many pending incoming requests as allowed.
    #[error("user {user} has {cap} friend requests waiting already")]
    PendingCap {
        /// Whose requests are full.
        user: i64,
        /// The limit.
        cap: usize,
    },
    /// Other changes to the same pair kept winning; the caller may retry.
    #[error("the friendship of {a} and {b} is being changed concurrently: try again")]
    Contention {
        /// One side.
        a: i64,
        /// The other side.
        b: i64,
    },
    /// A record could not be encoded.
    #[error("avro: {0}")]
    Avro(#[from] nearby_schemas::Error),
    /// A record was not acknowledged by the brokers in time.
    #[error("kafka produce to {topic}: {source}")]
    Produce {
        /// The topic written.
        topic: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Redis refused or could not be reached.
    #[error("redis: {0} (is Redis up? `stack/stack.sh status`)")]
    Redis(#[from] redis::RedisError),
    /// A time range that is empty or too wide to read at once.
    #[error(
        "bad range: from {from_ms} to {to_ms} (ms) must be non-empty and at most {max_days} days"
    )]
    BadRange {
        /// Start, inclusive, epoch ms.
        from_ms: i64,
        /// End, exclusive, epoch ms.
        to_ms: i64,
        /// The widest range allowed.
        max_days: i64,
    },
    /// A keyspace name that CQL would reject.
    #[error(
        "invalid keyspace name {0:?}: use 1-48 letters, digits or underscores, starting with a letter"
    )]
    InvalidKeyspace(String),
    /// Start-up waited for something of the stack for `NEARBY_STARTUP_TIMEOUT` in vain.
    #[error(
        "gave up after {waited:.1?} waiting for {what} (NEARBY_STARTUP_TIMEOUT): {last} (is the stack up? `stack/stack.sh status`)"
    )]
    StartupTimeout {
        /// What was waited for.
        what: String,
        /// How long.
        waited: std::time::Duration,
        /// The last attempt's error.
        last: Box<Error>,
    },
    /// A blocking call run off the runtime's workers panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Blocking(String),
    /// A reading of /proc failed, or not exactly one process runs the program asked for
    /// ([`crate::procfs`]); the message says which file or program.
    #[error("{0}")]
    Proc(String),
}

impl Error {
    /// Whether this is one of the states a starting (or briefly unavailable) stack passes
    /// through: no leader yet, a topic just created, a broker, CQL node or Redis not answering
    /// yet or still loading. Start-up waits these out ([`crate::startup`]).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kafka(e) | Error::Unreachable { source: e, .. } => kafka_transient(e),
            Error::Produce { source, .. } => kafka_transient(source),
            Error::Topic { code, .. } => crate::startup::transient_code(*code),
            Error::CqlConnect { .. } => true,
            Error::Cql(e) => cql_transient(e),
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
            }
            _ => false,
        }
    }
}

/// A node not answering or not ready yet; never a refused statement (syntax, schema, auth).
fn cql_transient(e: &scylla::errors::ExecutionError) -> bool {
    use scylla::errors::{DbError, ExecutionError as E, RequestAttemptError as A};
    match e {
        E::ConnectionPoolError(_)
        | E::RequestTimeout(_)
        | E::EmptyPlan
        | E::SchemaAgreementError(_)
        | E::MetadataError(_) => true,
        E::LastAttemptError(A::DbError(db, _)) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
        ),
        E::LastAttemptError(A::BrokenConnectionError(_) | A::UnableToAllocStreamId) => true,
        _ => false,
    }
}

fn kafka_transient(e: &rdkafka::error::KafkaError) -> bool {
    e.rdkafka_error_code()
        .is_some_and(crate::startup::transient_code)
}

/// Result with the shared [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use scylla::errors::{DbError, ExecutionError, RequestAttemptError};

    use super::*;

    fn cql(db: DbError) -> Error {
        Error::Cql(Box::new(ExecutionError::LastAttemptError(
            RequestAttemptError::DbError(db, "from the node".into()),
        )))
    }

    #[test]
    fn a_node_not_ready_is_waited_for_but_a_refused_statement_is_not() {
        assert!(cql(DbError::IsBootstrapping).is_transient());
        assert!(cql(DbError::Overloaded).is_transient());
        assert!(!cql(DbError::SyntaxError).is_transient());
        assert!(!cql(DbError::Unauthorized).is_transient());
        let topic = |code| Error::Topic {
            topic: "t".into(),
            code,
        };
        assert!(topic(rdkafka::types::RDKafkaErrorCode::LeaderNotAvailable).is_transient());
        assert!(!topic(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed).is_transient());
        assert!(!Error::InvalidKeyspace("a-b".into()).is_transient());
    }
}
