//! The history sink: every position on the location topic into `location_history` in the CQL
//! store, at least once, with a primary key that makes a rewrite the same row (so at-least-once
//! is exactly-once in the table).
//!
//! - [`Progress`]: which offsets of each partition are written, so an offset is stored for
//!   commit only once every record before it is in the table;
//! - [`HistorySink`]: the consumer loop — bounded concurrent writes, retries with backoff while
//!   the CQL store is down, poison records logged, counted and skipped;
//! - [`SinkStatus`]: its counters, readiness and metrics on the admin port;
//! - [`group`]: the consumer group's side — partitions held, readiness, the commit of revoked
//!   partitions, per-partition lag.

pub mod config;
pub mod group;
pub mod progress;
pub mod sink;
pub mod status;
mod writer;

pub use config::SinkConfig;
pub use progress::Progress;
pub use sink::HistorySink;
pub use status::SinkStatus;
