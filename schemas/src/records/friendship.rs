//! `nearby.v1.FriendshipEvent`, the record on the friendship events topic
//! (`schemas/avro/friendship_event.v1.avsc`).

use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::published::FRIENDSHIP_EVENT_V1_SCHEMA;
use crate::schema_version::SchemaVersion;

/// A change to who may see whose position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FriendshipEvent {
    /// The user who made the change; also the record key, as a decimal string.
    pub user_id: i64,
    /// The other user, for `Requested`, `Accepted` and `Removed`; `None` for sharing changes.
    pub other_id: Option<i64>,
    /// What changed.
    pub kind: FriendshipKind,
    /// When, by the server's clock.
    pub at: i64,
}

/// The kinds of friendship change (an Avro enum, in this order; no default, so a reader that
/// meets a kind it does not know fails rather than guesses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FriendshipKind {
    /// `user_id` asked `other_id` to be friends.
    Requested,
    /// `user_id` accepted `other_id`'s request: they are friends now.
    Accepted,
    /// `user_id` unfriended `other_id`, or withdrew or declined a request.
    Removed,
    /// `user_id` turned location sharing on.
    SharingOn,
    /// `user_id` turned location sharing off.
    SharingOff,
}

impl Record for FriendshipEvent {
    fn schema() -> &'static SchemaVersion {
        &FRIENDSHIP_EVENT_V1_SCHEMA
    }
}
