//! The connections this gateway holds, by user: where the delivery reader finds the sockets to
//! write to. A user may hold several connections (a phone and a browser); each gets every frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use nearby_common::UserId;

use tokio::sync::Notify;

use crate::protocol::ServerFrame;
use crate::writer::{Frame, SocketWriter};

/// One open socket.
#[derive(Debug)]
pub struct Connection {
    /// The user it belongs to.
    pub user: UserId,
    /// Unique per connection; travels in the Connected/Disconnected records.
    pub session_id: String,
    /// Its write side.
    pub writer: Arc<SocketWriter>,
    /// Raised once the drain has sent this socket `reconnect`: its session starts the grace.
    pub told_to_reconnect: Notify,
    /// Which slice of the sockets it is pinged with (see `pinger.rs`): numbered in order of
    /// arrival, so the slices stay even.
    pub ping_slot: u32,
}

impl Connection {
    /// Sends a frame built one at a time (not the delivery path's); false once closed.
    pub fn send_frame(&self, frame: &ServerFrame) -> bool {
        self.writer.send(Frame::other(crate::wsframe::text(frame)))
    }
}

/// Open connections by user.
#[derive(Debug, Default)]
pub struct Registry {
    // Reads (every delivery) far outnumber writes (connect, disconnect): a read-write lock, held
    // only for map edits and lookups, never across an await.
    by_user: RwLock<HashMap<UserId, Vec<Arc<Connection>>>>,
    count: AtomicUsize,
    next_slot: AtomicU32,
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

    /// Sends `frames` (in order, in one write if the socket takes it) on every connection of
    /// `user`; returns how many took them.
    pub fn send(&self, user: UserId, frames: &[Frame]) -> usize {
        // The read lock is held across the writes: they never block (a full socket queues),
        // and connects and disconnects, the only writers of the map, are rare next to them.
        let map = self.by_user.read().unwrap_or_else(|p| p.into_inner());
        map.get(&user).map_or(0, |conns| {
            conns.iter().filter(|c| c.writer.send_all(frames)).count()
        })
    }

    /// The ping slot for a new connection.
    pub fn next_ping_slot(&self) -> u32 {
        self.next_slot.fetch_add(1, Ordering::Relaxed)
    }

    /// Calls `f` on every connection whose ping slot falls in `slice` of `slices`, under the
    /// read lock (as [`Registry::send`]: `f` must not block).
    pub fn for_each_in_slice(&self, slice: u32, slices: u32, mut f: impl FnMut(&Connection)) {
        let map = self.by_user.read().unwrap_or_else(|p| p.into_inner());
        for conn in map.values().flatten() {
            if conn.ping_slot % slices == slice {
                f(conn);
            }
        }
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
        map.values().flatten().map(|c| c.writer.len()).sum()
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
