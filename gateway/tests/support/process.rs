//! The gateway tests' system of processes: where the workspace's binaries are, and a fresh
//! system (names, topics) whose stages are started as processes ([`nearby_loadgen::process`]).

#![allow(dead_code)] // each test file uses its own share of these

use std::path::PathBuf;
use std::time::Duration;

pub use nearby_loadgen::process::{Process, free_addr};

/// One of the workspace's binaries: the gateway's own (cargo names it for this crate's tests),
/// or a sibling in the same target directory, which `cargo test --workspace` (scripts/test.sh)
/// builds with every other target.
pub fn binary(name: &str) -> PathBuf {
    let gateway = PathBuf::from(env!("CARGO_BIN_EXE_nearby-gateway"));
    let path = gateway.with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// How long a stage may take to be ready (a gateway creates tables; fanout rebuilds its table).
pub const READY: Duration = Duration::from_secs(60);

/// A system of processes sharing a topic prefix, a keyspace and consumer groups, all fresh.
pub struct System {
    pub prefix: String,
    pub keyspace: String,
    pub fanout_group: String,
    pub sink_group: String,
}

impl System {
    /// Fresh names, and the location and friendship topics made.
    pub async fn new() -> Self {
        let system = Self {
            prefix: super::unique("test."),
            keyspace: super::unique("test_gw_"),
            fanout_group: super::unique("test-fanout-"),
            sink_group: super::unique("test-sink-"),
        };
        super::create_topics(&super::brokers(), &system.prefix).await;
        system
    }

    fn common(&self) -> Vec<String> {
        vec![
            format!("--topic-prefix={}", self.prefix),
            format!("--cql-keyspace={}", self.keyspace),
        ]
    }

    /// A gateway `id` with `extra` settings, once ready, and its client address.
    pub async fn gateway(&self, id: &str, extra: &[String]) -> (Process, std::net::SocketAddr) {
        let addr = free_addr();
        let mut args = self.common();
        args.extend([
            format!("--gateway-id={id}"),
            format!("--jwt-secret={}", super::SECRET),
            format!("--listen={addr}"),
        ]);
        args.extend_from_slice(extra);
        let mut p = Process::spawn(&binary("nearby-gateway"), &args, id);
        p.ready(READY).await;
        (p, addr)
    }

    /// A fanout instance in the system's group, once ready (table rebuilt, group joined).
    pub async fn fanout(&self) -> Process {
        let mut args = self.common();
        args.extend([
            format!("--group-id={}", self.fanout_group),
            "--sweep-interval=200ms".to_owned(),
        ]);
        let mut p = Process::spawn(&binary("nearby-fanout"), &args, "fanout");
        p.ready(READY).await;
        p
    }

    /// A history sink in the system's group, once ready (partitions assigned).
    pub async fn sink(&self) -> Process {
        let mut args = self.common();
        args.push(format!("--group-id={}", self.sink_group));
        let mut p = Process::spawn(&binary("nearby-history-sink"), &args, "history-sink");
        p.ready(READY).await;
        p
    }
}
