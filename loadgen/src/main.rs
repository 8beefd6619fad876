//! `nearby-loadgen`: drives a running Nearby Friends system (or the Redis Pub/Sub baseline) with
//! simulated people, and reports what it measured.

use clap::Parser;

/// Load generator for Nearby Friends.
#[derive(Debug, Parser)]
#[command(name = "nearby-loadgen", version, about)]
struct Cli {
    /// The city to simulate.
    #[command(flatten)]
    city: nearby_loadgen::sim::CityConfig,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let city = nearby_loadgen::sim::City::new(&cli.city);
    println!(
        "{} people, {:.1} friends each on average, {:.0} % of friend pairs within 5 miles now",
        city.len(),
        city.mean_degree(),
        100.0 * city.share_within(nearby_common::geo::NEARBY_RADIUS_M)
    );
    Ok(())
}
