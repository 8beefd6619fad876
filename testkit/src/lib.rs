//! The one test kit of the workspace, a dev-dependency of every crate's tests and of
//! `system-tests` (never a normal dependency): where the running stack is ([`stack`]), fresh
//! names and ids so runs never collide ([`names`]), topics and records of a test's own
//! ([`topics`], [`records`], [`events`]), any stage in-process on port 0 ([`TestStage`], through
//! the stages' common trait, with each stage's test command line in [`fanout`] and [`sink`];
//! [`TestGateway`] for the gateway), the clients a test drives
//! ([`client`]) with tokens ([`tokens`]) and an identity provider's key set ([`jwks`]), the steps end-to-end tests share ([`pipeline`]) and
//! the workspace's binaries as child processes ([`process`]), and Kafka, Cassandra or Redis of a
//! test's own to kill and start again ([`own`]).
//!
//! The kit depends on no stage's crate (only on `nearby-common` and `nearby-schemas`), so a
//! stage's tests that use it make no crate circle.
//!
//! Time is `nearby_common::clock`, re-exported here as [`now_ms`]; HTTP is
//! `nearby_common::http`, under [`http`] and [`client::get`].

pub mod client;
pub mod events;
pub mod fanout;
pub mod gateway;
pub mod jwks;
pub mod names;
pub mod own;
pub mod pipeline;
pub mod process;
pub mod records;
pub mod sink;
pub mod stack;
pub mod stage;
pub mod tokens;
pub mod topics;

pub use client::{Client, RawResponse, http, http_raw};
pub use gateway::TestGateway;
pub use names::{topic_prefix, unique, user};
pub use nearby_common::clock::now_ms;
pub use sink::SinkNames;
pub use stack::{brokers, cql_nodes, redis_url};
pub use stage::TestStage;
pub use tokens::{ADMIN_TOKEN, SECRET, token};
