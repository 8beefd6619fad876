//! The load generator's smoke test: `nearby_loadgen::run::run` drives a small city (50 people,
//! 10 friends each, a report a second for 20 s) against an in-process gateway and fanout on the
//! real stack. No thresholds: it must finish, write its JSON and plot, and see deliveries.

use clap::Parser;
use nearby_testkit::unique;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    run: nearby_loadgen::run::RunArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_scenario_runs_end_to_end_and_writes_its_result() {
    let (gw, fanout) = nearby_system_tests::system(&[], &[]).await;
    let out = std::env::temp_dir().join(unique("loadgen-smoke-"));
    let mut flags = nearby_system_tests::loadgen_flags(&gw, "smoke", &out);
    flags.extend(
        [
            "--people=50",
            "--degree=10",
            "--interval=1s",
            "--duration=20s",
            "--drain=3s",
            "--lag-every=2s",
        ]
        .map(str::to_owned),
    );
    let args = Args::parse_from(flags);
    let result = nearby_loadgen::run::run(&args.run)
        .await
        .expect("the run completes");
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&result.header.json_path).expect("the JSON is written"),
    )
    .expect("valid JSON");
    assert_eq!(json["scenario"], "smoke");
    assert_eq!(json["counts"]["connected"], 50);
    assert!(json["counts"]["reports"].as_u64() > Some(0), "{json}");
    assert!(
        json["counts"]["deliveries_timed"].as_u64() > Some(0),
        "no deliveries: {}",
        json["counts"]
    );
    assert!(json["latency"]["p99_ms"].is_number());
    assert!(!json["timeline"].as_array().expect("timeline").is_empty());
    let svg = std::fs::read_to_string(&result.header.plot_path).expect("the plot is written");
    assert!(svg.starts_with("<svg"));
    std::fs::remove_dir_all(&out).ok();
    fanout.stop().await;
    gw.stop().await;
}
