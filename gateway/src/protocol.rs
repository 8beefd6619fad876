//! The socket's JSON frames (client contract v1): what a client sends, what the server sends,
//! and the error codes. Field names and codes here are the contract; change them only with the
//! docs and tests.

use nearby_common::UserId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// A position report.
    Location {
        /// Latitude, degrees.
        lat: f64,
        /// Longitude, degrees.
        lon: f64,
        /// When the device took it, epoch ms.
        ts: i64,
        /// Claimed accuracy, metres.
        #[serde(default)]
        accuracy_m: Option<f64>,
    },
    /// The next page of nearby friends.
    More {
        /// The `next` cursor of the previous page.
        cursor: String,
    },
    /// Keep-alive.
    Ping {
        /// Echoed in the `pong`.
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
}

/// A friend as the client shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_id": "17", "name": "Ana", "lat": 37.77, "lon": -122.42, "distance_m": 812.5, "updated_at": 1764057600000_i64}))]
pub struct FriendEntry {
    /// The friend's id, a decimal string.
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Distance from the recipient, metres, two decimals at most.
    pub distance_m: f64,
    /// The friend's last update, epoch ms.
    pub updated_at: i64,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A page of active friends in range, nearest first.
    Nearby {
        /// The page.
        friends: Vec<FriendEntry>,
        /// Cursor of the next page, or null at the end.
        next: Option<String>,
    },
    /// A friend in range moved, came into range, or became active.
    FriendLocation(FriendEntry),
    /// Drop this friend from the list.
    FriendLeft {
        /// The friend's id, a decimal string.
        user_id: String,
        /// `out_of_range`, `inactive`, `sharing_off` or `unfriended`.
        reason: &'static str,
    },
    /// A bad message; the connection stays open unless the code says it closes.
    Error {
        /// Machine-readable code (see [`codes`]).
        code: &'static str,
        /// What was wrong, for a person.
        message: String,
        /// The `id` or `type` of the frame it answers, when known.
        #[serde(skip_serializing_if = "Option::is_none", rename = "ref")]
        reference: Option<String>,
    },
    /// The server is draining: connect again.
    Reconnect {
        /// Why.
        reason: &'static str,
        /// Wait this long first, ms.
        #[serde(skip_serializing_if = "Option::is_none")]
        after_ms: Option<u64>,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
}

impl ServerFrame {
    /// An `error` frame.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            reference: None,
        }
    }

    /// The JSON text of the frame.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail (no maps with non-string keys, no NaN:
        // distances and coordinates are checked finite before they get here).
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"unencodable frame"}"#.to_owned()
        })
    }
}

/// The frames of the delivery path, borrowing what they carry: built once per delivery
/// straight into the socket's bytes, they serialize exactly as the [`ServerFrame`] of the same
/// kind (a test holds them to it) without allocating its strings.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeliveryFrame<'a> {
    /// As [`ServerFrame::FriendLocation`].
    FriendLocation {
        /// The friend's id, a decimal string.
        user_id: &'a str,
        /// Display name.
        name: &'a str,
        /// Latitude, degrees.
        lat: f64,
        /// Longitude, degrees.
        lon: f64,
        /// Distance from the recipient, metres, two decimals at most.
        distance_m: f64,
        /// The friend's last update, epoch ms.
        updated_at: i64,
    },
    /// As [`ServerFrame::FriendLeft`].
    FriendLeft {
        /// The friend's id, a decimal string.
        user_id: &'a str,
        /// Why.
        reason: &'static str,
    },
}

/// Rounds a distance to two decimals, as the contract says.
pub fn round_distance(m: f64) -> f64 {
    (m * 100.0).round() / 100.0
}

/// A friend id as the contract writes it.
pub fn id_string(id: UserId) -> String {
    id.to_string()
}

/// The `error` codes a socket client can receive.
pub mod codes {
    /// The frame is not JSON, or not an object with a known `type` and its fields.
    pub const BAD_FRAME: &str = "bad_frame";
    /// A binary frame: the protocol is JSON text.
    pub const BINARY_NOT_SUPPORTED: &str = "binary_not_supported";
    /// The frame is larger than the limit; it was dropped.
    pub const FRAME_TOO_LARGE: &str = "frame_too_large";
    /// Coordinates not finite or out of range.
    pub const INVALID_COORDINATES: &str = "invalid_coordinates";
    /// The report's time is too far ahead of the server's.
    pub const TIMESTAMP_IN_FUTURE: &str = "timestamp_in_future";
    /// The report's time is too old.
    pub const TIMESTAMP_TOO_OLD: &str = "timestamp_too_old";
    /// Accuracy not finite, negative or too large.
    pub const INVALID_ACCURACY: &str = "invalid_accuracy";
    /// Reports faster than the per-user limit; this one was dropped.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Too many frames: the server closes the connection (close code 1008).
    pub const FLOOD: &str = "flood";
    /// `more` with a cursor this server did not issue.
    pub const BAD_CURSOR: &str = "bad_cursor";
    /// `more` before any `location`: there is no position to measure from.
    pub const NO_POSITION: &str = "no_position";
    /// The report could not be stored right now; send it again.
    pub const UNAVAILABLE: &str = "unavailable";
}

/// WebSocket close codes the server uses.
pub mod close {
    /// Policy violation: flooding past the frame rate limit.
    pub const FLOOD: u16 = 1008;
    /// A frame larger than the transport's hard limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server is shutting down or draining.
    pub const GOING_AWAY: u16 = 1001;
    /// No frame (not even a pong) for longer than the idle timeout.
    pub const IDLE: u16 = 1000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"location","lat":37.77,"lon":-122.42,"ts":1}"#)
                .expect("location");
        assert_eq!(
            f,
            ClientFrame::Location {
                lat: 37.77,
                lon: -122.42,
                ts: 1,
                accuracy_m: None
            }
        );
        let f: ClientFrame = serde_json::from_str(r#"{"type":"ping","id":7}"#).expect("ping");
        assert_eq!(
            f,
            ClientFrame::Ping {
                id: Some(serde_json::json!(7))
            }
        );
        for bad in [
            r#"{"type":"location","lat":"x","lon":0,"ts":1}"#,
            r#"{"type":"teleport"}"#,
            r#"{"lat":1}"#,
            r#"{"type":"location","lat":NaN,"lon":0,"ts":1}"#,
            r#"{"type":"location","lat":1,"lon":0,"ts":1,"user_id":"99"}"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_frames_match_the_contract() {
        let entry = FriendEntry {
            user_id: "17".into(),
            name: "Ana".into(),
            lat: 37.77,
            lon: -122.42,
            distance_m: 812.5,
            updated_at: 1_764_057_600_000,
        };
        assert_eq!(
            ServerFrame::FriendLocation(entry.clone()).to_json(),
            r#"{"type":"friend_location","user_id":"17","name":"Ana","lat":37.77,"lon":-122.42,"distance_m":812.5,"updated_at":1764057600000}"#
        );
        assert_eq!(
            ServerFrame::Nearby {
                friends: vec![],
                next: None
            }
            .to_json(),
            r#"{"type":"nearby","friends":[],"next":null}"#
        );
        assert_eq!(
            ServerFrame::FriendLeft {
                user_id: "17".into(),
                reason: "inactive"
            }
            .to_json(),
            r#"{"type":"friend_left","user_id":"17","reason":"inactive"}"#
        );
        assert_eq!(
            ServerFrame::Pong { id: None }.to_json(),
            r#"{"type":"pong"}"#
        );
        assert_eq!(round_distance(812.456), 812.46);
    }

    #[test]
    fn delivery_frames_serialize_as_their_server_frames() {
        let entry = FriendEntry {
            user_id: "17".into(),
            name: "Ana \"A\" Ö".into(),
            lat: 37.77,
            lon: -122.42,
            distance_m: 812.5,
            updated_at: 1_764_057_600_000,
        };
        let borrowed = DeliveryFrame::FriendLocation {
            user_id: &entry.user_id,
            name: &entry.name,
            lat: entry.lat,
            lon: entry.lon,
            distance_m: entry.distance_m,
            updated_at: entry.updated_at,
        };
        assert_eq!(
            serde_json::to_string(&borrowed).unwrap(),
            ServerFrame::FriendLocation(entry).to_json()
        );
        assert_eq!(
            serde_json::to_string(&DeliveryFrame::FriendLeft {
                user_id: "17",
                reason: "unfriended"
            })
            .unwrap(),
            ServerFrame::FriendLeft {
                user_id: "17".into(),
                reason: "unfriended"
            }
            .to_json()
        );
    }
}
