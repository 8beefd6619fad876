//! The stages' binaries as real processes, for tests and tools that need what only a process
//! shows: signals, exit codes, a kill, a restart. Each process gets its admin port on a free
//! address, logs to a file in the temp dir (named in every failure), and is killed if it is
//! dropped while it still runs.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// A free local address: bound, read and released (another process could take it in between,
/// which would make the stage fail to start and the test say so).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// A running stage.
#[derive(Debug)]
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
            if crate::net::http(self.admin, "GET", "/readyz", None, "")
                .await
                .is_ok_and(|(status, _)| status == 200)
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
