//! `nearby-gateway`: parses the configuration, builds the gateway, serves until SIGINT/SIGTERM.
//! The first signal drains (every client gets `reconnect`, spread over the drain window, then
//! the gateway stops); a second one stops at once.

use clap::Parser;
use nearby_gateway::{Gateway, GatewayConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nearby_common::telemetry::init();
    let config = GatewayConfig::parse();
    let shutdown = nearby_common::shutdown::Shutdown::on_signals();
    let listeners =
        nearby_common::stage::Listeners::bind(Some(config.listen), config.admin_listen).await?;
    // A signal before the gateway is built stops it at once: there is nobody to drain.
    let gateway = tokio::select! {
        built = Gateway::build(config) => built?,
        () = shutdown.graceful().cancelled() => return Ok(()),
    };
    gateway.run(listeners, shutdown).await
}
