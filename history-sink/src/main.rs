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
    let shutdown = nearby_common::shutdown::Shutdown::on_signals();
    let run = async {
        let listeners = nearby_common::stage::Listeners::bind(None, config.admin_listen).await?;
        // A signal while it waits for the stack at start-up stops it: nothing to drain yet.
        let sink = tokio::select! {
            built = HistorySink::build(config) => built?,
            () = shutdown.graceful().cancelled() => return Ok(()),
        };
        sink.run(listeners, shutdown).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "history sink failed");
            ExitCode::FAILURE
        }
    }
}
