//! `nearby-loadgen measure`: measures a RUNNING system (start it with `scripts/run.sh`) from the
//! outside, with real WebSocket clients and tokens minted here with the deployment's HS256
//! secret (`NEARBY_JWT_SECRET`, the development secret by default). User ids are random per run.
//!
//! ```text
//! # Memory per idle connection: opens N authenticated sockets, reads the gateway's VmRSS before
//! # and after, closes them.
//! nearby-loadgen measure idle --connections 10000 --gateway-pid PID
//!
//! # End-to-end latency: P friend pairs a few hundred metres apart; each sender reports R times;
//! # latency = when the friend's socket got the `friend_location` − when the report was sent.
//! nearby-loadgen measure latency --pairs 50 --reports 20 --interval-ms 1100
//! # ... and split in three hops (client → gateway; → fanout's delivery produced; → receiver),
//! # from the records of the location and delivery topics:
//! nearby-loadgen measure latency --pairs 50 --reports 20 --hops
//!
//! # Change latency: P friend pairs in range; C times, one pair's sender unfriends the receiver
//! # (or turns sharing off); latency = when the receiver got `friend_left` − when the HTTP call
//! # returned. Each change is undone (befriend again, sharing on) and that timed the same way.
//! nearby-loadgen measure changes --pairs 20 --changes 200
//!
//! # A reconnect storm: N sockets connect at once, report, and wait for their first page.
//! nearby-loadgen measure storm --connections 10000
//! ```
//!
//! Measure idle memory on a freshly started gateway: memory freed after earlier connections stays
//! in its allocator and is reused, which would hide the growth.
//!
//! The idle clients spread over the source addresses 127.0.0.2, 127.0.0.3, ... (5,000 a source by
//! default) so the ephemeral ports of one address do not run out. Both this process and the
//! gateway need an open-file limit above N: this tool raises its own soft limit (with
//! `prlimit`, as far as the hard limit allows) and says what the gateway's is.
//!
//! This file holds the flags, the dispatch and what the modes share; the modes are `idle`,
//! `latency`, `changes` and `storm`, `pairs` the friend pairs (sockets, frames) the last two use, and
//! `hops` the topic reader of `latency --hops`.

mod changes;
mod hops;
mod idle;
mod latency;
mod pairs;
pub mod storm;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

pub use self::changes::ChangesArgs;
pub use self::idle::IdleArgs;
pub use self::latency::LatencyArgs;
pub use self::storm::StormArgs;
use crate::{net, stats};

/// How long the minted tokens last.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The flags of `measure`: where the system runs, and which measurement.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Where the system runs and how to sign tokens (given before or after the mode).
    #[command(flatten)]
    pub target: Target,
    /// Which measurement.
    #[command(subcommand)]
    pub mode: Mode,
}

/// Where the system runs and how to sign tokens.
#[derive(Debug, Args)]
pub struct Target {
    /// The gateway's client port.
    #[arg(long, global = true, default_value = "127.0.0.1:8080")]
    pub gateway: SocketAddr,
    /// The gateway's admin port (`/readyz` reports its connection count).
    #[arg(long, global = true, default_value = "127.0.0.1:9080")]
    pub gateway_admin: SocketAddr,
    /// The fanout's admin port.
    #[arg(long, global = true, default_value = "127.0.0.1:9081")]
    pub fanout_admin: SocketAddr,
    /// The HS256 secret the gateway verifies tokens with.
    #[arg(
        long,
        global = true,
        env = "NEARBY_JWT_SECRET",
        default_value = nearby_common::auth::DEV_SECRET,
        hide_env_values = true
    )]
    pub jwt_secret: String,
}

impl Target {
    /// A token for `user`, valid for an hour.
    fn token(&self, user: i64) -> String {
        net::token(&self.jwt_secret, user, TOKEN_TTL)
    }
}

/// The measurements.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Gateway memory per idle authenticated connection.
    Idle(IdleArgs),
    /// Report-to-friend latency through gateway → Kafka → fanout → Kafka → gateway.
    Latency(LatencyArgs),
    /// Change-to-socket latency: from an unfriend or sharing-off call returning to the friend's
    /// socket getting `friend_left` (and from the undoing call to `friend_location`).
    Changes(ChangesArgs),
    /// A reconnect storm: N sockets connect at once, each reports and waits for its first page.
    Storm(StormArgs),
}

/// Runs the measurement `args` names; it prints what it measured.
pub async fn run(args: &MeasureArgs) -> anyhow::Result<()> {
    match &args.mode {
        Mode::Idle(mode) => idle::idle(&args.target, mode).await,
        Mode::Latency(mode) => latency::latency(&args.target, mode).await,
        Mode::Changes(mode) => changes::changes(&args.target, mode).await,
        Mode::Storm(mode) => storm::storm(&args.target, mode).await.map(|_| ()),
    }
}

/// The connection count in the gateway's `/readyz` ("ready, N connections").
async fn gateway_connections(admin: SocketAddr) -> Option<usize> {
    let (_, body) = net::http(admin, "GET", "/readyz", None, "").await.ok()?;
    body.split(", ").nth(1)?.split(' ').next()?.parse().ok()
}

/// How busy the whole machine was since a `machine_ticks` reading, percent of all cores.
fn busy_percent(before: Option<(u64, u64)>) -> String {
    nearby_common::procfs::busy_share(before)
        .map_or("?".to_owned(), |b| format!("{:.0}%", b * 100.0))
}

/// A summary of latency samples, ms (NaN where there were none).
#[derive(Debug)]
struct Stats {
    count: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
    min: f64,
}

/// Sorts `samples` and summarizes them (percentiles by nearest rank, as a run's).
#[allow(clippy::cast_precision_loss)]
fn stats(mut samples: Vec<f64>) -> Stats {
    samples.sort_by(f64::total_cmp);
    let count = samples.len();
    let at = |q| stats::percentile(&samples, q).unwrap_or(f64::NAN);
    Stats {
        count,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: samples.last().copied().unwrap_or(f64::NAN),
        min: samples.first().copied().unwrap_or(f64::NAN),
        mean: samples.iter().sum::<f64>() / count.max(1) as f64,
    }
}

/// A summary as the JSON output writes it.
fn stats_json(s: &Stats) -> Value {
    json!({"count": s.count, "p50_ms": s.p50, "p90_ms": s.p90, "p99_ms": s.p99, "max_ms": s.max, "min_ms": s.min, "mean_ms": s.mean})
}
