//! The connections this gateway holds, by user: where the delivery consumer finds the queues to
//! push to. A user may hold several connections (a phone and a browser); each gets every frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use nearby_common::UserId;

use crate::outbox::Outbox;
use crate::protocol::ServerFrame;

/// One open socket.
#[derive(Debug)]
pub struct Connection {
    /// The user it belongs to.
    pub user: UserId,
    /// Unique per connection; travels in the Connected/Disconnected records.
    pub session_id: String,
    /// Its outbound queue.
    pub outbox: Outbox,
}

/// Open connections by user.
#[derive(Debug, Default)]
pub struct Registry {
    // Reads (every delivery) far outnumber writes (connect, disconnect): a read-write lock, held
    // only for map edits and lookups, never across an await.
    by_user: RwLock<HashMap<UserId, Vec<Arc<Connection>>>>,
    count: AtomicUsize,
}

impl Registry {
    /// Adds a connection.
    pub fn insert(&self, conn: Arc<Connection>) {
        let mut map = self.by_user.write().unwrap_or_else(|p| p.into_inner());
        map.entry(conn.user).or_default().push(conn);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a connection (by session id).
    pub fn remove(&self, conn: &Connection) {
        let mut map = self.by_user.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&conn.user) {
            let before = list.len();
            list.retain(|c| c.session_id != conn.session_id);
            if list.len() < before {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
            if list.is_empty() {
                map.remove(&conn.user);
            }
        }
    }

    /// Queues `frame` on every connection of `user`; returns how many took it.
    pub fn push(&self, user: UserId, frame: &ServerFrame) -> usize {
        let map = self.by_user.read().unwrap_or_else(|p| p.into_inner());
        map.get(&user).map_or(0, |conns| {
            conns
                .iter()
                .filter(|c| c.outbox.push(frame.clone()))
                .count()
        })
    }

    /// Every open connection (a snapshot; for the drain, not for the delivery path).
    pub fn all(&self) -> Vec<Arc<Connection>> {
        let map = self.by_user.read().unwrap_or_else(|p| p.into_inner());
        map.values().flatten().cloned().collect()
    }

    /// Frames queued for sending over all connections (read at a scrape: it locks each queue
    /// in turn, briefly).
    pub fn queued_frames(&self) -> usize {
        let map = self.by_user.read().unwrap_or_else(|p| p.into_inner());
        map.values().flatten().map(|c| c.outbox.len()).sum()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
