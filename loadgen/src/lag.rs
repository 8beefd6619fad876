//! Samples, every few seconds during a run, how far a consumer group (the history sink's by
//! default) is behind the location topic — the sum over partitions of high watermark minus
//! committed offset — and the fanout's and the sink's `/readyz` counters.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

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

/// How far `group` is behind `topic` now: Σ over partitions of high watermark − committed
/// offset (`None` if Kafka did not answer).
pub async fn group_lag(brokers: &str, group: &str, topic: &str) -> Option<i64> {
    // rdkafka's offset and watermark calls block: off the async threads.
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        nearby_common::kafka::group_lag(&brokers, &group, &topic)
            .ok()
            .map(|parts| parts.iter().map(|p| p.lag).sum())
    })
    .await
    .ok()
    .flatten()
}

/// One sample now.
pub async fn sample(target: &LagTarget, started: Instant) -> LagSample {
    let lag = group_lag(&target.brokers, &target.group, &target.topic).await;
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
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => samples.push(sample(&target, started).await),
            _ = stop.changed() => break,
        }
    }
    samples.push(sample(&target, started).await);
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
