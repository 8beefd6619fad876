//! `ActiveFriends`: for each user in the table with a position, the slots of their friends who
//! have one too, so an update touches a user's ~40 active friends rather than all ~400.
//!
//! The links are made once, when a user gets a position (their friend list is read then, not on
//! every update), in both directions: the new user gets the friends already present, and each
//! of those friends gets the new user. They are undone when the position is swept. A link says
//! nothing about time: a friend whose position has aged past the TTL but was not swept yet stays
//! linked, and the fan-out loop checks the time, which it reads anyway.

use crate::latest_locations::Slot;

/// Per slot, the slots of linked friends (a pair is linked in both lists, or in neither).
#[derive(Debug, Default)]
pub(crate) struct ActiveFriends {
    lists: Vec<Vec<Slot>>,
}

impl ActiveFriends {
    /// Makes room for slots up to `slot_count` (the table's number of slots).
    pub(crate) fn grow_to(&mut self, slot_count: usize) {
        if self.lists.len() < slot_count {
            self.lists.resize_with(slot_count, Vec::new);
        }
    }

    /// The friends linked with `slot`.
    pub(crate) fn of(&self, slot: Slot) -> &[Slot] {
        &self.lists[slot as usize]
    }

    /// Links two friends, each in the other's list.
    pub(crate) fn link(&mut self, a: Slot, b: Slot) {
        debug_assert_ne!(a, b);
        debug_assert!(!self.lists[a as usize].contains(&b), "linked twice");
        self.lists[a as usize].push(b);
        self.lists[b as usize].push(a);
    }

    /// Undoes the link of `a` and `b`, if any.
    pub(crate) fn unlink(&mut self, a: Slot, b: Slot) {
        for (one, other) in [(a, b), (b, a)] {
            let list = &mut self.lists[one as usize];
            if let Some(at) = list.iter().position(|&s| s == other) {
                list.swap_remove(at);
            }
        }
    }

    /// Undoes every link of `slot` (on both sides) and frees its list.
    pub(crate) fn unlink_all(&mut self, slot: Slot) {
        let mine = std::mem::take(&mut self.lists[slot as usize]);
        for friend in mine {
            let theirs = &mut self.lists[friend as usize];
            // Lists are short (the active friends), so a scan is cheaper than any index.
            if let Some(at) = theirs.iter().position(|&s| s == slot) {
                theirs.swap_remove(at);
            }
            // Give memory back when a list has shrunk well below what it holds.
            if theirs.capacity() > 16 && theirs.len() * 4 < theirs.capacity() {
                theirs.shrink_to(theirs.len() * 2);
            }
        }
    }

    /// Bytes allocated: one list header per slot and the links (each pair counts twice).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.lists.capacity() * size_of::<Vec<Slot>>()
            + self
                .lists
                .iter()
                .map(|list| list.capacity() * size_of::<Slot>())
                .sum::<usize>()
    }

    /// How many links there are, each pair counted once.
    pub(crate) fn pair_count(&self) -> usize {
        self.lists.iter().map(Vec::len).sum::<usize>() / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_both_ways_and_unlinks_both_ways() {
        let mut friends = ActiveFriends::default();
        friends.grow_to(4);
        friends.link(0, 1);
        friends.link(0, 2);
        friends.link(3, 2);
        assert_eq!(friends.of(0), &[1, 2]);
        assert_eq!(friends.of(2), &[0, 3]);
        assert_eq!(friends.pair_count(), 3);

        friends.unlink_all(0);
        assert!(friends.of(0).is_empty());
        assert!(friends.of(1).is_empty());
        assert_eq!(friends.of(2), &[3]);
        assert_eq!(friends.pair_count(), 1);
    }
}
