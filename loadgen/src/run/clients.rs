//! The client side of a run: one WebSocket per person, opened a bounded number at a time; then
//! per socket a reader task that times every `friend_location` and a writer task that sends the
//! reports the driver hands over; and [`Shared`], the send times and counters they all share.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::{MIN_REPORT_GAP, SessionArgs, bar};
use crate::net::{self, Ws};

/// Send times kept per person (enough for every report still in flight).
const SENT_KEPT: usize = 64;

/// One timed delivery: (second of the run it was received in, latency ms).
pub(crate) type Sample = (u32, f32);

/// What the driver hands a writer: where the person is now (lat, lon).
pub(crate) type Report = (f64, f64);

/// Counters shared by every socket's tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) reports: AtomicU64,
    pub(crate) send_failed: AtomicU64,
    pub(crate) friend_locations: AtomicU64,
    pub(crate) matched: AtomicU64,
    pub(crate) by_own_report: AtomicU64,
    pub(crate) friend_left: AtomicU64,
    pub(crate) nearby_pages: AtomicU64,
    pub(crate) error_frames: AtomicU64,
    pub(crate) closed: AtomicU64,
    /// Reports sent per second of the run.
    pub(crate) reports_per_s: Vec<AtomicU64>,
}

/// What every socket task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The first person's user id; person `i` is `base + i`.
    base: i64,
    /// When the measured run starts, epoch µs (set before the socket tasks start).
    pub(crate) t0_us: i64,
    /// Per person: (ts, send time in epoch µs) of the latest reports.
    sent: Vec<Mutex<VecDeque<(i64, i64)>>>,
    pub(crate) counters: Counters,
    /// `error` frames by code.
    pub(crate) errors: Mutex<BTreeMap<String, u64>>,
    /// When set (`ramp`), where every reader puts its samples, taken step by step; otherwise
    /// each reader keeps its own until the end.
    live: Option<Mutex<Vec<Sample>>>,
}

impl Shared {
    /// For `people` people with user ids from `base`, counting reports per second over
    /// `seconds` seconds (later ones count in the last); with `live`, the samples are
    /// gathered here as they come (see [`Shared::take_live`]).
    pub(crate) fn new(base: i64, people: usize, seconds: usize, live: bool) -> Self {
        Self {
            base,
            t0_us: 0,
            sent: (0..people).map(|_| Mutex::new(VecDeque::new())).collect(),
            counters: Counters {
                reports_per_s: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
                ..Counters::default()
            },
            errors: Mutex::default(),
            live: live.then(Mutex::default),
        }
    }

    /// The samples received since the last call (none unless made `live`).
    pub(crate) fn take_live(&self) -> Vec<Sample> {
        self.live.as_ref().map_or_else(Vec::new, |l| {
            std::mem::take(&mut *l.lock().expect("live lock"))
        })
    }

    /// The second of the run that `at_us` (epoch µs) falls in.
    fn second(&self, at_us: i64) -> usize {
        usize::try_from((at_us - self.t0_us).max(0) / 1_000_000).unwrap_or(0)
    }
}

/// The part of a server frame the load generator reads.
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    user_id: Option<&'a str>,
    updated_at: Option<i64>,
    #[serde(borrow)]
    code: Option<&'a str>,
}

/// Opens one socket per person (`tokens[i]` is person `i`'s), at most `--connect-concurrency`
/// handshakes at a time; `None` for a person whose socket did not open. Prints each distinct
/// error once, with how often it happened.
pub(crate) async fn connect_all(args: &SessionArgs, tokens: &[String]) -> Vec<Option<Ws>> {
    let n = tokens.len();
    let pb = bar(
        args.no_progress,
        n as u64,
        "connect {bar:40} {pos}/{len} {elapsed}",
    );
    let mut sockets: Vec<Option<Ws>> = (0..n).map(|_| None).collect();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    // Bounded: a burst of thousands of handshakes would overflow the listen backlog.
    let mut opens = futures::stream::iter(0..n)
        .map(|i| {
            let source = net::source_for(args.first_source, args.per_source, i);
            let token = &tokens[i];
            async move { (i, net::connect_from(source, args.gateway, token).await) }
        })
        .buffer_unordered(args.connect_concurrency.max(1));
    while let Some((i, result)) = opens.next().await {
        match result {
            Ok(ws) => sockets[i] = Some(ws),
            Err(e) => *errors.entry(format!("{e:#}")).or_default() += 1,
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    for (e, count) in &errors {
        eprintln!("loadgen: {count} × could not connect: {e}");
    }
    sockets
}

/// The reader and writer tasks of every open socket.
#[derive(Debug)]
pub(crate) struct SocketTasks {
    readers: Vec<JoinHandle<Vec<Sample>>>,
    writers: Vec<JoinHandle<()>>,
}

impl SocketTasks {
    /// Waits for every task (they end at the stop) and returns every reader's samples.
    pub(crate) async fn join(self) -> anyhow::Result<Vec<Sample>> {
        let mut samples = Vec::new();
        for r in self.readers {
            samples.extend(r.await.context("a reader panicked")?);
        }
        for w in self.writers {
            let _ = w.await;
        }
        Ok(samples)
    }
}

/// Starts a reader and a writer task per open socket, all stopping when `stop` turns true.
/// Returns, per person, the sender that hands their writer a report (`None`: no socket).
pub(crate) fn spawn(
    sockets: Vec<Option<Ws>>,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> (Vec<Option<mpsc::UnboundedSender<Report>>>, SocketTasks) {
    let open = sockets.iter().filter(|s| s.is_some()).count();
    let mut tasks = SocketTasks {
        readers: Vec::with_capacity(open),
        writers: Vec::with_capacity(open),
    };
    let mut report_tx = Vec::with_capacity(sockets.len());
    // One reader and one writer task per socket: reading never waits on writing, and a slow
    // socket holds up only itself.
    for (i, ws) in sockets.into_iter().enumerate() {
        let Some(ws) = ws else {
            report_tx.push(None);
            continue;
        };
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        report_tx.push(Some(tx));
        let reader = Reader {
            me: i,
            shared: shared.clone(),
            samples: Vec::new(),
        };
        tasks
            .readers
            .push(tokio::spawn(reader.read(stream, stop.clone())));
        let writer = Writer {
            sink,
            idx: i,
            shared: shared.clone(),
            last: None,
        };
        tasks
            .writers
            .push(tokio::spawn(writer.write(rx, stop.clone())));
    }
    (report_tx, tasks)
}

/// One socket's reading side: times `friend_location`s, counts the rest.
#[derive(Debug)]
struct Reader {
    /// The person whose socket this is.
    me: usize,
    shared: Arc<Shared>,
    /// What it has timed so far.
    samples: Vec<Sample>,
}

impl Reader {
    /// Reads `stream` until told to stop (or the socket closes) and returns the samples.
    async fn read(
        mut self,
        mut stream: SplitStream<Ws>,
        mut stop: watch::Receiver<bool>,
    ) -> Vec<Sample> {
        loop {
            // Unbiased: the stop comes only after the drain has given every delivery its time,
            // so whether a frame that lands with it is counted does not move the figures.
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = stop.changed() => break,
            };
            match msg {
                Some(Ok(Message::Text(text))) => {
                    // Stamped before parsing: the parse is the client's cost, not the system's.
                    let at = net::now_us();
                    self.on_frame(text.as_str(), at);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    // The answer to our own close at the end is not an early close.
                    if !*stop.borrow() {
                        self.shared.counters.closed.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
        self.samples
    }

    /// Counts one server frame received at `at` (epoch µs); times it if it is a
    /// `friend_location`, files it by code if it is an `error`.
    fn on_frame(&mut self, text: &str, at: i64) {
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
            return;
        };
        let c = &self.shared.counters;
        match frame.kind {
            "friend_location" => {
                c.friend_locations.fetch_add(1, Ordering::Relaxed);
                self.on_friend_location(&frame, at);
            }
            "friend_left" => {
                c.friend_left.fetch_add(1, Ordering::Relaxed);
            }
            "nearby" => {
                c.nearby_pages.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                c.error_frames.fetch_add(1, Ordering::Relaxed);
                let code = frame.code.unwrap_or("?").to_owned();
                *self
                    .shared
                    .errors
                    .lock()
                    .expect("errors lock")
                    .entry(code)
                    .or_default() += 1;
            }
            _ => {}
        }
    }

    /// Times a `friend_location` received at `at` against the report that caused it, if that
    /// report was sent in this run.
    fn on_friend_location(&mut self, frame: &Frame<'_>, at: i64) {
        let shared = &self.shared;
        let c = &shared.counters;
        let n = shared.sent.len() as i64;
        let idx = frame
            .user_id
            .and_then(|u| u.parse::<i64>().ok())
            .map(|id| id - shared.base)
            .filter(|i| (0..n).contains(i));
        let (Some(idx), Some(ts)) = (idx, frame.updated_at) else {
            return;
        };
        let Some(friend_sent_us) = shared.sent[usize::try_from(idx).unwrap_or(0)]
            .lock()
            .expect("sent lock")
            .iter()
            .find(|(t, _)| *t == ts)
            .map(|(_, us)| *us)
        else {
            return;
        };
        c.matched.fetch_add(1, Ordering::Relaxed);
        // The cause is the later of the friend's report and this socket's own last one: a
        // friend who comes into range because *this* person moved is shown with the friend's
        // older report, and timing that from the friend's send would count the friend's
        // reporting interval as latency.
        let own_us = shared.sent[self.me]
            .lock()
            .expect("sent lock")
            .back()
            .map_or(i64::MIN, |(_, us)| *us);
        let sent_us = if own_us > friend_sent_us && own_us <= at {
            c.by_own_report.fetch_add(1, Ordering::Relaxed);
            own_us
        } else {
            friend_sent_us
        };
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let ms = ((at - sent_us) as f64 / 1000.0) as f32;
        let second = u32::try_from(shared.second(at)).unwrap_or(u32::MAX);
        // One lock per delivery when live: readers run on every worker, and a step's figures
        // are needed while the ramp runs, not only when the readers end.
        match &shared.live {
            Some(live) => live.lock().expect("live lock").push((second, ms)),
            None => self.samples.push((second, ms)),
        }
    }
}

/// One socket's writing side: sends the reports the driver hands over.
#[derive(Debug)]
struct Writer {
    sink: SplitSink<Ws, Message>,
    /// The person whose socket this is.
    idx: usize,
    shared: Arc<Shared>,
    /// When the last report went out.
    last: Option<tokio::time::Instant>,
}

impl Writer {
    /// Writes the reports from `reports` until they end or it is told to stop, then waits for
    /// the stop (the end of the reading window) and closes the socket.
    async fn write(
        mut self,
        mut reports: mpsc::UnboundedReceiver<Report>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            // Unbiased: the driver ends the reports before the stop, so by the stop there is
            // nothing left to send.
            let (lat, lon) = tokio::select! {
                r = reports.recv() => match r {
                    Some(at) => at,
                    None => break,
                },
                _ = stop.changed() => break,
            };
            self.on_report(lat, lon).await;
        }
        // Wait for the end of the reading window before closing.
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.sink.close()).await;
    }

    /// Sends a report from (`lat`, `lon`), never within [`MIN_REPORT_GAP`] of the last one,
    /// recording its send time first so a delivery that beats the write is still matched.
    async fn on_report(&mut self, lat: f64, lon: f64) {
        let shared = &self.shared;
        let c = &shared.counters;
        if let Some(last) = self.last {
            tokio::time::sleep_until(last + MIN_REPORT_GAP).await;
        }
        self.last = Some(tokio::time::Instant::now());
        let send_us = net::now_us();
        let ts = send_us.div_euclid(1000);
        {
            let mut sent = shared.sent[self.idx].lock().expect("sent lock");
            if sent.len() >= SENT_KEPT {
                sent.pop_front();
            }
            sent.push_back((ts, send_us));
        }
        let frame = format!(r#"{{"type":"location","lat":{lat},"lon":{lon},"ts":{ts}}}"#);
        if self.sink.send(Message::text(frame)).await.is_ok() {
            c.reports.fetch_add(1, Ordering::Relaxed);
            let s = shared.second(send_us).min(c.reports_per_s.len() - 1);
            c.reports_per_s[s].fetch_add(1, Ordering::Relaxed);
        } else {
            c.send_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
