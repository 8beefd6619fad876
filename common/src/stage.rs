//! The shape every stage shares: `Stage::build(config).await?` connects to what it needs, then
//! `.run(Listeners { client, admin }, shutdown).await` serves until the shutdown asks it to
//! stop. A binary binds the configured addresses; a test binds port 0 and starts the real stage
//! in-process (mini-redis's `server::run(listener, shutdown)`, with an admin port beside it).

use tokio::net::TcpListener;

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
    pub async fn bind(
        client: Option<std::net::SocketAddr>,
        admin: std::net::SocketAddr,
    ) -> std::io::Result<Self> {
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
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Self::bind(with_client.then_some(any), any).await
    }
}
