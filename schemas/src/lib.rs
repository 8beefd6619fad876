//! The Avro records on the project's Kafka topics, and their encoding.
//!
//! The schemas are the `.avsc` files in `schemas/avro/` (namespace `nearby.v1`); this crate
//! embeds every published version, and is the only place that encodes or decodes them:
//!
//! - [`LocationEvent`] on `nearby.location-updates` (position reports, connects, disconnects),
//! - [`DeliveryBatch`] (of [`Delivery`]s) on `nearby.deliveries.<gateway-id>`,
//! - [`FriendshipEvent`] on the friendship events topic.
//!
//! Records are framed so a reader can tell which schema wrote them: Avro single-object encoding
//! (`C3 01` + fingerprint + datum) by default, schema-registry framing (`00` + id + datum) where
//! a registry is configured (see [`framing`]). Decoding finds the writer's schema in a
//! [`Catalog`] and resolves it to the reader's, so a newer reader reads older records and the
//! other way round.
//!
//! ```
//! use nearby_schemas::{LocationBody, LocationEvent, PositionReport};
//!
//! let event = LocationEvent {
//!     user_id: 42,
//!     gateway_id: Some("gw-1".into()),
//!     ts: 1_764_057_600_000,
//!     received_at: 1_764_057_600_040,
//!     body: LocationBody::Position(PositionReport { lat: 37.77, lon: -122.42, accuracy_m: None }),
//! };
//! let mut buf = Vec::new();
//! nearby_schemas::encode(&event, &mut buf)?;
//! let back: LocationEvent = nearby_schemas::decode(&buf)?;
//! assert_eq!(back, event);
//! # Ok::<(), nearby_schemas::Error>(())
//! ```

mod catalog;
mod codec;
mod error;
pub mod fingerprint;
pub mod framing;
pub mod published;
mod records;
mod resolution;
mod schema_version;

pub use catalog::Catalog;
pub use codec::{Record, decode, encode, to_vec};
pub use error::{Error, Result};
pub use records::{
    Connected, Delivery, DeliveryBatch, DeliveryPayload, Disconnected, FriendLeft, FriendLocation,
    FriendshipEvent, FriendshipKind, LeftReason, LocationBody, LocationEvent, PositionReport,
};
pub use schema_version::SchemaVersion;
