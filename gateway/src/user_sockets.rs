//! How many sockets each user holds on this gateway, bounded (`NEARBY_MAX_SOCKETS_PER_USER`):
//! one account cannot take the gateway's connections (or a friend's deliveries, written to
//! each of its sockets) for itself. A slot is taken at the upgrade and given back when the
//! socket's session ends, whatever ends it.
//!
//! It also says when the user has left this gateway. Fanout routes a user's deliveries to the
//! gateway of their latest `Connected` record and stops at the `Disconnected` of that same
//! session; a user with two sockets here (a phone and a browser) who closes one still has the
//! other. So a session that ends records `Disconnected` only when it was the user's last one
//! here, and names the latest session announced ([`UserSockets::leaving`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nearby_common::UserId;

/// Open sockets per user.
#[derive(Debug, Default)]
pub struct UserSockets {
    // Taken at every upgrade and every session end, never across an await.
    open: Mutex<HashMap<UserId, u32>>,
    // Sessions whose `Connected` was recorded and that have not ended, per user, and the
    // latest of them; one lock, so two sessions ending at once cannot both think the other
    // is still there.
    announced: Mutex<HashMap<UserId, (u32, String)>>,
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

    /// Records that `session`'s `Connected` is on the log: it is `user`'s latest here.
    pub fn connected(&self, user: UserId, session: &str) {
        let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        let entry = announced.entry(user).or_insert((0, String::new()));
        entry.0 += 1;
        session.clone_into(&mut entry.1);
    }

    /// A session of `user` whose `Connected` was recorded ends: when it was their last here,
    /// the session the `Disconnected` must name (the latest announced, which fanout holds).
    pub fn leaving(&self, user: UserId) -> Option<String> {
        let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        let entry = announced.get_mut(&user)?;
        entry.0 -= 1;
        if entry.0 > 0 {
            return None;
        }
        announced.remove(&user).map(|(_, latest)| latest)
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

    #[test]
    fn only_the_last_session_to_leave_names_the_latest_one() {
        let sockets = UserSockets::default();
        sockets.connected(7, "older");
        sockets.connected(7, "newer");
        assert_eq!(sockets.leaving(7), None, "the older one is still open");
        assert_eq!(sockets.leaving(7).as_deref(), Some("newer"));
        assert_eq!(sockets.leaving(7), None, "nothing announced any more");
    }
}
