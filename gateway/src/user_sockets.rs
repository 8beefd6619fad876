//! How many sockets each user holds on this gateway, bounded (`NEARBY_MAX_SOCKETS_PER_USER`):
//! one account cannot take the gateway's connections (or a friend's deliveries, written to
//! each of its sockets) for itself. A slot is taken at the upgrade and given back when the
//! socket's session ends, whatever ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nearby_common::UserId;

/// Open sockets per user.
#[derive(Debug, Default)]
pub struct UserSockets {
    // Taken at every upgrade and every session end, never across an await.
    open: Mutex<HashMap<UserId, u32>>,
}

impl UserSockets {
    /// A slot for one more socket of `user`, unless `user` holds `max` already.
    pub fn try_take(self: &Arc<Self>, user: UserId, max: u32) -> Option<SocketSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(user).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SocketSlot {
            sockets: self.clone(),
            user,
        })
    }

    /// Sockets `user` holds.
    pub fn of(&self, user: UserId) -> u32 {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&user).copied().unwrap_or(0)
    }
}

/// One socket's place in its user's count; given back on drop.
#[derive(Debug)]
pub struct SocketSlot {
    sockets: Arc<UserSockets>,
    user: UserId,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.sockets.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_at_most_max_slots_and_each_comes_back_on_drop() {
        let sockets = Arc::new(UserSockets::default());
        let mut held: Vec<_> = (0..3)
            .map(|_| sockets.try_take(7, 3).expect("a slot"))
            .collect();
        assert!(sockets.try_take(7, 3).is_none(), "a fourth");
        assert!(
            sockets.try_take(8, 3).is_some(),
            "another user is not counted with 7"
        );
        held.pop();
        assert_eq!(sockets.of(7), 2);
        let again = sockets.try_take(7, 3).expect("the freed slot");
        drop(again);
        assert_eq!(sockets.of(8), 0, "8's slot was dropped at once");
        drop(held);
        assert_eq!(sockets.of(7), 0);
    }
}
