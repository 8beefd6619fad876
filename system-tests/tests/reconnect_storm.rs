//! A reconnect storm, as after a gateway's loss: 10,000 sockets connect to one gateway (a
//! process of its own: each end of 10,000 sockets needs its own open-file budget) with 2,000
//! handshakes in flight, each reports a position and waits for its first page. All must be
//! connected and paged, with no failure but 503 `full`; the times are printed and bounded.

use std::time::Duration;

use clap::Parser;
use nearby_testkit::SECRET;
use nearby_testkit::process::System;

/// Sockets in the storm.
const SOCKETS: usize = 10_000;
/// The longest the storm may take until its last page (the debug build CI runs; a release
/// gateway on this machine: docs/PERFORMANCE.md).
const BOUND: Duration = Duration::from_secs(120);

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    measure: nearby_loadgen::measure::MeasureArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sockets_connecting_at_once_are_all_connected_and_paged() {
    let system = System::new().await;
    let (gateway, addr) = system.gateway("gw-storm", &[]).await;
    let args = Args::parse_from([
        "storm".to_owned(),
        format!("--gateway={addr}"),
        format!("--gateway-admin={}", gateway.admin),
        format!("--jwt-secret={SECRET}"),
        "storm".to_owned(),
        format!("--connections={SOCKETS}"),
        "--concurrency=2000".to_owned(),
    ]);
    let nearby_loadgen::measure::Mode::Storm(storm) = &args.measure.mode else {
        unreachable!("the storm mode was given");
    };
    let result = nearby_loadgen::measure::storm::storm(&args.measure.target, storm)
        .await
        .expect("the storm runs");
    println!("reconnect storm: {result}");
    let errors = result["errors"].as_object().expect("errors");
    assert!(
        errors.keys().all(|k| k == "http 503 full"),
        "failures other than 503 full: {errors:?}"
    );
    assert_eq!(result["paged"], SOCKETS, "every socket connected and paged");
    let last_page = result["first_page_ms"]["max_ms"].as_f64().expect("max");
    assert!(
        last_page < BOUND.as_secs_f64() * 1000.0,
        "the last page came after {last_page:.0} ms"
    );
    drop(gateway);
}
