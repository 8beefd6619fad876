//! A client's outbound queue: bounded and latest-wins. Location data goes stale, so a newer
//! frame about a friend replaces the older one still waiting, and when the queue is full the
//! oldest frame is dropped (and counted) rather than making the producer wait. The delivery
//! consumer therefore never blocks on a slow phone.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use nearby_common::metrics::Counter;
use tokio::sync::Notify;

use crate::protocol::ServerFrame;

/// The queue of one connection.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    ready: Notify,
    capacity: usize,
    dropped: AtomicU64,
    /// The gateway's count of dropped frames, all connections.
    dropped_total: Counter,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<ServerFrame>,
    closed: bool,
}

impl Outbox {
    /// An empty queue holding at most `capacity` frames; drops are also counted in
    /// `dropped_total`.
    pub fn new(capacity: usize, dropped_total: Counter) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            dropped_total,
        }
    }

    /// Queues a frame. A frame about a friend replaces one about the same friend still queued
    /// (in its place, so frames about different friends keep their relative order); when full,
    /// the oldest frame is dropped. Returns false once the connection closed.
    pub fn push(&self, frame: ServerFrame) -> bool {
        {
            // The lock is held only for this in-memory edit, never across an await.
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.closed {
                return false;
            }
            if let Some(friend) = frame.friend()
                && let Some(slot) = q.frames.iter_mut().find(|f| f.friend() == Some(friend))
            {
                *slot = frame;
                drop(q);
                self.ready.notify_one();
                return true;
            }
            if q.frames.len() >= self.capacity {
                q.frames.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped_total.inc();
            }
            q.frames.push_back(frame);
        }
        // notify_one stores a permit if the writer is not waiting yet, so no wake-up is lost.
        self.ready.notify_one();
        true
    }

    /// Takes every queued frame, waiting until there is at least one (or the box is closed,
    /// which yields an empty batch).
    pub async fn next_batch(&self) -> Vec<ServerFrame> {
        loop {
            {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if !q.frames.is_empty() || q.closed {
                    return q.frames.drain(..).collect();
                }
            }
            self.ready.notified().await;
        }
    }

    /// Stops accepting frames (the connection is going away).
    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_one();
    }

    /// Frames dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Frames waiting now.
    pub fn len(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .frames
            .len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FriendEntry;

    fn loc(friend: &str, lat: f64) -> ServerFrame {
        ServerFrame::FriendLocation(FriendEntry {
            user_id: friend.into(),
            name: friend.into(),
            lat,
            lon: 0.0,
            distance_m: 1.0,
            updated_at: 1,
        })
    }

    #[tokio::test]
    async fn newer_frame_about_a_friend_replaces_the_queued_one() {
        let out = Outbox::new(8, Counter::default());
        out.push(loc("1", 1.0));
        out.push(loc("2", 1.0));
        out.push(loc("1", 2.0));
        out.push(ServerFrame::FriendLeft {
            user_id: "2".into(),
            reason: "out_of_range",
        });
        let batch = out.next_batch().await;
        assert_eq!(
            batch,
            vec![
                loc("1", 2.0),
                ServerFrame::FriendLeft {
                    user_id: "2".into(),
                    reason: "out_of_range"
                }
            ]
        );
        assert_eq!(out.dropped(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_counts_it() {
        let total = Counter::default();
        let out = Outbox::new(2, total.clone());
        for f in ["1", "2", "3"] {
            out.push(loc(f, 0.0));
        }
        assert_eq!(out.next_batch().await, vec![loc("2", 0.0), loc("3", 0.0)]);
        assert_eq!(out.dropped(), 1);
        assert_eq!(total.get(), 1);
        // Control frames are never merged.
        out.push(ServerFrame::Pong { id: None });
        out.push(ServerFrame::Pong { id: None });
        assert_eq!(out.len(), 2);
    }

    #[tokio::test]
    async fn closing_wakes_the_writer_and_refuses_more() {
        let out = std::sync::Arc::new(Outbox::new(2, Counter::default()));
        let writer = tokio::spawn({
            let out = out.clone();
            async move { out.next_batch().await }
        });
        tokio::task::yield_now().await;
        out.close();
        assert!(writer.await.expect("joins").is_empty());
        assert!(!out.push(loc("1", 0.0)));
    }
}
