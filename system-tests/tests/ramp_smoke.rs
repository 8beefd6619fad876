//! The ramp's smoke test: `nearby_loadgen::ramp::ramp` drives a tiny city (30 people, 5
//! reports/s doubled each step, at most 3 steps of 5 s) against an in-process gateway and
//! fanout on the real stack. No thresholds on speed: it must finish and write its JSON with one
//! to three steps, each offering the rate the flags give.

use clap::Parser;
use nearby_testkit::unique;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    ramp: nearby_loadgen::ramp::RampArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tiny_ramp_runs_its_steps_and_writes_its_result() {
    let (gw, fanout) = nearby_system_tests::system(&[], &[]).await;
    let out = std::env::temp_dir().join(unique("ramp-smoke-"));
    let mut flags = nearby_system_tests::loadgen_flags(&gw, "ramp-smoke", &out);
    flags.extend(
        [
            "--people=30",
            "--degree=8",
            "--start-rate=5",
            "--factor=2",
            "--step=5s",
            "--max-steps=3",
            "--drain=2s",
            // No history sink runs here, so its group would only ever fall behind.
            "--no-lag",
        ]
        .map(str::to_owned),
    );
    let args = Args::parse_from(flags);
    let result = nearby_loadgen::ramp::ramp(&args.ramp)
        .await
        .expect("the ramp completes");
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&result.header.json_path).expect("the JSON is written"),
    )
    .expect("valid JSON");
    assert_eq!(json["scenario"], "ramp-smoke");
    assert_eq!(json["counts"]["connected"], 30);
    let steps = json["steps"].as_array().expect("steps");
    assert!((1..=3).contains(&steps.len()), "{} steps", steps.len());
    for (k, step) in steps.iter().enumerate() {
        assert_eq!(step["step"], k);
        let offered = step["offered_per_s"].as_f64().expect("offered");
        let expected = 5.0 * 2_f64.powi(i32::try_from(k).expect("few steps"));
        assert!((offered - expected).abs() < 1e-9, "step {k}: {offered}");
        assert!(step["achieved_per_s"].is_number());
        assert!(step["latency"].is_object());
    }
    // Every step but the last was sustained (the ramp stops at the first that is not).
    let last = steps.len() - 1;
    assert!(steps[..last].iter().all(|s| s["sustained"] == true));
    assert!(
        json["headline"]["stopped_by"].is_string(),
        "{}",
        json["headline"]
    );
    assert!(
        std::fs::read_to_string(&result.header.plot_path)
            .expect("the plot is written")
            .starts_with("<svg")
    );
    print!("{}", nearby_loadgen::ramp::table(&result));
    std::fs::remove_dir_all(&out).ok();
    fanout.stop().await;
    gw.stop().await;
}
