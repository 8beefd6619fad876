//! `nearby-history-sink`: parses the configuration, connects, runs until SIGINT/SIGTERM.

use clap::Parser;
use nearby_history_sink::{HistorySink, SinkConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nearby_common::telemetry::init();
    let config = SinkConfig::parse();
    let shutdown = nearby_common::shutdown::on_signal();
    let admin = tokio::net::TcpListener::bind(config.admin_listen).await?;
    let sink = HistorySink::build(config, &shutdown).await?;
    sink.run(admin, shutdown).await
}
