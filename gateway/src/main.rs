//! `nearby-gateway`: parses the configuration, builds the gateway, serves until SIGINT/SIGTERM.
//! The first signal drains (every client gets `reconnect`, spread over the drain window, then
//! the gateway stops); a second one stops at once.

use clap::Parser;
use nearby_gateway::{Gateway, GatewayConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nearby_common::telemetry::init();
    let config = GatewayConfig::parse();
    let (first, second) = nearby_common::shutdown::on_signals();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let admin = tokio::net::TcpListener::bind(config.admin_listen).await?;
    // A signal before the gateway is built stops it at once: there is nobody to drain.
    let shutdown = second.clone();
    let gateway = tokio::select! {
        built = Gateway::build(config, shutdown) => built?,
        () = first.cancelled() => return Ok(()),
    };
    tokio::spawn({
        let gateway = gateway.clone();
        async move {
            tokio::select! {
                () = first.cancelled() => { gateway.drain.start(None); }
                () = gateway.shutdown.cancelled() => {}
            }
        }
    });
    nearby_gateway::run(gateway, listener, admin).await
}
