//! What several stages of Nearby Friends share: where the stack is, topic names, and the setup of
//! Kafka clients, the CQL session and the Redis connection, so no stage writes them again.

pub mod admin;
pub mod auth;
pub mod clock;
pub mod cql;
pub mod error;
pub mod friendship;
pub mod geo;
pub mod history;
pub mod http;
pub mod ids;
pub mod kafka;
pub mod lag;
pub mod metrics;
pub mod partition;
pub mod procfs;
pub mod producer;
pub mod redis_store;
pub mod shutdown;
pub mod stack;
pub mod stage;
pub mod startup;
pub mod telemetry;
pub mod topics;
pub mod users;

pub use error::{Error, Result};
pub use ids::UserId;
pub use stack::{RulesArgs, StackArgs};
pub use topics::Topics;
