//! The friend graph fanout reads, from the CQL user store: friend lists and sharing flags loaded
//! (asynchronously, before the core needs them) into a bounded in-memory map the synchronous
//! core reads through [`FriendGraph`].

use std::collections::{HashMap, VecDeque};

use nearby_common::UserId;
use nearby_common::users::UserStore;

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
        // Both reads at once: an activation waits for one round trip, not two.
        let (friends, profile) =
            tokio::try_join!(store.accepted_friends(user), store.profile(user))?;
        // A user with no profile has never called the API: nobody can be their friend, and
        // they share by default.
        let sharing = profile.is_none_or(|p| p.sharing);
        self.insert(user, friends, sharing);
        Ok(())
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

    fn shares_location(&self, user: UserId) -> bool {
        self.known.get(&user).is_none_or(|k| k.sharing)
    }
}
