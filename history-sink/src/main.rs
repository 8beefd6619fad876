//! `nearby-history-sink`: parses the configuration, connects, runs until SIGINT/SIGTERM (a
//! second signal cuts the drain of writes short). Exits 0 after a stop (writes drained or
//! abandoned, positions committed), 1 when the run failed.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    nearby_common::stage::main::<nearby_history_sink::HistorySink>().await
}
