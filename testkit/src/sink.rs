//! The history sink in tests: the command line of a sink of a test's own ([`args`]) and fresh
//! names for one ([`SinkNames`]). The running sink is a [`TestStage`](crate::TestStage) of
//! `nearby_history_sink::HistorySink`.

use crate::names::unique;
use crate::stack::brokers;

/// The command line of a sink reading `<prefix>.location-updates` in `group`, writing to
/// `keyspace`, with `extra` settings.
pub fn args(prefix: &str, keyspace: &str, group: &str, extra: &[&str]) -> Vec<String> {
    let own = [format!("--group-id={group}")];
    crate::stage::args("nearby-history-sink", prefix, keyspace, &own, extra)
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

    /// The command line of a sink on these names.
    pub fn args(&self) -> Vec<String> {
        args(&self.prefix, &self.keyspace, &self.group, &[])
    }
}
