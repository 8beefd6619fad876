//! The history sink in tests: [`TestSink`], the real stage in-process on its own prefix,
//! keyspace and group, its admin port on loopback port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use nearby_common::shutdown::Shutdown;
use nearby_common::stage::Listeners;
use nearby_history_sink::{HistorySink, SinkConfig, SinkStatus};
use tokio::task::JoinHandle;

use crate::client::wait_ready;
use crate::gateway::READY;

/// A running history sink.
#[derive(Debug)]
pub struct TestSink {
    /// Its counters (rows written, records skipped, partitions held).
    pub status: Arc<SinkStatus>,
    /// Its admin port (`/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// What stops it: [`Shutdown::stop`] lets it finish its writes and commit.
    pub shutdown: Shutdown,
    /// Its run, which ends once it has stopped.
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl TestSink {
    /// Starts a sink reading `<prefix>.location-updates` in `group`, writing to `keyspace`, with
    /// `extra` command-line settings, and returns once `/readyz` answers (its partitions
    /// assigned).
    pub async fn start(prefix: &str, keyspace: &str, group: &str, extra: &[&str]) -> Self {
        let sink = Self::spawn(prefix, keyspace, group, extra).await;
        wait_ready(sink.admin, "the history sink", READY).await;
        sink
    }

    /// Like [`start`](Self::start), but returns as soon as it runs, for tests that watch it
    /// become ready.
    pub async fn spawn(prefix: &str, keyspace: &str, group: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "nearby-history-sink".to_owned(),
            format!("--topic-prefix={prefix}"),
            format!("--cql-keyspace={keyspace}"),
            format!("--group-id={group}"),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let config = SinkConfig::parse_from(args);
        let listeners = Listeners::loopback(false).await.expect("bind");
        let admin = listeners.admin.local_addr().expect("addr");
        let sink = HistorySink::build(config).await.expect("sink builds");
        let status = sink.status.clone();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(sink.run(listeners, shutdown.clone()));
        Self {
            status,
            admin,
            shutdown,
            task,
        }
    }

    /// Stops it (it finishes its writes and commits) and waits for a clean end.
    pub async fn stop(self) {
        self.shutdown.stop();
        self.task
            .await
            .expect("joins")
            .expect("the sink ran cleanly");
    }
}
