//! `nearby-gateway`: parses the configuration, builds the gateway, serves until SIGINT/SIGTERM.
//! The first signal drains (every client gets `reconnect`, spread over the drain window, then
//! the gateway stops, exit 0); a second one stops at once. Exits 1 when it cannot go on.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    nearby_common::stage::main::<nearby_gateway::GatewayStage>().await
}
