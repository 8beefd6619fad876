//! `nearby-fanout`: parses the configuration, builds the service, runs until SIGINT/SIGTERM.

use clap::Parser;
use nearby_fanout::service::{FanoutService, FanoutServiceConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = FanoutServiceConfig::parse();
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("signal received: shutting down");
            shutdown.cancel();
        }
    });
    let admin = tokio::net::TcpListener::bind(config.admin_listen).await?;
    let service = FanoutService::build(config).await?;
    service.run(admin, shutdown).await
}
