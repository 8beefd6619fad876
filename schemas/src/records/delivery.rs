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

impl DeliveryBatch {
    /// Appends the framed record (single-object header and datum) of a batch holding
    /// `deliveries`, written by hand: the bytes [`crate::encode`] writes for the same batch (a
    /// test holds it to that), at a fraction of the generic encoder's cost — fanout's hottest
    /// encode (a quarter of its CPU at saturation went to the generic one). Nothing here can
    /// fail: every field is a number or an enum.
    pub fn encode_deliveries(deliveries: &[Delivery], buf: &mut Vec<u8>) {
        crate::framing::write_single_object_header(DELIVERY_BATCH_V1_SCHEMA.fingerprint(), buf);
        // An array is written as blocks: one block of every item (its count, then the items),
        // then the empty block that ends it.
        if !deliveries.is_empty() {
            put_long(buf, deliveries.len() as i64);
            for d in deliveries {
                put_long(buf, d.recipient_id);
                match &d.payload {
                    DeliveryPayload::FriendLocation(f) => {
                        put_long(buf, 0);
                        put_long(buf, f.friend_id);
                        buf.extend_from_slice(&f.lat.to_le_bytes());
                        buf.extend_from_slice(&f.lon.to_le_bytes());
                        buf.extend_from_slice(&f.distance_m.to_le_bytes());
                        put_long(buf, f.updated_at);
                    }
                    DeliveryPayload::FriendLeft(f) => {
                        put_long(buf, 1);
                        put_long(buf, f.friend_id);
                        // The enum's symbols in the schema's order.
                        put_long(buf, f.reason as i64);
                    }
                }
            }
        }
        put_long(buf, 0);
    }
}

/// An Avro `long` (or `int`): zig-zag, then 7 bits a byte, low first.
fn put_long(buf: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_written_batch_is_the_generic_encoders_bytes() {
        let reasons = [
            LeftReason::OutOfRange,
            LeftReason::Inactive,
            LeftReason::SharingOff,
            LeftReason::Unfriended,
        ];
        let ids = [0, 1, -1, 63, 64, -65, 1 << 40, i64::MAX, i64::MIN];
        let mut deliveries = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            deliveries.push(Delivery {
                recipient_id: id,
                payload: DeliveryPayload::FriendLocation(FriendLocation {
                    friend_id: ids[(i + 1) % ids.len()],
                    lat: -89.5 + i as f64,
                    lon: 179.25 - i as f64,
                    distance_m: 1234.5678 * i as f64,
                    updated_at: id.wrapping_mul(7),
                }),
            });
            deliveries.push(Delivery {
                recipient_id: ids[(i + 2) % ids.len()],
                payload: DeliveryPayload::FriendLeft(FriendLeft {
                    friend_id: id,
                    reason: reasons[i % reasons.len()],
                }),
            });
        }
        for batch in [&deliveries[..], &deliveries[..1], &[]] {
            let mut fast = Vec::new();
            DeliveryBatch::encode_deliveries(batch, &mut fast);
            let generic = crate::to_vec(&DeliveryBatch {
                deliveries: batch.to_vec(),
            })
            .expect("encodes");
            assert_eq!(fast, generic, "{} deliveries", batch.len());
            let back: DeliveryBatch = crate::decode(&fast).expect("decodes");
            assert_eq!(back.deliveries, batch);
        }
    }
}
