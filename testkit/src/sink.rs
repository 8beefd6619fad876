//! The history sink in tests: [`TestSink`], the real stage in-process on its own prefix,
//! keyspace and group, its admin port on loopback port 0; [`SinkNames`], fresh names for one.

use nearby_history_sink::HistorySink;

use crate::names::unique;
use crate::stack::brokers;
use crate::stage::{TestStage, args};

/// A running history sink: its counters (rows written, records skipped, partitions held) and
/// its admin port; [`Shutdown::stop`](nearby_common::shutdown::Shutdown::stop) lets it finish
/// its writes and commit.
pub type TestSink = TestStage<HistorySink>;

impl TestSink {
    /// Starts a sink reading `<prefix>.location-updates` in `group`, writing to `keyspace`, with
    /// `extra` command-line settings, and returns once `/readyz` answers (its partitions
    /// assigned).
    pub async fn start(prefix: &str, keyspace: &str, group: &str, extra: &[&str]) -> Self {
        Self::spawn(prefix, keyspace, group, extra)
            .await
            .ready()
            .await
    }

    /// Like [`start`](Self::start), but returns as soon as it runs, for tests that watch it
    /// become ready.
    pub async fn spawn(prefix: &str, keyspace: &str, group: &str, extra: &[&str]) -> Self {
        let own = [format!("--group-id={group}")];
        Self::spawn_with(args("nearby-history-sink", prefix, keyspace, &own, extra)).await
    }
}

/// Fresh names for a test of the sink: the stack's brokers, a topic prefix, a keyspace and a
/// consumer group of its own.
#[derive(Debug)]
pub struct SinkNames {
    /// The Kafka bootstrap servers.
    pub brokers: String,
    /// The topic prefix.
    pub prefix: String,
    /// The CQL keyspace.
    pub keyspace: String,
    /// The sink's consumer group.
    pub group: String,
}

impl SinkNames {
    /// Fresh names (no topic made).
    pub fn fresh() -> Self {
        Self {
            brokers: brokers(),
            prefix: unique("test."),
            keyspace: unique("test_hist_"),
            group: unique("test-sink-"),
        }
    }

    /// The location topic the sink reads.
    pub fn topic(&self) -> String {
        format!("{}.location-updates", self.prefix)
    }

    /// A sink on these names, returned as soon as it runs ([`TestSink::spawn`]).
    pub async fn spawn(&self) -> TestSink {
        TestSink::spawn(&self.prefix, &self.keyspace, &self.group, &[]).await
    }
}
