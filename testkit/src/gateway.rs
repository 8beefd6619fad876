//! A real gateway in-process: [`TestGateway`] builds it from command-line settings on a fresh
//! topic prefix and keyspace (or given ones, to share them with other stages), serves it on
//! loopback port 0 (as a [`TestStage`]) and returns once `/readyz` answers.

use std::net::SocketAddr;
use std::time::Duration;

use nearby_common::shutdown::Shutdown;
use nearby_common::stage::Stage;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::client::{Client, http};
use crate::names::{topic_prefix, unique};
use crate::stage::{TestStage, args};
use crate::tokens::{ADMIN_TOKEN, SECRET, token};

/// Every test client comes from one loopback address, so the kit's gateways take new
/// connections from an address without the production budget (a test of that budget sets its
/// own, after these).
pub const ONE_ADDRESS: [&str; 2] = [
    "--connect-rate-burst=1000000",
    "--connect-rate-per-sec=1000000",
];

/// How long a stage may take to be ready (a gateway creates tables; fanout rebuilds its table).
pub const READY: Duration = Duration::from_secs(60);

/// A running gateway: `S` is `nearby_gateway::GatewayStage` (the kit depends on no stage's
/// crate), so a test names it once: `type TestGateway = nearby_testkit::TestGateway<GatewayStage>;`.
#[derive(Debug)]
pub struct TestGateway<S: Stage> {
    /// The gateway itself (its registry, metrics, drain).
    pub gw: S::Handle,
    /// Its client port (WebSocket and HTTP API).
    pub addr: SocketAddr,
    /// Its admin port (`/readyz`, `/metrics`, `/drain`).
    pub admin: SocketAddr,
    /// Its topic prefix.
    pub prefix: String,
    /// Its CQL keyspace.
    pub keyspace: String,
    /// What stops it: [`Shutdown::stop`] drains it, [`Shutdown::stop_now`] stops it at once.
    pub shutdown: Shutdown,
    /// Its run, which ends once it has stopped.
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl<S: Stage> TestGateway<S> {
    /// Starts a gateway `gw-a` with `extra` command-line settings on a fresh prefix (its
    /// location and friendship topics made, 3 partitions each) and keyspace.
    pub async fn start(extra: &[&str]) -> Self {
        let prefix = topic_prefix();
        crate::topics::create_topics(&prefix, 3).await;
        Self::start_on(&prefix, &unique("test_gw_"), "gw-a", extra).await
    }

    /// Starts a gateway `id` on the given prefix, whose topics exist, and keyspace.
    pub async fn start_on(prefix: &str, keyspace: &str, id: &str, extra: &[&str]) -> Self {
        let own = [
            format!("--gateway-id={id}"),
            format!("--jwt-secret={SECRET}"),
            format!("--admin-token={ADMIN_TOKEN}"),
            ONE_ADDRESS[0].to_owned(),
            ONE_ADDRESS[1].to_owned(),
        ];
        let args = args("nearby-gateway", prefix, keyspace, &own, extra);
        let TestStage {
            status: gw,
            client,
            admin,
            shutdown,
            task,
        } = TestStage::<S>::spawn_with(args).await.ready().await;
        Self {
            gw,
            addr: client.expect("a client port"),
            admin,
            prefix: prefix.to_owned(),
            keyspace: keyspace.to_owned(),
            shutdown,
            task,
        }
    }

    /// Opens a socket for `user`.
    pub async fn connect(&self, user: i64) -> Client {
        Client::connect(self.addr, &token(user)).await
    }

    /// An HTTP call on the client port as `user`.
    pub async fn call(
        &self,
        user: i64,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        http(self.addr, method, path, Some(&token(user)), body).await
    }

    /// Stops the gateway at once (no drain) and waits for it.
    pub async fn stop(self) {
        self.shutdown.stop_now();
        self.task
            .await
            .expect("joins")
            .expect("gateway ran cleanly");
    }
}
