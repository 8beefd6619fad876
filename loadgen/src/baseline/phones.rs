//! The baseline's phones: one loopback socket per person, whose far end (the server's) goes to
//! the servers' thread. A thread of their own (not counted) drains what the servers push and,
//! with `--intake`, writes each person's reports as masked WebSocket text frames, as a phone
//! would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// One tick's reports: (person, a client `location` frame, WebSocket-framed and masked).
pub type Reports = Vec<(u32, Vec<u8>)>;

/// Ticks of reports the publisher may be ahead of the phones' writes.
const REPORT_TICKS_QUEUED: usize = 100;

/// The phones of `--push`: their sockets, drained (and written, with `--intake`) by a thread.
pub struct Phones {
    stop: Arc<AtomicBool>,
    reader: std::thread::JoinHandle<()>,
    reports: Option<mpsc::Sender<Reports>>,
}

impl Phones {
    /// Opens one socket pair per person on loopback and starts the phones' thread; returns it
    /// and the servers' ends, in person order, Nagle off (as the gateway's). With `intake`, the
    /// phones also write the reports given to [`Phones::send`].
    pub fn open(people: usize, intake: bool) -> anyhow::Result<(Phones, Vec<std::net::TcpStream>)> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        // One connect, then its accept: the pairs match by construction (an accept queue
        // filled by many connects need not hand them back in order).
        let mut servers = Vec::with_capacity(people);
        let mut phones = Vec::with_capacity(people);
        for _ in 0..people {
            let server = std::net::TcpStream::connect(addr)
                .context("a phone socket (open files: `ulimit -n` ≥ 2 × --people)")?;
            server.set_nodelay(true)?;
            let (phone, _) = listener.accept()?;
            phone.set_nodelay(true)?;
            phone.set_nonblocking(true)?;
            servers.push(server);
            phones.push(phone);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(REPORT_TICKS_QUEUED);
        let reader = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(serve(phones, rx, &stop));
            }
        });
        let reports = intake.then_some(tx);
        Ok((
            Phones {
                stop,
                reader,
                reports,
            },
            servers,
        ))
    }

    /// Hands one tick's reports to the phones to write (waits while they are
    /// `REPORT_TICKS_QUEUED` ticks behind).
    pub async fn send(&self, reports: Reports) -> anyhow::Result<()> {
        let tx = self
            .reports
            .as_ref()
            .context("phones opened without intake")?;
        tx.send(reports)
            .await
            .map_err(|_| anyhow::anyhow!("the phones' thread ended"))
    }

    /// Stops the phones' thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        drop(self.reports);
        let _ = self.reader.join();
    }
}

/// The phones' thread: a reader per socket drains it; the write halves take the reports.
async fn serve(
    phones: Vec<std::net::TcpStream>,
    mut reports: mpsc::Receiver<Reports>,
    stop: &AtomicBool,
) {
    let mut writers = Vec::with_capacity(phones.len());
    let mut readers = Vec::with_capacity(phones.len());
    for phone in phones {
        let Ok(socket) = tokio::net::TcpStream::from_std(phone) else {
            return;
        };
        let (mut read, write) = socket.into_split();
        writers.push(write);
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while read.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        }));
    }
    // Without `--intake` the channel is closed from the start: the thread only drains, until
    // told to stop.
    let mut open = true;
    loop {
        tokio::select! {
            tick = reports.recv(), if open => {
                let Some(tick) = tick else {
                    open = false;
                    continue;
                };
                for (person, frame) in tick {
                    if let Some(w) = writers.get_mut(person as usize) {
                        let _ = w.write_all(&frame).await;
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if stop.load(Ordering::Acquire) {
                    break;
                }
            }
        }
    }
    for r in readers {
        r.abort();
    }
}

/// `buf` := a server-to-client WebSocket text frame (FIN, unmasked) carrying `text`.
pub fn ws_text_frame(buf: &mut Vec<u8>, text: &str) {
    buf.clear();
    buf.push(0x81);
    push_len(buf, text.len(), 0);
    buf.extend_from_slice(text.as_bytes());
}

/// A client-to-server WebSocket text frame (FIN, masked with a random key) carrying `text`.
pub fn ws_masked_text_frame(text: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(text.len() + 14);
    buf.push(0x81);
    push_len(&mut buf, text.len(), 0x80);
    let key: [u8; 4] = rand::rng().random();
    buf.extend_from_slice(&key);
    buf.extend(text.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
    buf
}

/// The payload length field, with `mask_bit` set in its first byte.
fn push_len(buf: &mut Vec<u8>, len: usize, mask_bit: u8) {
    if len < 126 {
        buf.push(mask_bit | len as u8);
    } else if len <= usize::from(u16::MAX) {
        buf.push(mask_bit | 126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(mask_bit | 127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
}
