//! The user store in the CQL store: profiles (created just in time), friendships with
//! request/accept, and the location-sharing switch.
//!
//! Friendship is mutual: `A` asks, `B` accepts. The truth about a pair is one row of
//! `friend_pairs`, keyed by the pair, changed only with lightweight transactions so two people
//! acting at once cannot leave it half-done; `friends_by_user` is the per-person listing derived
//! from it (written after the pair row, both sides in one logged batch).

mod friendship;
mod pending;
mod schema;
mod store;

pub use schema::create_schema;
pub use store::{
    FriendEdge, FriendState, Profile, ProfileUpdate, RemoveOutcome, RequestOutcome, UserStore,
};

/// The most friends (accepted and pending together) one person can have.
pub const MAX_FRIENDS: usize = 5_000;

/// The most pending incoming friend requests one person holds by default: beyond, a new
/// request to them is refused, so many accounts cannot fill someone's list.
pub const DEFAULT_MAX_PENDING: usize = 100;
