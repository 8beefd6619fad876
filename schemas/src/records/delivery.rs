//! `nearby.v1.DeliveryBatch`, the record on `nearby.deliveries.<gateway-id>`
//! (`schemas/avro/delivery_batch.v1.avsc`), and `nearby.v1.Delivery`, its item (and the record
//! on those topics before batches, `schemas/avro/delivery.v1.avsc`).

use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::published::{DELIVERY_BATCH_V1_SCHEMA, DELIVERY_V1_SCHEMA};
use crate::schema_version::SchemaVersion;

/// Every delivery one fanout step made for the recipients on one gateway, in order: one record
/// per step and gateway, so a report's friends cost the gateway one decode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryBatch {
    /// The deliveries, in the order they must be shown.
    pub deliveries: Vec<Delivery>,
}

/// Something one connected user must see, routed to the gateway holding their socket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The user who receives it.
    pub recipient_id: i64,
    /// What they learn.
    pub payload: DeliveryPayload,
}

/// What a [`Delivery`] tells its recipient (an Avro union, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum DeliveryPayload {
    /// A friend within the radius moved, came into range, or became active.
    FriendLocation(FriendLocation),
    /// Drop this friend from the list.
    FriendLeft(FriendLeft),
}

/// A friend's position as the recipient sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FriendLocation {
    /// The friend.
    pub friend_id: i64,
    /// The friend's latitude, WGS84 degrees.
    pub lat: f64,
    /// The friend's longitude, WGS84 degrees.
    pub lon: f64,
    /// Great-circle distance from the recipient, metres.
    pub distance_m: f64,
    /// The friend's report time.
    pub updated_at: i64,
}

/// A friend leaves the recipient's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FriendLeft {
    /// The friend.
    pub friend_id: i64,
    /// Why.
    pub reason: LeftReason,
}

/// Why a friend left a list (an Avro enum; readers fall back to `Inactive` for a reason they
/// do not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LeftReason {
    /// The friend moved out of the radius (or the recipient did).
    OutOfRange,
    /// The friend sent no update for 10 minutes.
    Inactive,
    /// The friend turned location sharing off.
    SharingOff,
    /// The friendship ended.
    Unfriended,
}

impl LeftReason {
    /// The reason as the client protocol spells it in `friend_left` (`out_of_range`, ...).
    pub fn as_protocol_str(self) -> &'static str {
        match self {
            LeftReason::OutOfRange => "out_of_range",
            LeftReason::Inactive => "inactive",
            LeftReason::SharingOff => "sharing_off",
            LeftReason::Unfriended => "unfriended",
        }
    }
}

impl Record for Delivery {
    fn schema() -> &'static SchemaVersion {
        &DELIVERY_V1_SCHEMA
    }
}

impl Record for DeliveryBatch {
    fn schema() -> &'static SchemaVersion {
        &DELIVERY_BATCH_V1_SCHEMA
    }
}
