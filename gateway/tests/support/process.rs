//! The stages' binaries as real processes, for tests of what only a process shows: signals,
//! exit codes, a restart. Each process gets free ports, logs to a file in the temp dir (named in
//! every failure), and is killed if the test ends while it still runs.

#![allow(dead_code)] // each test file uses its own share of these

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

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

/// A free local address: bound, read and released (another process could take it in between,
/// which would make the stage fail to start and the test say so).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// A running stage.
pub struct Process {
    child: Child,
    /// Its admin port (`/healthz`, `/readyz`, `/metrics`).
    pub admin: std::net::SocketAddr,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Process {
    /// Starts `binary` with `args` and `--admin-listen` on a free port; `name` names its log.
    pub fn spawn(binary: &std::path::Path, args: &[String], name: &str) -> Self {
        let admin = free_addr();
        let log = std::env::temp_dir().join(format!("{name}-{}.log", &uuid()[..8]));
        let child = Command::new(binary)
            .args(args)
            .arg(format!("--admin-listen={admin}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the stage starts");
        Self { child, admin, log }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            // The admin port opens once the process has bound it: until then, refused.
            if tokio::net::TcpStream::connect(self.admin).await.is_ok()
                && super::http(self.admin, "GET", "/readyz", None, None)
                    .await
                    .0
                    == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!(
                    "{} exited ({status}); log: {}",
                    self.pid(),
                    self.log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not ready in {within:?}; log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// The exit status, within `within`.
    pub async fn exited_within(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {within:?} after the signal; log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then asserts a clean exit (0) within `within`.
    pub async fn terminate(mut self, within: Duration) {
        self.signal("TERM");
        let status = self.exited_within(within).await;
        assert!(
            status.success(),
            "exit status {status}; log: {}",
            self.log.display()
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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
