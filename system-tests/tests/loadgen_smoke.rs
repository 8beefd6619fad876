//! The load generator's smoke test: `nearby_loadgen::run::run` drives a small city (50 people,
//! 10 friends each, a report a second for 20 s) against an in-process gateway and fanout on the
//! real stack. No thresholds: it must finish, write its JSON and plot, and see deliveries.

use clap::Parser;
use nearby_testkit::{SECRET, unique};

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    run: nearby_loadgen::run::RunArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_scenario_runs_end_to_end_and_writes_its_result() {
    let (gw, fanout) = nearby_system_tests::system(&[], &[]).await;
    let out = std::env::temp_dir().join(unique("loadgen-smoke-"));
    let args = Args::parse_from([
        "loadgen".to_owned(),
        "--scenario=smoke".to_owned(),
        "--people=50".to_owned(),
        "--degree=10".to_owned(),
        // A small town: most friends are within 5 miles, so there are deliveries to time.
        "--side-km=5".to_owned(),
        "--interval=1s".to_owned(),
        "--duration=20s".to_owned(),
        "--drain=3s".to_owned(),
        "--setup=api".to_owned(),
        format!("--gateway={}", gw.addr),
        format!("--gateway-admin={}", gw.admin),
        "--fanout-admin=none".to_owned(),
        "--sink-admin=none".to_owned(),
        format!("--jwt-secret={}", SECRET),
        format!("--topic-prefix={}", gw.prefix),
        format!("--cql-keyspace={}", gw.keyspace),
        "--lag-every=2s".to_owned(),
        // The stages run in this process: no per-process costs to read.
        "--no-costs".to_owned(),
        "--no-progress".to_owned(),
        format!("--out={}", out.display()),
    ]);
    let result = nearby_loadgen::run::run(&args.run)
        .await
        .expect("the run completes");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&result.json_path).expect("the JSON is written"))
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
    let svg = std::fs::read_to_string(&result.plot_path).expect("the plot is written");
    assert!(svg.starts_with("<svg"));
    std::fs::remove_dir_all(&out).ok();
    fanout.stop().await;
    gw.stop().await;
}
