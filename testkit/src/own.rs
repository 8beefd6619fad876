//! A service of a test's own, for fault tests: Kafka, Cassandra or Redis started by
//! `stack/stack.sh up <service>` in a state directory of the test's own, on free ports, so the
//! test can kill it (SIGKILL, no orderly stop) and start it again on the same data without
//! touching the shared stack other tests run against. Dropped, it is stopped and its directory
//! deleted. Redis's template keeps nothing on disk, so a Redis started again is empty.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::names::unique;

/// A service the stack script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// A single KRaft broker (and controller).
    Kafka,
    /// A single Cassandra node (heap 512M: a test's keyspaces are few).
    Cassandra,
    /// A Redis without persistence.
    Redis,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::Cassandra => "cassandra",
            Self::Redis => "redis",
        }
    }
}

/// A running service of the test's own.
#[derive(Debug)]
pub struct OwnService {
    service: Service,
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// The address clients use (Kafka's bootstrap, CQL, Redis).
    pub addr: SocketAddr,
}

impl OwnService {
    /// Starts `service` and returns once it answers (the script's own readiness probe).
    pub async fn start(service: Service) -> Self {
        let dir = std::env::temp_dir().join(unique("nearby-own-"));
        let names = [
            "KAFKA_PORT",
            "KAFKA_CONTROLLER_PORT",
            "CQL_PORT",
            "CASSANDRA_STORAGE_PORT",
            "CASSANDRA_JMX_PORT",
            "REDIS_PORT",
        ];
        let ports: Vec<(&str, SocketAddr)> = names.into_iter().zip(free_fixed_ports(6)).collect();
        let mut env: Vec<(String, String)> = ports
            .iter()
            .map(|(name, a)| (format!("NEARBY_{name}"), a.port().to_string()))
            .collect();
        env.push(("NEARBY_STACK_DIR".into(), dir.display().to_string()));
        env.push(("NEARBY_CASSANDRA_HEAP".into(), "512M".into()));
        env.push(("NEARBY_CASSANDRA_YOUNG_GEN".into(), "128M".into()));
        let client_port = match service {
            Service::Kafka => "KAFKA_PORT",
            Service::Cassandra => "CQL_PORT",
            Service::Redis => "REDIS_PORT",
        };
        let addr = ports
            .iter()
            .find(|(name, _)| *name == client_port)
            .map(|(_, a)| *a)
            .expect("the client port");
        let own = Self {
            service,
            dir,
            env,
            addr,
        };
        own.up().await;
        own
    }

    /// Starts it again on the same data (after [`kill`](Self::kill)); returns once it answers.
    pub async fn up(&self) {
        let out = self.script(&["up", self.service.name()]).await;
        assert!(
            out.status.success(),
            "stack.sh up {} failed:\n{}{}",
            self.service.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILLs it (by the pid file the script wrote) and waits until the process is gone.
    pub async fn kill(&self) {
        let pid_file = self.dir.join(format!("run/{}.pid", self.service.name()));
        let pid = std::fs::read_to_string(&pid_file).expect("the service's pid file");
        let pid = pid.trim().to_owned();
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -KILL {pid}");
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // A killed child of no one of ours is reaped by init; its /proc entry goes with it.
        while proc_dir.exists() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::remove_file(pid_file).ok();
    }

    /// Runs the stack script with this service's environment.
    async fn script(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(stack_script()).args(args).envs(self.env.clone());
        cmd.output().await.expect("bash runs stack/stack.sh")
    }
}

impl Drop for OwnService {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(stack_script())
            .args(["down", self.service.name()])
            .envs(self.env.clone())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` distinct free loopback addresses whose ports are below the kernel's ephemeral range.
/// Why not any free port: the service is restarted on the same ports after being down for a
/// while, and a port from the ephemeral range can meanwhile become the local port of some
/// client's connection, which makes the restart fail to bind (seen in CI: Cassandra, 30 s down).
fn free_fixed_ports(n: usize) -> Vec<SocketAddr> {
    use rand::Rng;
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let low = ephemeral_low.saturating_sub(12_000).max(1_024);
    // Each listener is held until all are picked, so no port is picked twice.
    let mut held = Vec::with_capacity(n);
    for _ in 0..1_000 {
        if held.len() == n {
            break;
        }
        let port = rand::rng().random_range(low..ephemeral_low);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    assert_eq!(held.len(), n, "no {n} free ports in {low}..{ephemeral_low}");
    held.iter()
        .map(|l| l.local_addr().expect("bound"))
        .collect()
}

/// The workspace's `stack/stack.sh`.
fn stack_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stack/stack.sh")
}
