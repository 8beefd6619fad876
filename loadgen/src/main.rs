//! `nearby-loadgen`: drives a running Nearby Friends system (or the Redis Pub/Sub baseline) with
//! simulated people, and reports what it measured; and the other measurement tools (`measure`,
//! `rebuild`, `sink-throughput`).

use clap::{Parser, Subcommand};

/// Load generator for Nearby Friends.
#[derive(Debug, Parser)]
#[command(name = "nearby-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to do. Each subcommand that measures writes its JSON result and plot under `--out`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Describes the simulated city: people, friends, the share of pairs within 5 miles.
    City(nearby_loadgen::sim::CityConfig),
    /// Drives a running system (`scripts/run.sh`): sets up the city's people and friendships,
    /// opens a WebSocket each, reports every `--interval` and times every delivery. A flag
    /// given twice takes its last value (so `scripts/bench.sh --interval 30s` overrides).
    #[command(args_override_self = true)]
    Run(Box<nearby_loadgen::run::RunArgs>),
    /// The saturation curve: the same city as `run`, the offered report rate raised in steps
    /// (`--start-rate` × `--factor`^k for `--step` each) until p99 latency passes
    /// `--p99-limit`, a consumer group's lag grows through a step, or the generator falls short.
    /// A flag given twice takes its last value, as for `run`.
    #[command(args_override_self = true)]
    Ramp(Box<nearby_loadgen::ramp::RampArgs>),
    /// The original design's routing layer on the same city: per-user Redis Pub/Sub channels,
    /// subscribers filtering by distance; counts deliveries per CPU-second of Redis + servers.
    /// A flag given twice takes its last value, as for `run`.
    #[command(args_override_self = true)]
    Baseline(Box<nearby_loadgen::baseline::BaselineArgs>),
    /// Measures a running Nearby Friends system: idle memory and end-to-end latency.
    Measure(nearby_loadgen::measure::MeasureArgs),
    /// Times a new fanout instance's table rebuild from the location topic.
    Rebuild(Box<nearby_loadgen::rebuild::RebuildArgs>),
    /// The history sink's rows/s against a plain loop of concurrent inserts.
    SinkThroughput(nearby_loadgen::sink_throughput::SinkThroughputArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Measure(args) => {
            tokio::runtime::Runtime::new()?.block_on(nearby_loadgen::measure::run(&args))
        }
        Command::Rebuild(args) => nearby_loadgen::rebuild::run(&args),
        Command::SinkThroughput(args) => {
            tokio::runtime::Runtime::new()?.block_on(nearby_loadgen::sink_throughput::run(&args))
        }
        Command::City(config) => {
            let city = nearby_loadgen::sim::City::new(&config);
            println!(
                "{} people, {:.1} friends each on average, {:.0} % of friend pairs within 5 miles now",
                city.len(),
                city.mean_degree(),
                100.0 * city.share_within(nearby_common::geo::NEARBY_RADIUS_M)
            );
            Ok(())
        }
        Command::Baseline(args) => {
            let r = nearby_loadgen::baseline::run(&args)?;
            println!(
                "baseline{}: {} people, {} reports ({:.0}/s), {} received, {} delivered after the \
                 distance filter; CPU s: redis {:.2}, servers {:.2} (publisher {:.2}, not counted)",
                match (r.push, r.intake) {
                    (_, true) => " with intake and push (servers take reports in from sockets)",
                    (true, false) => " with push (each delivery written to its socket)",
                    (false, false) => " (routing only)",
                },
                r.people,
                r.published,
                r.published as f64 / r.seconds,
                r.received,
                r.delivered,
                r.redis_cpu_s,
                r.subscriber_cpu_s,
                r.publisher_cpu_s
            );
            println!(
                "per report: servers' thread {:.2} wake-ups, {:.2} preemptions; redis {:.2} wake-ups, {:.2} preemptions",
                r.server_switches_per_report.0,
                r.server_switches_per_report.1,
                r.redis_switches_per_report.0,
                r.redis_switches_per_report.1
            );
            println!(
                "delivered per CPU-second (redis + servers): {:.0}; latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
                r.delivered_per_cpu_s,
                r.latency_ms.p50,
                r.latency_ms.p90,
                r.latency_ms.p99,
                r.latency_ms.max
            );
            println!(
                "wrote {}",
                args.out
                    .join(nearby_loadgen::baseline::file_name(&args))
                    .display()
            );
            Ok(())
        }
        Command::Ramp(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let r = runtime.block_on(nearby_loadgen::ramp::ramp(&args))?;
            print!("{}", nearby_loadgen::ramp::table(&r));
            println!(
                "wrote {} and {}",
                r.header.json_path.display(),
                r.header.plot_path.display()
            );
            Ok(())
        }
        Command::Run(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let r = runtime.block_on(nearby_loadgen::run::run(&args))?;
            let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
            let ms2 = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
            println!(
                "{}: {} reports ({:.0}/s), {} deliveries ({:.0}/s), {} friend_left, {} error frames",
                r.header.scenario,
                r.counts.reports,
                r.reports_per_s,
                r.counts.friend_locations,
                r.deliveries_per_s,
                r.counts.friend_left,
                r.counts.error_frames
            );
            for (label, l) in [
                ("latency ms", &r.latency),
                ("latency ms after the first interval", &r.latency_steady),
            ] {
                println!(
                    "{label}: p50 {}  p90 {}  p99 {}  max {}  ({} timed)",
                    ms(l.p50_ms),
                    ms(l.p90_ms),
                    ms(l.p99_ms),
                    ms(l.max_ms),
                    l.count
                );
            }
            let delivered = r.counts.friend_locations;
            for (stage, c) in &r.costs.stages {
                println!(
                    "{stage}: {:.2} CPU s, {} CPU s per 1 M reports, {} µs per delivery",
                    c.cpu_s,
                    ms(c.cpu_s_per_million_reports),
                    ms((delivered > 0).then(|| c.cpu_s * 1e6 / delivered as f64))
                );
            }
            println!(
                "deliveries per CPU-second (gateway + fanout): {}; gateway RSS per connection: {} bytes",
                ms(r.costs.deliveries_per_cpu_s_gateway_fanout),
                ms(r.costs.gateway_rss_bytes_per_connection)
            );
            if let Some(s) = &r.costs.steady {
                println!(
                    "after the first interval ({:.0} s from {:.0} s: {} reports, {} deliveries, machine {} % busy):",
                    s.seconds,
                    s.from_s,
                    s.reports,
                    s.deliveries,
                    ms(s.machine_busy.map(|b| b * 100.0))
                );
                for (stage, cpu_s) in &s.cpu_s {
                    println!(
                        "  {stage}: {cpu_s:.2} CPU s, {} µs per delivery; per report {} wake-ups, {} preemptions",
                        ms((s.deliveries > 0).then(|| cpu_s * 1e6 / s.deliveries as f64)),
                        ms2(s.wakeups_per_report.get(stage).copied()),
                        ms2(s.preemptions_per_report.get(stage).copied())
                    );
                }
                println!(
                    "  deliveries per CPU-second (gateway + fanout): {}",
                    ms(s.deliveries_per_cpu_s_gateway_fanout)
                );
            }
            println!(
                "wrote {} and {}",
                r.header.json_path.display(),
                r.header.plot_path.display()
            );
            Ok(())
        }
    }
}
