//! The Redis Pub/Sub baseline runs against the real Redis on a small city (a smoke test: no
//! thresholds, figures belong in docs/PERFORMANCE.md).

use clap::Parser;
use nearby_loadgen::baseline::{self, BaselineArgs};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: BaselineArgs,
}

/// Runs the baseline on `people` people (20 friends each, a 20 km city, a report a second) for
/// `secs` seconds with `extra` flags; returns its result and the directory it wrote to.
fn run(
    name: &str,
    people: u32,
    secs: u32,
    extra: &[&str],
) -> (baseline::BaselineResult, std::path::PathBuf) {
    let out = std::env::temp_dir().join(format!("loadgen-{name}-{}", std::process::id()));
    let mut flags = vec![
        "baseline".to_owned(),
        format!("--people={people}"),
        "--degree=20".to_owned(),
        "--side-km=20".to_owned(),
        "--interval=1s".to_owned(),
        format!("--duration={secs}s"),
        format!("--out={}", out.display()),
    ];
    flags.extend(extra.iter().map(|f| (*f).to_owned()));
    let cli = Cli::parse_from(flags);
    (baseline::run(&cli.args).expect("baseline runs"), out)
}

#[test]
fn the_baseline_publishes_filters_and_counts() {
    let (r, out) = run("baseline", 300, 4, &[]);
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    // Everyone reported about every second for four seconds.
    assert!(r.published >= 300 * 3, "{r:?}");
    // Redis fanned each report out to the servers holding a friend, and the filter let some
    // (not all) through.
    assert!(r.received >= r.published, "{r:?}");
    assert!(r.delivered > 0 && r.delivered < r.published * 20, "{r:?}");
    assert!(r.latency_ms.count as u64 == r.delivered);
    assert!(out.join("baseline.json").exists());
}

#[test]
fn with_push_every_delivery_is_written_to_its_recipients_socket() {
    let (r, out) = run("baseline-push", 200, 3, &["--push"]);
    assert!(r.push && r.delivered > 0, "{r:?}");
    // A friend_location frame is over 100 bytes: every delivery was written.
    assert!(r.pushed_bytes >= r.delivered * 100, "{r:?}");
    assert!(out.join("baseline-push.json").exists());
}

#[test]
fn with_intake_every_report_is_taken_from_its_socket_checked_and_published() {
    let (r, out) = run("baseline-intake", 200, 3, &["--push", "--intake"]);
    // Every report a phone wrote reached its server, passed the gateway's checks and was
    // published: nothing refused, nothing lost.
    assert!(r.intake && r.published >= 200 * 2, "{r:?}");
    assert_eq!(
        (r.intake_reports, r.intake_refused),
        (r.published, 0),
        "{r:?}"
    );
    assert!(r.received >= r.published && r.delivered > 0, "{r:?}");
    assert!(r.pushed_bytes >= r.delivered * 100, "{r:?}");
    assert!(out.join("baseline-intake.json").exists());
}
