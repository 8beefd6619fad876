//! `nearby.v1.FriendshipEvent`, the record on the friendship events topic
//! (`schemas/avro/friendship_event.v1.avsc`).

use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::published::FRIENDSHIP_EVENT_V1_SCHEMA;
use crate::schema_version::SchemaVersion;

/// A change to who may see whose position, or to what friends see of a person.
///
/// A change to a pair is recorded twice, once under each user (`user_id` and `other_id`
/// swapped), so each user's changes are in order on their own partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FriendshipEvent {
    /// Whose side of the change this is; also the record key, as a decimal string.
    pub user_id: i64,
    /// The other user, for `Requested`, `Accepted` and `Removed`; `None` for the kinds about
    /// `user_id` alone.
    pub other_id: Option<i64>,
    /// What changed.
    pub kind: FriendshipKind,
    /// Whether `user_id` made the change; `false` on the other user's copy of a pair change.
    pub actor: bool,
    /// When, by the server's clock.
    pub at: i64,
}

/// The kinds of friendship change (an Avro enum, in this order; no default, so a reader that
/// meets a kind it does not know fails rather than guesses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FriendshipKind {
    /// A request between `user_id` and `other_id` is pending (`actor` asked).
    Requested,
    /// The request was accepted (by the `actor`): they are friends now.
    Accepted,
    /// The friendship or request ended (the `actor` unfriended, withdrew or declined).
    Removed,
    /// `user_id` turned location sharing on.
    SharingOn,
    /// `user_id` turned location sharing off.
    SharingOff,
    /// `user_id` changed their name or avatar.
    ProfileUpdated,
}

impl Record for FriendshipEvent {
    fn schema() -> &'static SchemaVersion {
        &FRIENDSHIP_EVENT_V1_SCHEMA
    }
}
