//! Where fanout learns who is friends with whom: the [`FriendGraph`] trait, and an in-memory
//! graph for tests and benchmarks. The service's source is the CQL user store (`service::graph`).

use std::collections::HashMap;

use nearby_common::UserId;

/// Accepted friendships (mutual: if B is among A's friends, A is among B's), and whether a user
/// shares their location.
///
/// Fanout reads a user's friend list once, when the user becomes active, not on every update.
pub trait FriendGraph {
    /// Appends `user`'s accepted friends to `out`, each once, in any order. Pending requests
    /// are not friends.
    fn friends_of(&self, user: UserId, out: &mut Vec<UserId>);

    /// Whether `a` and `b` are friends (as far as `a`'s list says).
    fn are_friends(&self, a: UserId, b: UserId) -> bool {
        let mut out = Vec::new();
        self.friends_of(a, &mut out);
        out.contains(&b)
    }

    /// Whether `user` shares their location. A user who does not is left out of fan-out both
    /// ways: their position reaches no one and they are sent no one's. A switch while the user
    /// is active unlinks or relinks them ([`crate::Fanout::apply_change`]).
    fn shares_location(&self, user: UserId) -> bool {
        let _ = user;
        true
    }
}

/// A friend graph held in memory, for tests and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct InMemoryFriendGraph {
    friends: HashMap<UserId, Vec<UserId>>,
    not_sharing: Vec<UserId>,
}

impl InMemoryFriendGraph {
    /// An empty graph.
    pub fn new() -> InMemoryFriendGraph {
        InMemoryFriendGraph::default()
    }

    /// Makes `a` and `b` friends (both ways); nothing if they are already, or are one user.
    pub fn befriend(&mut self, a: UserId, b: UserId) {
        if a == b || self.are_friends(a, b) {
            return;
        }
        self.friends.entry(a).or_default().push(b);
        self.friends.entry(b).or_default().push(a);
    }

    /// Ends the friendship of `a` and `b`, if any.
    pub fn unfriend(&mut self, a: UserId, b: UserId) {
        for (one, other) in [(a, b), (b, a)] {
            if let Some(list) = self.friends.get_mut(&one) {
                list.retain(|&f| f != other);
            }
        }
    }

    /// Whether `a` and `b` are friends.
    pub fn are_friends(&self, a: UserId, b: UserId) -> bool {
        self.friends(a).contains(&b)
    }

    /// `user`'s friends.
    pub fn friends(&self, user: UserId) -> &[UserId] {
        self.friends.get(&user).map_or(&[], Vec::as_slice)
    }

    /// Turns `user`'s location sharing on or off (read when the user becomes active).
    pub fn set_sharing(&mut self, user: UserId, on: bool) {
        self.not_sharing.retain(|&u| u != user);
        if !on {
            self.not_sharing.push(user);
        }
    }
}

impl FriendGraph for InMemoryFriendGraph {
    fn friends_of(&self, user: UserId, out: &mut Vec<UserId>) {
        out.extend_from_slice(self.friends(user));
    }

    fn shares_location(&self, user: UserId) -> bool {
        !self.not_sharing.contains(&user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendship_is_mutual() {
        let mut graph = InMemoryFriendGraph::new();
        graph.befriend(1, 2);
        graph.befriend(2, 1);
        graph.befriend(1, 1);
        assert_eq!(graph.friends(1), &[2]);
        assert_eq!(graph.friends(2), &[1]);
        let mut out = Vec::new();
        graph.friends_of(3, &mut out);
        assert!(out.is_empty());
        graph.unfriend(2, 1);
        assert!(!graph.are_friends(1, 2));
        assert!(graph.friends(2).is_empty());
        assert!(graph.shares_location(1));
        graph.set_sharing(1, false);
        assert!(!graph.shares_location(1));
    }
}
