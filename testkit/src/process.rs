//! The workspace's binaries as real processes, for tests that need what only a process shows:
//! signals, exit codes, a kill, a restart. [`binary`] finds a binary beside the running test;
//! a [`Process`] gets its admin port on a free address, logs to a file in the temp dir (named in
//! every failure) and is killed if it is dropped while it still runs; a [`System`] is a fresh
//! set of names whose stages are started as processes; [`admin`] runs `nearby-admin`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::gateway::READY;
use crate::names::{topic_prefix, unique};
use crate::stack::{brokers, redis_url};
use crate::tokens::{ADMIN_TOKEN, SECRET};

/// One of the workspace's binaries, from the target directory of the running test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`). `cargo test --workspace`
/// (scripts/test.sh) builds every binary before it runs a test; a test of one crate builds only
/// that crate's binaries, hence the message.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // `deps/` holds the test executables; the binaries are one level up.
    let dir = exe
        .parent()
        .and_then(|deps| {
            if deps.ends_with("deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .expect("the target directory");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A free local address: bound, read and released (another process could take it in between,
/// which would make the stage fail to start and the test say so).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// A running stage.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// Its admin port (`/healthz`, `/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Process {
    /// Starts `binary` with `args` and `--admin-listen` on a free port; `name` names its log.
    pub fn spawn(binary: &Path, args: &[String], name: &str) -> Self {
        let admin = free_addr();
        let log = std::env::temp_dir().join(format!("{name}-{:08x}.log", rand::random::<u32>()));
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
            if crate::client::get(self.admin, "/readyz").await.0 == 200 {
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

    /// Its process id.
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

    /// SIGKILL, and the wait for the process: no orderly stop at all.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// A system of processes sharing a topic prefix, a keyspace and consumer groups, all fresh.
#[derive(Debug)]
pub struct System {
    /// The topic prefix.
    pub prefix: String,
    /// The CQL keyspace.
    pub keyspace: String,
    /// Fanout's consumer group.
    pub fanout_group: String,
    /// The history sink's consumer group.
    pub sink_group: String,
}

impl System {
    /// Fresh names, and the location and friendship topics made (3 partitions each).
    pub async fn new() -> Self {
        let system = Self {
            prefix: topic_prefix(),
            keyspace: unique("test_gw_"),
            fanout_group: unique("test-fanout-"),
            sink_group: unique("test-sink-"),
        };
        crate::topics::create_topics(&system.prefix, 3).await;
        system
    }

    fn common(&self) -> Vec<String> {
        vec![
            format!("--topic-prefix={}", self.prefix),
            format!("--cql-keyspace={}", self.keyspace),
        ]
    }

    /// A gateway `id` with `extra` settings, once ready, and its client address.
    pub async fn gateway(&self, id: &str, extra: &[String]) -> (Process, SocketAddr) {
        let addr = free_addr();
        let mut args = self.common();
        args.extend([
            format!("--gateway-id={id}"),
            format!("--jwt-secret={SECRET}"),
            format!("--admin-token={ADMIN_TOKEN}"),
            format!("--listen={addr}"),
        ]);
        args.extend(crate::gateway::ONE_ADDRESS.iter().map(|a| (*a).to_owned()));
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

/// Runs `nearby-admin` with `args`, the stack's addresses and topic prefix `prefix`.
pub fn admin(prefix: &str, args: &[&str]) -> Output {
    Command::new(binary("nearby-admin"))
        .env("NEARBY_KAFKA_BROKERS", brokers())
        .env("NEARBY_REDIS_URL", redis_url())
        .env("NEARBY_TOPIC_PREFIX", prefix)
        .args(args)
        .output()
        .expect("nearby-admin runs")
}

/// The standard output of a `nearby-admin` run that must have succeeded.
pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "nearby-admin failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}
