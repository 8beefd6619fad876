//! The one test kit of the workspace, a dev-dependency of every crate's tests and of
//! `system-tests` (never a normal dependency): where the running stack is ([`stack`]), fresh
//! names and ids so runs never collide ([`names`]), topics and records of a test's own
//! ([`topics`], [`records`], [`events`]), the stages in-process on port 0 ([`TestGateway`];
//! [`TestFanout`] and [`TestSink`], both a [`TestStage`]), the clients a test drives
//! ([`client`]) with tokens ([`tokens`]), the steps end-to-end tests share ([`pipeline`]) and
//! the workspace's binaries as child processes ([`process`]).
//!
//! Time is `nearby_common::clock`, re-exported here as [`now_ms`]; HTTP is
//! `nearby_common::http`, under [`http`] and [`client::get`].

pub mod client;
pub mod events;
pub mod fanout;
pub mod gateway;
pub mod names;
pub mod pipeline;
pub mod process;
pub mod records;
pub mod sink;
pub mod stack;
pub mod stage;
pub mod tokens;
pub mod topics;

pub use client::{Client, RawResponse, http, http_raw};
pub use fanout::TestFanout;
pub use gateway::TestGateway;
pub use names::{topic_prefix, unique, user};
pub use nearby_common::clock::now_ms;
pub use sink::{SinkNames, TestSink};
pub use stack::{brokers, cql_nodes, redis_url};
pub use stage::TestStage;
pub use tokens::{SECRET, token};
