//! Samples, every few seconds during a run, how far a consumer group (the history sink's by
//! default) is behind the location topic — the sum over partitions of high watermark minus
//! committed offset — and the fanout's and the sink's `/readyz` counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

/// How long one Kafka request of a sample may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);

/// One reading.
#[derive(Debug, Clone, Serialize)]
pub struct LagSample {
    /// Seconds since the measured run started.
    pub t_s: f64,
    /// Records of the topic not yet committed by the group (`None` if Kafka did not answer).
    pub lag: Option<i64>,
    /// The fanout's `/readyz` line (`events=... changes=... users=...`), if asked and answered.
    pub fanout: Option<String>,
    /// The fanout's `events` counter from that line.
    pub fanout_events: Option<u64>,
    /// The history sink's `/readyz` line, if asked and answered.
    pub sink: Option<String>,
}

/// Where to look.
#[derive(Debug, Clone)]
pub struct LagTarget {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The location topic.
    pub topic: String,
    /// The group whose committed offsets are read (never joined).
    pub group: String,
    /// The fanout's admin port, if any.
    pub fanout_admin: Option<SocketAddr>,
    /// The history sink's admin port, if any.
    pub sink_admin: Option<SocketAddr>,
}

/// A consumer that only reads committed offsets and watermarks. It carries the group's id but
/// never subscribes, so it does not join the group or move its offsets.
fn offsets_reader(target: &LagTarget) -> anyhow::Result<BaseConsumer> {
    let mut config = nearby_common::kafka::client_config(&target.brokers);
    config
        .set("group.id", &target.group)
        .set("enable.auto.commit", "false");
    Ok(config.create()?)
}

/// The group's lag on the topic: Σ (high − committed), a partition with no commit counted from
/// its low watermark.
fn lag_once(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<i64> {
    let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut asked = TopicPartitionList::new();
    for &p in &partitions {
        asked.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(asked, KAFKA_TIMEOUT)?;
    let mut lag = 0;
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, KAFKA_TIMEOUT)?;
        let at = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => low,
        };
        lag += (high - at).max(0);
    }
    Ok(lag)
}

async fn readyz(addr: Option<SocketAddr>) -> Option<String> {
    let (_, body) = crate::net::http(addr?, "GET", "/readyz", None, "")
        .await
        .ok()?;
    Some(body.trim().to_owned())
}

/// The number after `events=` in a fanout `/readyz` line.
pub fn fanout_events(line: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("events="))?
        .parse()
        .ok()
}

/// One sample now.
pub async fn sample(
    target: &LagTarget,
    consumer: &Arc<BaseConsumer>,
    started: Instant,
) -> LagSample {
    // rdkafka's offset and watermark calls block: off the async threads.
    let (c, topic) = (consumer.clone(), target.topic.clone());
    let lag = tokio::task::spawn_blocking(move || lag_once(&c, &topic).ok())
        .await
        .ok()
        .flatten();
    let (fanout, sink) = tokio::join!(readyz(target.fanout_admin), readyz(target.sink_admin));
    LagSample {
        t_s: started.elapsed().as_secs_f64(),
        lag,
        fanout_events: fanout.as_deref().and_then(fanout_events),
        fanout,
        sink,
    }
}

/// Samples every `every` until `stop` turns true, then once more; the samples in order.
pub async fn sample_until(
    target: LagTarget,
    every: Duration,
    started: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<LagSample> {
    let consumer = match offsets_reader(&target) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("loadgen: no consumer-lag readings: {e:#}");
            return Vec::new();
        }
    };
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => samples.push(sample(&target, &consumer, started).await),
            _ = stop.changed() => break,
        }
    }
    samples.push(sample(&target, &consumer, started).await);
    samples
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fanout_line_gives_its_events() {
        let line = "ready events=1234 changes=5 users=10 poison=0 graph_errors=0";
        assert_eq!(super::fanout_events(line), Some(1234));
        assert_eq!(super::fanout_events("waiting"), None);
    }
}
