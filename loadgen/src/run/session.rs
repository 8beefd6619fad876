//! What `run` and `ramp` share before and around their measured window: the flags naming the
//! city and the system ([`SessionArgs`]), and the [`Session`] built from them (people and
//! friendships set up, one socket per person open, the stages found for the cost meter), which
//! [`Session::start`] turns into running reader and writer tasks.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nearby_common::stack::StackArgs;
use tokio::sync::{mpsc, watch};

use super::clients::{self, Report, Shared, SocketTasks};
use super::stages::CostMeter;
use super::{MaybeAddr, bar};
use crate::net::{self, Ws};
use crate::procfs;
use crate::setup::{self, SetupMode};
use crate::sim::{City, CityConfig};

/// The city, the system it runs against, how the clients connect and where results go: the
/// flags `run` and `ramp` share.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionArgs {
    /// The simulated city.
    #[command(flatten)]
    pub city: CityConfig,
    /// The stack (Kafka for the lag readings, the CQL store for `--setup bulk`).
    #[command(flatten)]
    pub stack: StackArgs,
    /// The gateway's client port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub gateway: SocketAddr,
    /// The gateway's admin port (`none`: not asked).
    #[arg(long, default_value = "127.0.0.1:9080")]
    pub gateway_admin: MaybeAddr,
    /// The fanout's admin port (`none`: not asked).
    #[arg(long, default_value = "127.0.0.1:9081")]
    pub fanout_admin: MaybeAddr,
    /// The history sink's admin port (`none`: not asked).
    #[arg(long, default_value = "127.0.0.1:9082")]
    pub sink_admin: MaybeAddr,
    /// The HS256 secret the gateway verifies tokens with.
    #[arg(
        long,
        env = "NEARBY_JWT_SECRET",
        default_value = nearby_common::auth::DEV_SECRET,
        hide_env_values = true
    )]
    pub jwt_secret: String,
    /// How people and friendships are created.
    #[arg(long, value_enum, default_value_t = SetupMode::Auto)]
    pub setup: SetupMode,
    /// Setup calls or writes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// The first client source address; the next ones follow (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, default_value = "127.0.0.2")]
    pub first_source: Ipv4Addr,
    /// Sockets per source address: fewer than a gateway's new connections per address at once
    /// (`NEARBY_CONNECT_RATE_BURST`, 200), so reconnecting them all is not taken for a flood.
    #[arg(long, default_value_t = 100)]
    pub per_source: usize,
    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Where the JSON and the plot go.
    #[arg(long, default_value = "target/loadgen")]
    pub out: PathBuf,
    /// Do not read the stages' CPU and memory from /proc (for a system in this process).
    #[arg(long)]
    pub no_costs: bool,
    /// The gateway's pid (default: the one process named `nearby-gateway`).
    #[arg(long)]
    pub gateway_pid: Option<u32>,
    /// The fanout's pid (default: the one process named `nearby-fanout`).
    #[arg(long)]
    pub fanout_pid: Option<u32>,
    /// The history sink's pid (default: the one process named `nearby-history-sink`).
    #[arg(long)]
    pub sink_pid: Option<u32>,
    /// No progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// The city set up against the system, its sockets open, ready for a measured window.
#[derive(Debug)]
pub(crate) struct Session {
    /// The simulated people (the driver moves them).
    pub(crate) city: City,
    /// The first person's user id.
    base: i64,
    /// How the people were set up, and in how many seconds.
    pub(crate) mode: SetupMode,
    pub(crate) setup_s: f64,
    /// Friend pairs created.
    pub(crate) friend_pairs: usize,
    /// Sockets opened, and in how many seconds.
    pub(crate) connected: usize,
    pub(crate) connect_s: f64,
    /// Per person, their socket (`None`: it did not open); taken by [`Session::start`].
    sockets: Vec<Option<Ws>>,
    /// The stages' CPU and the gateway's memory.
    pub(crate) meter: CostMeter,
    /// The gateway's and fanout's `/readyz` before the set-up.
    pub(crate) ready_before: BTreeMap<String, String>,
    /// Where the result's files go (`--out`).
    out: PathBuf,
}

/// What every result of the load generator starts with (`run`'s and `ramp`'s alike): its name
/// and parameters, how the people were set up, its timings, the stages' readiness before it,
/// and where its files are.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Header {
    /// The scenario's name.
    pub scenario: String,
    /// Its parameters.
    pub parameters: serde_json::Value,
    /// Epoch ms at the start of the measured window.
    pub started_at_ms: i64,
    /// How the people were set up.
    pub setup: SetupMode,
    /// Seconds the setup took.
    pub setup_s: f64,
    /// Seconds the sockets took to open.
    pub connect_s: f64,
    /// Seconds measured (plus the drain).
    pub measured_s: f64,
    /// The gateway's and fanout's `/readyz` before the set-up.
    pub ready_before: BTreeMap<String, String>,
    /// Where the JSON is written.
    pub json_path: PathBuf,
    /// Where the plot is written.
    pub plot_path: PathBuf,
}

/// A started window: the socket tasks, the way to hand them reports, and their stop.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) shared: Arc<Shared>,
    /// Per person, the sender to their writer (`None`: no socket).
    pub(crate) report_tx: Vec<Option<mpsc::UnboundedSender<Report>>>,
    pub(crate) tasks: SocketTasks,
    /// Turned true to end every socket task.
    pub(crate) stop_tx: watch::Sender<bool>,
    pub(crate) stop_rx: watch::Receiver<bool>,
    /// When the window started, and the same in epoch ms.
    pub(crate) started: Instant,
    pub(crate) started_at_ms: i64,
}

impl Session {
    /// The result's header: this session's set-up and readiness (taken), the window's start
    /// and length, and the files `<out>/<scenario>-<start s>.{json,svg}` (the folder made).
    pub(crate) fn header(
        &mut self,
        scenario: &str,
        parameters: serde_json::Value,
        started_at_ms: i64,
        measured_s: f64,
    ) -> anyhow::Result<Header> {
        let out = &self.out;
        std::fs::create_dir_all(out)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
        let stem = format!("{scenario}-{}", started_at_ms / 1000);
        Ok(Header {
            scenario: scenario.to_owned(),
            parameters,
            started_at_ms,
            setup: self.mode,
            setup_s: self.setup_s,
            connect_s: self.connect_s,
            measured_s,
            ready_before: std::mem::take(&mut self.ready_before),
            json_path: out.join(format!("{stem}.json")),
            plot_path: out.join(format!("{stem}.svg")),
        })
    }

    /// Builds the city of `args`, creates its people and friendships, finds the stages and
    /// opens one socket per person.
    #[allow(clippy::cast_possible_wrap)]
    pub(crate) async fn open(args: &SessionArgs) -> anyhow::Result<Self> {
        let ready_before = ready_before(args).await?;
        let city = City::new(&args.city);
        let n = city.len();
        let base = net::user_base();
        let ids: Vec<i64> = (0..n).map(|i| base + i as i64).collect();
        let tokens: Vec<String> = ids
            .iter()
            .map(|&id| net::token(&args.jwt_secret, id, setup::TOKEN_TTL))
            .collect();
        let pairs = setup::pairs(&city);
        let mode = setup::resolve(args.setup, pairs.len(), n);
        eprintln!(
            "loadgen: {n} people, {} friend pairs ({:.1} each), {:.0} % of pairs within 5 miles; setup {mode:?}",
            pairs.len(),
            city.mean_degree(),
            100.0 * city.share_within(nearby_common::geo::NEARBY_RADIUS_M)
        );
        let setup_started = Instant::now();
        set_up(args, mode, &ids, &tokens, &pairs).await?;
        let setup_s = setup_started.elapsed().as_secs_f64();

        // Costs: where the stages are, and the gateway's memory before the sockets.
        let mut meter = CostMeter::new(args);
        let soft = procfs::raise_nofile(n as u64 + 1_024);
        if soft < n as u64 + 100 {
            eprintln!("loadgen: warning: open-file limit {soft} is under {n} sockets");
        }

        let connect_started = Instant::now();
        let sockets = clients::connect_all(args, &tokens).await;
        let connected = sockets.iter().filter(|s| s.is_some()).count();
        let connect_s = connect_started.elapsed().as_secs_f64();
        // The gateway registers a socket once its `connected` event is in Kafka: let it settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        meter.on_connected();
        Ok(Self {
            city,
            base,
            mode,
            setup_s,
            friend_pairs: pairs.len(),
            connected,
            connect_s,
            sockets,
            meter,
            ready_before,
            out: args.out.clone(),
        })
    }

    /// People in the city.
    pub(crate) fn people(&self) -> usize {
        self.city.len()
    }

    /// Starts the measured window now: the cost meter's start readings, then a reader and a
    /// writer per socket counting reports per second over `seconds` seconds. With `live`, the
    /// readers hand their samples to [`Shared::take_live`] instead of keeping them.
    pub(crate) fn start(&mut self, seconds: usize, live: bool) -> Started {
        let mut shared = Shared::new(self.base, self.people(), seconds, live);
        self.meter.on_start();
        let started = Instant::now();
        let started_at_ms = net::now_us() / 1000;
        // t0 is fixed now, before any socket task starts: they all count seconds from the same
        // one.
        shared.t0_us = started_at_ms * 1000;
        let shared = Arc::new(shared);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (report_tx, tasks) =
            clients::spawn(std::mem::take(&mut self.sockets), &shared, &stop_rx);
        Started {
            shared,
            report_tx,
            tasks,
            stop_tx,
            stop_rx,
            started,
            started_at_ms,
        }
    }
}

/// The gateway's and fanout's `/readyz` before the run, for those with an admin address.
async fn ready_before(args: &SessionArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut ready = BTreeMap::new();
    for (what, addr) in [
        ("gateway", args.gateway_admin.0),
        ("fanout", args.fanout_admin.0),
    ] {
        if let Some(addr) = addr {
            ready.insert(what.to_owned(), net::ready(addr, what).await?);
        }
    }
    Ok(ready)
}

/// Creates the people (`ids`, with their `tokens`) and their friendships (`pairs`), through the
/// gateway's API or straight into the store as `mode` says.
async fn set_up(
    args: &SessionArgs,
    mode: SetupMode,
    ids: &[i64],
    tokens: &[String],
    pairs: &[(usize, usize)],
) -> anyhow::Result<()> {
    let pb = bar(
        args.no_progress,
        0,
        "setup   {bar:40} {pos}/{len} {elapsed}",
    );
    match mode {
        SetupMode::Api | SetupMode::Auto => {
            setup::via_api(
                args.gateway,
                tokens,
                ids,
                pairs,
                args.setup_concurrency,
                &pb,
            )
            .await?;
        }
        SetupMode::Bulk => {
            setup::via_store(
                &args.stack.cql_nodes,
                &args.stack.cql_keyspace,
                ids,
                pairs,
                args.setup_concurrency,
                &pb,
            )
            .await?;
        }
    }
    pb.finish_and_clear();
    Ok(())
}
