//! The friend graph fanout reads, from the CQL user store: friend lists and sharing flags loaded
//! (asynchronously, before the core needs them) into a bounded in-memory map the synchronous
//! core reads through [`FriendGraph`]. It fails closed: a user not held (never loaded, a load
//! that failed, or dropped from the bounded map) is friendless and not sharing until loaded —
//! a delay, never a position shown to someone who should not see it.

use std::collections::{HashMap, VecDeque};

use nearby_common::UserId;
use nearby_common::users::UserStore;
use nearby_schemas::{FriendshipEvent, FriendshipKind};

use crate::FriendGraph;

/// What is known of one user.
#[derive(Debug, Clone)]
struct Known {
    friends: Vec<UserId>,
    sharing: bool,
}

/// Friend lists and sharing flags of recently active users, at most `capacity` of them.
#[derive(Debug)]
pub struct StoreGraph {
    known: HashMap<UserId, Known>,
    // Insertion order, for dropping the oldest when full (an approximate LRU: cheap, and a
    // dropped entry is only read again from the store).
    order: VecDeque<UserId>,
    capacity: usize,
}

impl StoreGraph {
    /// An empty graph holding at most `capacity` users.
    pub fn new(capacity: usize) -> Self {
        Self {
            known: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Loads `user`'s accepted friends and sharing flag from the store.
    pub async fn load(&mut self, store: &UserStore, user: UserId) -> nearby_common::Result<()> {
        match self.load_many(store, &[user], 1).await.pop() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Loads several users at once, at most `concurrency` store reads in flight; returns the
    /// users whose lists could not be read, with the error.
    pub async fn load_many(
        &mut self,
        store: &UserStore,
        users: &[UserId],
        concurrency: usize,
    ) -> Vec<(UserId, nearby_common::Error)> {
        use futures::StreamExt;
        // Reads run concurrently; the inserts happen here, one by one, once each is back (the
        // map is not shared with the reads).
        let mut reads = futures::stream::iter(users.iter().copied())
            .map(|user| async move {
                // Both reads at once: an activation waits for one round trip, not two.
                let read = tokio::try_join!(store.accepted_friends(user), store.profile(user));
                (user, read)
            })
            .buffer_unordered(concurrency.max(1));
        let mut failed = Vec::new();
        while let Some((user, read)) = reads.next().await {
            match read {
                Ok((friends, profile)) => {
                    // A user with no profile has never called the API: nobody can be their
                    // friend, and they share by default.
                    self.insert(user, friends, profile.is_none_or(|p| p.sharing));
                }
                Err(e) => failed.push((user, e)),
            }
        }
        failed
    }

    /// Whether `user`'s friend list and sharing flag are held.
    pub fn knows(&self, user: UserId) -> bool {
        self.known.contains_key(&user)
    }

    /// Applies the part of a change the core must see before it applies it: a new friend, a
    /// sharing switch. Only `user`'s own side: the other side has its own record.
    pub fn before_change(&mut self, change: &FriendshipEvent) {
        let Some(known) = self.known.get_mut(&change.user_id) else {
            return; // read afresh from the store when the user becomes active
        };
        match (change.kind, change.other_id) {
            (FriendshipKind::Accepted, Some(other)) if !known.friends.contains(&other) => {
                known.friends.push(other);
            }
            (FriendshipKind::SharingOn, _) => known.sharing = true,
            (FriendshipKind::SharingOff, _) => known.sharing = false,
            _ => {}
        }
    }

    /// Applies the part of a change the core must see after it: a removed friend (the core
    /// tells the pair only while the graph still shows them as friends).
    pub fn after_change(&mut self, change: &FriendshipEvent) {
        if let (FriendshipKind::Removed, Some(other)) = (change.kind, change.other_id)
            && let Some(known) = self.known.get_mut(&change.user_id)
        {
            known.friends.retain(|&f| f != other);
        }
    }

    fn insert(&mut self, user: UserId, friends: Vec<UserId>, sharing: bool) {
        if self
            .known
            .insert(user, Known { friends, sharing })
            .is_none()
        {
            self.order.push_back(user);
        }
        while self.known.len() > self.capacity {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.known.remove(&old);
        }
    }
}

impl FriendGraph for StoreGraph {
    fn friends_of(&self, user: UserId, out: &mut Vec<UserId>) {
        if let Some(k) = self.known.get(&user) {
            out.extend_from_slice(&k.friends);
        }
    }

    fn are_friends(&self, a: UserId, b: UserId) -> bool {
        self.known.get(&a).is_some_and(|k| k.friends.contains(&b))
    }

    fn shares_location(&self, user: UserId) -> bool {
        // Unknown is not sharing: the sharing flag may be off in the store.
        self.known.get(&user).is_some_and(|k| k.sharing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_not_held_is_friendless_and_not_sharing() {
        let mut graph = StoreGraph::new(1);
        assert!(!graph.shares_location(7));
        graph.insert(7, vec![8], true);
        assert!(graph.shares_location(7) && graph.are_friends(7, 8));
        // Dropped to make room: unknown again, so not sharing again.
        graph.insert(9, vec![], true);
        assert!(!graph.knows(7) && !graph.shares_location(7) && !graph.are_friends(7, 8));
    }
}
