//! The byte stream the WebSocket library sees for one session: reads from the socket's read
//! half, writes through the shared [`SocketWriter`], so what the library writes itself (pongs,
//! the close) takes its turn with the delivery reader's frames instead of racing them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;

use crate::writer::{Frame, SocketWriter};

/// The session's read half and the shared write side.
#[derive(Debug)]
pub struct Duplex {
    read: OwnedReadHalf,
    write: Arc<SocketWriter>,
}

impl Duplex {
    /// Joins a read half and the write side of the same socket.
    pub fn new(read: OwnedReadHalf, write: Arc<SocketWriter>) -> Self {
        Self { read, write }
    }
}

impl AsyncRead for Duplex {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Duplex {
    /// Takes every byte at once: the writer sends it or queues it (the library hands over
    /// whole frames, so a frame is never split between two writers' turns).
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.write.send(Frame::other(Bytes::copy_from_slice(buf))) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
    }

    /// Nothing to do: what the socket did not take is queued, and the session flushes it.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The write side closes when the session drops it.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
