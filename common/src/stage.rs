//! The shape every stage shares: `Stage::build(config).await?` connects to what it needs, then
//! `.run(Listeners { client, admin }, shutdown).await` serves until the shutdown asks it to
//! stop. A binary binds the configured addresses ([`main`]); a test binds port 0 and starts the
//! real stage in-process (mini-redis's `server::run(listener, shutdown)`, with an admin port
//! beside it), through the same trait, so one starter serves every stage.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// A stage of the pipeline (gateway, fanout, history sink): built from its configuration,
/// then run on listeners it is given until its [`Shutdown`] asks it to stop.
pub trait Stage: Sized + Send + 'static {
    /// Its configuration: flags and `NEARBY_*` variables.
    type Config: clap::Parser + Send + 'static;
    /// What a caller may read while it runs (its counters, its shared state); cheap to clone.
    type Handle: Clone + Send + Sync + 'static;

    /// The binary's name (clap's first argument), for logs and tests.
    const NAME: &'static str;

    /// The addresses it listens on: the clients' port (if it has one) and the admin port.
    fn addresses(config: &Self::Config) -> (Option<SocketAddr>, SocketAddr);

    /// Checks the configuration and connects to the stack, waiting for it as long as
    /// `NEARBY_STARTUP_TIMEOUT` allows.
    fn build(config: Self::Config) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// What to read while it runs.
    fn handle(&self) -> Self::Handle;

    /// Serves until `shutdown` asks it to stop; an error when it cannot go on.
    fn run(
        self,
        listeners: Listeners,
        shutdown: Shutdown,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A stage's `main`: logs, configuration, the signals, the listeners, `build` and `run`. A
/// signal while it still waits for the stack stops it at once (there is nothing to drain yet).
/// Exits 0 after a stop, 1 (with the error logged) when it failed.
pub async fn main<S: Stage>() -> ExitCode {
    crate::telemetry::init();
    let config = <S::Config as clap::Parser>::parse();
    let shutdown = Shutdown::on_signals();
    let run = async {
        let (client, admin) = S::addresses(&config);
        let listeners = Listeners::bind(client, admin).await?;
        let stage = tokio::select! {
            built = S::build(config) => built?,
            () = shutdown.graceful().cancelled() => return Ok(()),
        };
        stage.run(listeners, shutdown).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(stage = S::NAME, error = format!("{e:#}"), "stage failed");
            ExitCode::FAILURE
        }
    }
}

/// The sockets a stage serves on, bound by its caller.
#[derive(Debug)]
pub struct Listeners {
    /// The clients' port (the gateway's WebSocket and HTTP API); `None` for a stage that has
    /// none (fanout, the history sink).
    pub client: Option<TcpListener>,
    /// The operators' port: `/healthz`, `/readyz`, `/metrics` and the stage's own routes.
    pub admin: TcpListener,
}

impl Listeners {
    /// Listeners of a stage with an admin port only.
    pub fn admin(admin: TcpListener) -> Self {
        Self {
            client: None,
            admin,
        }
    }

    /// Binds the given addresses (port 0 picks a free port). Errors name the address.
    pub async fn bind(client: Option<SocketAddr>, admin: SocketAddr) -> std::io::Result<Self> {
        let named = |addr, e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
        };
        let client = match client {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| named(addr, e))?),
            None => None,
        };
        let admin = TcpListener::bind(admin)
            .await
            .map_err(|e| named(admin, e))?;
        Ok(Self { client, admin })
    }

    /// Binds loopback port 0 for each port a stage has: what tests use.
    pub async fn loopback(with_client: bool) -> std::io::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::bind(with_client.then_some(any), any).await
    }
}
