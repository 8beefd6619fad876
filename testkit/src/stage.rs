//! Any stage in-process, through its [`Stage`] trait: [`TestStage`] builds it from its command
//! line, serves it on loopback port 0, waits for it to be ready and stops it; [`args`] is the
//! command line the test kit's stages share; [`build_and_run`] is what a binary does, for tests
//! that start a stage before what it waits for exists. The kit knows stages only through the
//! trait (it depends on no stage's crate, so no crate's tests make a circle through it); a test
//! names the stage: `TestStage::<FanoutService>::start(fanout::args(..))`.
//! [`TestGateway`](crate::TestGateway) starts through one.

use std::net::SocketAddr;

use clap::Parser;
use nearby_common::shutdown::Shutdown;
use nearby_common::stage::{Listeners, Stage};
use tokio::task::JoinHandle;

use crate::client::wait_ready;
use crate::gateway::READY;

/// The command line of `binary` on topic prefix `prefix` and keyspace `keyspace`: the stage's
/// own `settings`, then the test's `extra` ones.
pub fn args(
    binary: &str,
    prefix: &str,
    keyspace: &str,
    settings: &[String],
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        binary.to_owned(),
        format!("--topic-prefix={prefix}"),
        format!("--cql-keyspace={keyspace}"),
    ];
    args.extend_from_slice(settings);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// What `S`'s binary does with the command line `args`: builds the stage and runs it on
/// `listeners` until `shutdown`.
pub async fn build_and_run<S: Stage>(
    args: Vec<String>,
    listeners: Listeners,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    S::build(S::Config::parse_from(args))
        .await?
        .run(listeners, shutdown)
        .await
}

/// A running stage.
#[derive(Debug)]
pub struct TestStage<S: Stage> {
    /// What a test reads while it runs (fanout's and the sink's counters, the gateway's state).
    pub status: S::Handle,
    /// Its client port, if it has one.
    pub client: Option<SocketAddr>,
    /// Its admin port (`/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// What stops it ([`Shutdown::stop`]).
    pub shutdown: Shutdown,
    /// Its run, which ends once it has stopped.
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl<S: Stage> TestStage<S> {
    /// Builds the stage from the command line `args` and runs it, each of its ports on loopback
    /// port 0; returns as soon as it runs.
    pub async fn spawn_with(args: Vec<String>) -> Self {
        let config = S::Config::parse_from(args);
        let (client, _) = S::addresses(&config);
        let listeners = Listeners::loopback(client.is_some()).await.expect("bind");
        let client = listeners
            .client
            .as_ref()
            .map(|l| l.local_addr().expect("addr"));
        let admin = listeners.admin.local_addr().expect("addr");
        let stage = S::build(config)
            .await
            .unwrap_or_else(|e| panic!("{} builds: {e:?}", S::NAME));
        let status = stage.handle();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(stage.run(listeners, shutdown.clone()));
        Self {
            status,
            client,
            admin,
            shutdown,
            task,
        }
    }

    /// Builds and runs the stage from `args` ([`spawn_with`](Self::spawn_with)) and returns
    /// once it is ready.
    pub async fn start(args: Vec<String>) -> Self {
        Self::spawn_with(args).await.ready().await
    }

    /// Returns once `/readyz` answers 200; fails the test after [`READY`].
    pub async fn ready(self) -> Self {
        wait_ready(self.admin, S::NAME, READY).await;
        self
    }

    /// Stops it ([`Shutdown::stop`]) and waits for a clean end.
    pub async fn stop(self) {
        self.shutdown.stop();
        self.task
            .await
            .expect("joins")
            .unwrap_or_else(|e| panic!("{} ran cleanly: {e:?}", S::NAME));
    }
}
