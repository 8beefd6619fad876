//! `nearby-fanout`: parses the configuration, builds the service, runs until SIGINT/SIGTERM.

use clap::Parser;
use nearby_fanout::service::{FanoutService, FanoutServiceConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nearby_common::telemetry::init();
    let config = FanoutServiceConfig::parse();
    let shutdown = nearby_common::shutdown::Shutdown::on_signals();
    let listeners = nearby_common::stage::Listeners::bind(None, config.admin_listen).await?;
    let service = FanoutService::build(config).await?;
    service.run(listeners, shutdown).await
}
