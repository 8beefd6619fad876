//! `nearby-fanout`: parses the configuration, builds the service, runs until SIGINT/SIGTERM
//! (exit 0), or exits 1 when it cannot go on.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    nearby_common::stage::main::<nearby_fanout::service::FanoutService>().await
}
