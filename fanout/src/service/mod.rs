//! The fanout service: the core ([`crate::Fanout`]) wired to Kafka, the user store and Redis.
//!
//! Every instance reads **every** partition of the location topic (a consumer with no group,
//! assigned all partitions from the offsets of `now - TTL`) to keep its table of all active
//! users; a second consumer joins the `fanout` group only to learn which partitions this
//! instance **owns** (it fetches nothing: its partitions are paused) and to commit progress.
//! Events of owned partitions produce deliveries and cache writes; the rest only update the table.
//!
//! Scaling: an instance joins the group only once its table is rebuilt (readiness says so), so
//! a partition is never owned by an instance that does not know every active user yet. When
//! one is added or stops (it leaves the group at once), the cooperative rebalance moves
//! partitions among the others in a second or two; when one is killed, the group gives its
//! partitions away after the session timeout (`NEARBY_FANOUT_SESSION_TIMEOUT`, 10 s).
//! Partitions added to the topic are read from their start within `NEARBY_PARTITION_CHECK`.
//!
//! Guarantee: deliveries are at-most-once across a rebalance (a partition's new owner fans out
//! from where its table reader is, not from the old owner's last commit). An instance given
//! partitions sends the current state of their recently reporting users again
//! ([`crate::Fanout::refresh`]), which repairs the screens at the takeover; positions are
//! latest-wins and phones report every ~30 s, so the next report repairs anything else.

pub mod checkpoints;
pub mod config;
mod events;
pub mod graph;
pub mod ownership;
pub mod producer;
pub mod run;
mod status;
mod table;
mod takeover;

pub use config::FanoutServiceConfig;
pub use run::{FanoutService, Status};
