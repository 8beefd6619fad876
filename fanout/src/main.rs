//! `nearby-fanout`: parses the configuration, builds the service, runs until SIGINT/SIGTERM
//! (exit 0), or exits 1 when it cannot go on.

// One thread: fanout is one loop (a step at a time), and its Redis and CQL round trips are
// awaited by that loop. On a multi-threaded runtime each round trip handed the socket's I/O to
// a worker thread and back (two thread wake-ups per step), which cost more CPU than the work at
// low rates. Blocking calls (offset lookups, metadata) still go to the blocking pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    nearby_common::stage::main::<nearby_fanout::service::FanoutService>().await
}
