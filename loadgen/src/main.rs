//! `nearby-loadgen`: drives a running Nearby Friends system (or the Redis Pub/Sub baseline) with
//! simulated people, and reports what it measured.

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
    /// opens a WebSocket each, reports every `--interval` and times every delivery.
    Run(Box<nearby_loadgen::run::RunArgs>),
    // The Redis Pub/Sub baseline goes here, the same shape:
    //     Baseline(Box<nearby_loadgen::baseline::BaselineArgs>),
    // with its arm in `main` below.
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
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
        Command::Run(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let r = runtime.block_on(nearby_loadgen::run::run(&args))?;
            let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
            println!(
                "{}: {} reports ({:.0}/s), {} deliveries ({:.0}/s), {} friend_left, {} error frames",
                r.scenario,
                r.counts.reports,
                r.reports_per_s,
                r.counts.friend_locations,
                r.deliveries_per_s,
                r.counts.friend_left,
                r.counts.error_frames
            );
            println!(
                "latency ms: p50 {}  p90 {}  p99 {}  max {}  ({} timed)",
                ms(r.latency.p50_ms),
                ms(r.latency.p90_ms),
                ms(r.latency.p99_ms),
                ms(r.latency.max_ms),
                r.latency.count
            );
            for (stage, c) in &r.costs.stages {
                println!(
                    "{stage}: {:.2} CPU s, {} CPU s per 1 M reports",
                    c.cpu_s,
                    ms(c.cpu_s_per_million_reports)
                );
            }
            println!(
                "deliveries per CPU-second (gateway + fanout): {}; gateway RSS per connection: {} bytes",
                ms(r.costs.deliveries_per_cpu_s_gateway_fanout),
                ms(r.costs.gateway_rss_bytes_per_connection)
            );
            println!(
                "wrote {} and {}",
                r.json_path.display(),
                r.plot_path.display()
            );
            Ok(())
        }
    }
}
