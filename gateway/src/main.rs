//! `nearby-gateway`: parses the configuration, builds the gateway, serves until SIGINT/SIGTERM.

use clap::Parser;
use nearby_gateway::{Gateway, GatewayConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nearby_common::telemetry::init();
    let config = GatewayConfig::parse();
    let shutdown = nearby_common::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let admin = tokio::net::TcpListener::bind(config.admin_listen).await?;
    let gateway = Gateway::build(config, shutdown).await?;
    nearby_gateway::run(gateway, listener, admin).await
}
