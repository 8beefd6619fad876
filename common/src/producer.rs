//! Kafka producers polled by a thread of our own that waits in whole seconds. rdkafka's
//! `ThreadedProducer` and `FutureProducer` poll every 100 ms, and each poll ends in a busy
//! loop: the time left is passed to librdkafka in whole milliseconds, rounded down, so the
//! last millisecond of every wait is spent spinning — about 1 % of a core per producer with
//! nothing to send (measured: the gateway's two idle producers' threads used 1.8 % of a core).
//! Waiting a second per poll makes that a tenth; delivery reports still wake the thread at
//! once, as they come.
//!
//! [`AckContext`] turns each record's delivery report into a future, as `FutureProducer` does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use tokio::sync::oneshot;

/// How long one poll waits for a delivery report (and how long the thread outlives the last
/// handle, at most).
const POLL: Duration = Duration::from_secs(1);

/// A producer and the thread that serves its delivery reports; cloning shares both. The thread
/// ends within a second of the last clone's drop.
pub struct Polled<C: ProducerContext + 'static> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: ProducerContext + 'static> {
    producer: Arc<BaseProducer<C>>,
    stop: Arc<AtomicBool>,
}

impl<C: ProducerContext + 'static> Drop for Inner<C> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl<C: ProducerContext + 'static> Clone for Polled<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: ProducerContext + 'static> std::fmt::Debug for Polled<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Polled").finish_non_exhaustive()
    }
}

impl<C: ProducerContext + 'static> Polled<C> {
    /// A producer made from `config` with `context`, and its polling thread (named `rdk:poll`,
    /// so it counts with the Kafka client's own threads).
    pub fn new(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<C>> = Arc::new(config.create_with_context(context)?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (producer, stop) = (producer.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    producer.poll(POLL);
                }
            }
        };
        std::thread::Builder::new()
            .name("rdk:poll".into())
            .spawn(thread)
            .map_err(|e| KafkaError::ClientCreation(format!("polling thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner { producer, stop }),
        })
    }

    /// The producer.
    pub fn producer(&self) -> &BaseProducer<C> {
        &self.inner.producer
    }

    /// Records handed to librdkafka and not yet acknowledged (queued or in flight).
    pub fn in_flight(&self) -> usize {
        usize::try_from(self.inner.producer.in_flight_count()).unwrap_or(0)
    }

    /// Waits up to `timeout` for every queued record to be delivered; blocks its thread.
    pub fn flush_blocking(&self, timeout: Duration) -> KafkaResult<()> {
        self.inner.producer.flush(timeout)
    }
}

/// Where an acknowledged record was written: (partition, offset).
pub type Ack = KafkaResult<(i32, i64)>;

/// A context that hands each record's delivery report to whoever awaits it.
#[derive(Debug, Clone, Copy, Default)]
pub struct AckContext;

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<oneshot::Sender<Ack>>;

    fn delivery(&self, result: &DeliveryResult<'_>, to: Self::DeliveryOpaque) {
        let ack = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // Nobody waiting any more (the caller gave up): nothing to tell.
        let _ = to.send(ack);
    }
}

/// A producer whose sends resolve with their acks.
pub type AckedProducer = Polled<AckContext>;

impl AckedProducer {
    /// A producer made from `config`.
    pub fn acked(config: &ClientConfig) -> KafkaResult<Self> {
        Self::new(config, AckContext)
    }

    /// Hands a record to librdkafka now (so records enqueue in the order of the calls) and
    /// returns what resolves with its ack; an error if it cannot be queued (`QueueFull`
    /// included: the caller decides whether to wait).
    pub fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> KafkaResult<impl Future<Output = Ack> + use<>> {
        let (tx, rx) = oneshot::channel();
        let record = BaseRecord::with_opaque_to(topic, Box::new(tx))
            .key(key)
            .payload(payload);
        self.producer().send(record).map_err(|(e, _)| e)?;
        // The producer dropped before the report: as FutureProducer says it, cancelled.
        Ok(async move { rx.await.unwrap_or(Err(KafkaError::Canceled)) })
    }
}
