//! The write path into Kafka, used by the gateway for `location` frames, connects and
//! disconnects (and later by the HTTP batch endpoint).
//!
//! For each client report [`Ingest`] validates it ([`Report::validate`]: finite coordinates in
//! range, a sane timestamp and accuracy), applies the per-user rate limit ([`RateLimiter`]),
//! encodes a [`nearby_schemas::LocationEvent`] and produces it to the location topic keyed by
//! the user id, with the shared idempotent, murmur2-partitioned producer; it answers once the
//! broker acked the record. Connects and disconnects are `LocationEvent`s on the same topic and
//! key, so a user's events stay in order. The user id always comes from the caller (the
//! verified token), never from the report.
//!
//! ```no_run
//! use nearby_ingest::{Ingest, IngestConfig, IngestError, Report};
//!
//! # async fn demo() -> Result<(), IngestError> {
//! let ingest = Ingest::new("127.0.0.1:9092", "nearby.location-updates", &IngestConfig::default())?;
//! ingest.connected(42, "gw-1", "session-a").await?;
//! let report = Report { lat: 37.77, lon: -122.42, ts: 1_764_057_600_000, accuracy_m: Some(8.0) };
//! match ingest.report(42, Some("gw-1"), report).await {
//!     Ok(accepted) => println!("durable at {}:{}", accepted.partition, accepted.offset),
//!     Err(IngestError::Rejected(why)) => println!("{}: {}", why.code(), why.message()),
//!     Err(other) => println!("try again later? {}", other.is_retryable()),
//! }
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod ingest;
mod metrics;
mod producer;
mod rate_limit;
mod rejection;
mod report;

pub use config::IngestConfig;
pub use error::{IngestError, Result};
pub use ingest::{Accepted, Ingest, ReportOptions};
pub use metrics::{IngestCollector, MetricsSnapshot, RejectedCounts};
pub use rate_limit::{LimitKey, Limited, RateLimit, RateLimiter};
pub use rejection::Rejection;
pub use report::{MAX_ACCURACY_M, Report, ValidationLimits};
