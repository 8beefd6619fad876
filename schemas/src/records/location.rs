//! `nearby.v1.LocationEvent`, the record on `nearby.location-updates`
//! (`schemas/avro/location_event.v1.avsc`).

use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::published::LOCATION_EVENT_V1_SCHEMA;
use crate::schema_version::SchemaVersion;

/// Everything about one user on the location topic: a position report, a connect or a
/// disconnect. One envelope for all three keeps them on one key, so their order holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationEvent {
    /// The user (the verified JWT subject); also the record key, as a decimal string.
    pub user_id: i64,
    /// The gateway holding the user's live socket; `None` for reports that did not come over
    /// one (background batch uploads), which say nothing about where the user is connected.
    pub gateway_id: Option<String>,
    /// When it happened: the client's report time for a position, the server's time for
    /// connect and disconnect.
    pub ts: i64,
    /// When the server received it, by the server's clock.
    pub received_at: i64,
    /// What happened.
    pub body: LocationBody,
}

/// What a [`LocationEvent`] says happened (an Avro union, in this order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LocationBody {
    /// A position the client reported.
    Position(PositionReport),
    /// The user's socket opened on the event's gateway.
    Connected(Connected),
    /// The user's socket closed.
    Disconnected(Disconnected),
}

/// A reported position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PositionReport {
    /// Latitude, WGS84 degrees.
    pub lat: f64,
    /// Longitude, WGS84 degrees.
    pub lon: f64,
    /// Horizontal accuracy the device claims, metres, if it said.
    pub accuracy_m: Option<f64>,
}

/// The user's WebSocket was opened on the event's gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    /// The gateway's id for this connection, unique per connection.
    pub session_id: String,
}

/// The user's WebSocket closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnected {
    /// The session id of the [`Connected`] this closes; a disconnect of an older session must
    /// not undo a newer connection.
    pub session_id: String,
}

impl Record for LocationEvent {
    fn schema() -> &'static SchemaVersion {
        &LOCATION_EVENT_V1_SCHEMA
    }
}
