//! A client socket's write side, shared by everyone who writes to it (the delivery reader, the
//! session's replies, the WebSocket library's pongs and close): a frame goes straight to the
//! kernel when nothing is waiting before it, and is queued only when the socket would block.
//! The queue is bounded and latest-wins, as location data goes stale: a newer frame about a
//! friend replaces the older one still waiting, and when the queue is full the oldest frame is
//! dropped (and counted) rather than making the writer wait. The session task drains the queue
//! when the socket becomes writable again ([`SocketWriter::flush`]), so the delivery reader
//! never blocks on a slow phone and wakes no task while the socket keeps up.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use nearby_common::UserId;
use nearby_common::metrics::Counter;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

/// A frame ready for the socket and, for a friend's position, the friend it is about (frames
/// about the same friend replace each other while queued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The friend the frame is about, if it is about one.
    pub friend: Option<UserId>,
    /// The whole WebSocket frame: header and payload.
    pub bytes: Bytes,
}

impl Frame {
    /// A frame not about a friend (replies, control frames): never merged.
    pub fn other(bytes: Bytes) -> Self {
        Self {
            friend: None,
            bytes,
        }
    }
}

/// The write side of one client socket.
#[derive(Debug)]
pub struct SocketWriter {
    io: OwnedWriteHalf,
    // Every write happens under this lock, so frames from the delivery reader and from the
    // session never interleave; it is held for a non-blocking write at most, never across an
    // await.
    state: Mutex<State>,
    /// Wakes the session to flush once something is queued.
    queued: Notify,
    capacity: usize,
    dropped: AtomicU64,
    /// The gateway's count of dropped frames, all connections.
    dropped_total: Counter,
}

#[derive(Debug, Default)]
struct State {
    /// A frame the kernel took part of: the rest goes first, whatever else is queued.
    partial: Option<Bytes>,
    frames: VecDeque<Frame>,
    /// Frames queue instead of being written (the session is making the first page, which
    /// must go out before them).
    held: bool,
    /// No new frame is taken (the close went out); what is queued is still written.
    sealed: bool,
    closed: bool,
}

impl State {
    fn is_idle(&self) -> bool {
        self.partial.is_none() && self.frames.is_empty()
    }
}

/// What [`SocketWriter::flush`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued is written.
    Done,
    /// The writer is closed or the socket broke.
    Closed,
    /// The socket took nothing for the whole stall limit.
    Stalled,
}

impl SocketWriter {
    /// The write side over `io`, queueing at most `capacity` frames while the socket is full;
    /// drops are also counted in `dropped_total`.
    pub fn new(io: OwnedWriteHalf, capacity: usize, dropped_total: Counter) -> Self {
        Self {
            io,
            state: Mutex::new(State::default()),
            queued: Notify::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            dropped_total,
        }
    }

    /// Sends one frame; see [`SocketWriter::send_all`].
    pub fn send(&self, frame: Frame) -> bool {
        self.send_all(std::slice::from_ref(&frame))
    }

    /// Sends `frames` in order: written at once, in one system call, if nothing is queued
    /// before them; the rest (all of them if the socket is full) queued for the session to
    /// flush. Returns false once the writer is closed.
    pub fn send_all(&self, frames: &[Frame]) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.closed || st.sealed {
            return false;
        }
        let mut rest = frames;
        if st.is_idle() && !st.held {
            match self.write_now(frames) {
                Ok((whole, part)) => {
                    if let Some(tail) = part {
                        st.partial = Some(tail);
                        rest = &frames[whole + 1..];
                    } else {
                        rest = &frames[whole..];
                    }
                }
                Err(_) => {
                    st.closed = true;
                    drop(st);
                    self.queued.notify_one();
                    return false;
                }
            }
            if st.is_idle() && rest.is_empty() {
                return true;
            }
        }
        for frame in rest {
            self.enqueue(&mut st, frame.clone());
        }
        drop(st);
        // notify_one stores a permit if the session is not waiting yet: no wake-up is lost.
        self.queued.notify_one();
        true
    }

    /// Writes what the socket takes now: how many frames went whole, and the unwritten tail of
    /// the frame after them if the kernel took part of it. A full socket is not an error.
    fn write_now(&self, frames: &[Frame]) -> io::Result<(usize, Option<Bytes>)> {
        let written = match frames {
            [] => return Ok((0, None)),
            [one] => self.io.try_write(&one.bytes),
            many => {
                let slices: Vec<IoSlice<'_>> =
                    many.iter().map(|f| IoSlice::new(&f.bytes)).collect();
                self.io.try_write_vectored(&slices)
            }
        };
        let mut n = match written {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        for (i, frame) in frames.iter().enumerate() {
            if n >= frame.bytes.len() {
                n -= frame.bytes.len();
            } else if n > 0 {
                return Ok((i, Some(frame.bytes.slice(n..))));
            } else {
                return Ok((i, None));
            }
        }
        Ok((frames.len(), None))
    }

    /// Queues a frame behind what waits: it replaces a waiting frame about the same friend (in
    /// its place, so frames about different friends keep their order); when full, the oldest
    /// frame goes.
    fn enqueue(&self, st: &mut State, frame: Frame) {
        if let Some(friend) = frame.friend
            && let Some(slot) = st.frames.iter_mut().find(|f| f.friend == Some(friend))
        {
            *slot = frame;
            return;
        }
        if st.frames.len() >= self.capacity {
            st.frames.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.inc();
        }
        st.frames.push_back(frame);
    }

    /// Resolves once something is queued (or the writer closed).
    pub async fn wanted(&self) {
        self.queued.notified().await;
    }

    /// Writes what is queued as the socket takes it, waiting for it to become writable, but
    /// no longer than `stall` at a time: a socket that takes no byte for that long (a client
    /// that reads nothing never makes room) is given up on. A client that reads slowly but
    /// steadily is not.
    pub async fn flush(&self, stall: std::time::Duration) -> Flushed {
        loop {
            {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if st.closed {
                    return Flushed::Closed;
                }
                match self.write_queued(&mut st) {
                    Ok(true) => return Flushed::Done,
                    Ok(false) => {}
                    Err(_) => {
                        st.closed = true;
                        return Flushed::Closed;
                    }
                }
            }
            match tokio::time::timeout(stall, self.io.writable()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Flushed::Closed,
                Err(_) => return Flushed::Stalled,
            }
        }
    }

    /// From now on frames queue rather than go out, until [`SocketWriter::release_with`]: the
    /// first page is the snapshot the deliveries after it update, so the deliveries that come
    /// while it is being made (those its own report caused, say) wait behind it.
    pub fn hold(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).held = true;
    }

    /// Ends a [`SocketWriter::hold`]: `first` goes out ahead of every frame queued during it
    /// (after the rest of a frame the kernel took part of), then the session is woken to
    /// write those. False once the writer is closed.
    pub fn release_with(&self, first: Option<Frame>) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.held = false;
        if st.closed {
            return false;
        }
        if let Some(frame) = first {
            if st.sealed {
                return false;
            }
            st.frames.push_front(frame);
        }
        let waiting = !st.is_idle();
        drop(st);
        if waiting {
            self.queued.notify_one();
        }
        true
    }

    /// Writes the partial frame and then the queued ones until the socket is full; true when
    /// nothing is left (or nothing may be written yet: held).
    fn write_queued(&self, st: &mut State) -> io::Result<bool> {
        if st.held {
            return Ok(true);
        }
        if let Some(tail) = st.partial.take() {
            let (whole, part) = self.write_now(&[Frame::other(tail.clone())])?;
            if whole == 0 {
                st.partial = Some(part.unwrap_or(tail));
                return Ok(false);
            }
        }
        while !st.frames.is_empty() {
            let batch: Vec<Frame> = st.frames.iter().take(64).cloned().collect();
            let (whole, part) = self.write_now(&batch)?;
            st.frames.drain(..whole);
            if let Some(tail) = part {
                st.frames.pop_front();
                st.partial = Some(tail);
                return Ok(false);
            }
            if whole < batch.len() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Stops taking frames but keeps writing what is queued: nothing may follow a close frame.
    pub fn seal(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).sealed = true;
    }

    /// Stops accepting frames and forgets what is queued (the connection is going away).
    pub fn close(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.closed = true;
        st.partial = None;
        st.frames.clear();
        drop(st);
        self.queued.notify_one();
    }

    /// Frames dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Frames waiting now.
    pub fn len(&self) -> usize {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.frames.len() + usize::from(st.partial.is_some())
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair on loopback: the writer over one end (its send buffer made small, so
    /// it fills), the other end to read.
    async fn pair(capacity: usize) -> (SocketWriter, TcpStream, Counter) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_send_buffer_size(4096).expect("sndbuf");
        let ours = socket
            .connect(listener.local_addr().expect("addr"))
            .await
            .expect("connects");
        let (theirs, _) = listener.accept().await.expect("accepts");
        let (_rd, wr) = ours.into_split();
        let total = Counter::default();
        (
            SocketWriter::new(wr, capacity, total.clone()),
            theirs,
            total,
        )
    }

    fn about(friend: UserId, fill: u8, len: usize) -> Frame {
        Frame {
            friend: Some(friend),
            bytes: Bytes::from(vec![fill; len]),
        }
    }

    async fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        client.read_exact(&mut buf).await.expect("reads");
        buf
    }

    #[tokio::test]
    async fn frames_go_straight_out_while_the_socket_keeps_up() {
        let (w, mut client, _) = pair(4).await;
        assert!(w.send(about(1, b'a', 10)));
        assert!(w.send_all(&[about(2, b'b', 5), Frame::other(Bytes::from_static(b"cc"))]));
        assert!(w.is_empty(), "nothing queued");
        assert_eq!(read_exactly(&mut client, 17).await, b"aaaaaaaaaabbbbbcc");
    }

    #[tokio::test]
    async fn a_full_socket_queues_latest_wins_and_the_flush_sends_it_in_order() {
        let (w, mut client, _) = pair(8).await;
        // Fill the socket until something is queued.
        let mut sent = 0usize;
        while w.is_empty() {
            assert!(w.send(Frame::other(Bytes::from(vec![b'x'; 65_536]))));
            sent += 65_536;
            assert!(sent < 64 << 20, "the socket never filled");
        }
        // Now everything queues: a newer frame about friend 1 replaces the older one in place.
        assert!(w.send(about(1, b'1', 3)));
        assert!(w.send(about(2, b'2', 3)));
        assert!(w.send(about(1, b'3', 3)));
        assert_eq!(w.dropped(), 0);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.expect("reads");
            all
        });
        assert_eq!(w.flush(Duration::from_secs(10)).await, Flushed::Done);
        assert!(w.is_empty());
        drop(w);
        let all = reader.await.expect("joins");
        assert_eq!(all.len(), sent + 6, "every byte, the replaced frame once");
        assert!(all[..sent].iter().all(|&b| b == b'x'));
        assert_eq!(&all[sent..], b"333222");
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_counts_it() {
        let (w, _client, total) = pair(3).await;
        let mut st = State::default();
        for (friend, fill) in [(1, b'1'), (2, b'2'), (1, b'3'), (4, b'4'), (5, b'5')] {
            w.enqueue(&mut st, about(friend, fill, 1));
        }
        let left: Vec<u8> = st.frames.iter().map(|f| f.bytes[0]).collect();
        assert_eq!(
            left, b"245",
            "[1,2] → [3,2] → [3,2,4] → the oldest (3) dropped for 5"
        );
        assert_eq!(w.dropped(), 1);
        assert_eq!(total.get(), 1);
        // Frames about no friend are never merged.
        w.enqueue(&mut st, Frame::other(Bytes::from_static(b"p")));
        w.enqueue(&mut st, Frame::other(Bytes::from_static(b"p")));
        assert_eq!(st.frames.len(), 3);
    }

    #[tokio::test]
    async fn while_held_frames_wait_and_the_released_one_goes_first() {
        let (w, mut client, _) = pair(8).await;
        w.hold();
        assert!(w.send(about(1, b'1', 2)));
        assert!(w.send(about(2, b'2', 2)));
        assert_eq!(w.len(), 2, "held, not written");
        assert_eq!(w.flush(Duration::from_secs(10)).await, Flushed::Done);
        assert_eq!(w.len(), 2, "a flush while held writes nothing");
        assert!(w.release_with(Some(Frame::other(Bytes::from_static(b"page")))));
        assert_eq!(w.flush(Duration::from_secs(10)).await, Flushed::Done);
        assert!(w.is_empty());
        assert_eq!(read_exactly(&mut client, 8).await, b"page1122");
        // Released, frames go straight out again.
        assert!(w.send(about(3, b'3', 1)));
        assert!(w.is_empty());
    }

    #[tokio::test]
    async fn closing_refuses_more_and_wakes_the_flusher() {
        let (w, _client, _) = pair(2).await;
        w.close();
        assert!(!w.send(about(1, b'a', 1)));
        assert_eq!(w.flush(Duration::from_secs(10)).await, Flushed::Closed);
    }
}
