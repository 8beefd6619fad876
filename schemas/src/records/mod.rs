//! The Rust types of our records, one module per topic.
//!
//! Each type mirrors the newest published version of its `.avsc` file field for field; serde
//! maps Avro unions of records to enums with one newtype variant per branch (in the union's
//! order) and Avro enums to unit-variant enums (in the symbols' order, named as the symbols).
//! A struct's or enum's serde name must be its Avro record or enum name: the decoder checks it.
//! Ids are `i64` because Avro's `long` is signed; user ids are never negative. Times are Unix
//! epoch milliseconds.

mod delivery;
mod friendship;
mod location;

pub use delivery::{
    Delivery, DeliveryBatch, DeliveryPayload, FriendLeft, FriendLocation, LeftReason,
};
pub use friendship::{FriendshipEvent, FriendshipKind};
pub use location::{Connected, Disconnected, LocationBody, LocationEvent, PositionReport};
