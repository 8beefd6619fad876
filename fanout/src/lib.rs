//! Fan-out: a user's friends joined with every active user's latest position, filtered by
//! distance and routed to the recipients' gateways.
//!
//! This is the core, pure and synchronous: no Kafka, no Redis, no clock. [`Fanout::apply`]
//! takes the location topic's events in each partition's log order (and whether this instance
//! owns the partition) and returns the deliveries to produce and the cache writes to make;
//! [`Fanout::sweep`] drops users who went quiet for the TTL and tells their friends. The pieces:
//!
//! - [`LatestLocations`]: every active user's position and connection, ~50 bytes a user;
//! - `ActiveFriends`: per user, links to their active friends, so an update touches those
//!   (about a tenth of all friends) instead of looking every friend up;
//! - `ExpiryQueue`: who is due a look when, so a sweep never scans the table;
//! - [`FriendGraph`]: where friend lists come from (read once, when a user becomes active);
//! - [`Point`]: a position as a fixed-point unit vector, whose range test needs no trigonometry.
//!
//! ```
//! use nearby_fanout::{Effects, Fanout, FanoutConfig, InMemoryFriendGraph};
//! use nearby_schemas::{LocationBody, LocationEvent, PositionReport};
//!
//! let mut graph = InMemoryFriendGraph::new();
//! graph.befriend(1, 2);
//! let mut fanout = Fanout::new(FanoutConfig::default())?;
//! let mut out = Effects::default();
//! let report = |user, lat, lon| LocationEvent {
//!     user_id: user,
//!     gateway_id: None,
//!     ts: 1_000,
//!     received_at: 1_000,
//!     body: LocationBody::Position(PositionReport { lat, lon, accuracy_m: None }),
//! };
//! fanout.apply(&report(1, 48.85, 2.35), true, 1_000, &graph, &mut out);
//! fanout.apply(&report(2, 48.86, 2.35), true, 1_000, &graph, &mut out);
//! assert_eq!(out.cache_writes.len(), 2);
//! assert!(out.deliveries.is_empty(), "nobody is connected");
//! # Ok::<(), nearby_fanout::Error>(())
//! ```

mod active_friends;
mod error;
mod expiry;
mod fanout;
mod friend_graph;
mod gateways;
mod latest_locations;
mod point;
pub mod service;

pub use error::{Error, Result};
pub use fanout::{Applied, CacheWrite, Effects, Fanout, FanoutConfig, RoutedDelivery};
pub use friend_graph::{FriendGraph, InMemoryFriendGraph};
pub use latest_locations::{LatestLocations, UserState};
pub use point::{Point, Radius};
