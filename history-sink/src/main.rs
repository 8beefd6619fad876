//! `nearby-history-sink`: parses the configuration, connects, runs until SIGINT/SIGTERM (a
//! second signal cuts the drain of writes short). Exits 0 after a stop (writes drained or
//! abandoned, positions committed), 1 when the run failed.

use std::process::ExitCode;

use clap::Parser;
use nearby_history_sink::{HistorySink, SinkConfig};

#[tokio::main]
async fn main() -> ExitCode {
    nearby_common::telemetry::init();
    let config = SinkConfig::parse();
    let (shutdown, cut) = nearby_common::shutdown::on_signals();
    let run = async {
        let admin = tokio::net::TcpListener::bind(config.admin_listen).await?;
        let sink = HistorySink::build(config, &shutdown).await?;
        sink.run_with(admin, shutdown, cut).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "history sink failed");
            ExitCode::FAILURE
        }
    }
}
