//! `measure idle`: the gateway's memory per idle authenticated connection. Opens N sockets from
//! 127.0.0.2, 127.0.0.3, ..., reads the gateway's VmRSS before and after (and after a hold),
//! then closes them all.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use nearby_common::procfs::{cpu_secs, machine_ticks, nofile, parse_limit, raise_nofile, vm_kib};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Target, busy_percent, gateway_connections};
use crate::net::{self, Ws};

/// The flags of `measure idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// How many sockets to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// The gateway's process id (default: the one process named `nearby-gateway`).
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// The first client source address; the next ones follow (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, default_value = "127.0.0.2")]
    first_source: Ipv4Addr,
    /// Sockets per source address (under a gateway's `NEARBY_CONNECT_RATE_BURST`, 200).
    #[arg(long, default_value_t = 100)]
    per_source: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds to wait, once all are open and registered, before reading the RSS.
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// Seconds to keep them open after the reading (past a ping round: 20 s), then read again.
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
    /// Print a JSON summary as well.
    #[arg(long)]
    json: bool,
}

/// Open file descriptors of a process.
fn open_fds(pid: &str) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The one process named `nearby-gateway`.
fn find_gateway_pid() -> anyhow::Result<u32> {
    nearby_common::procfs::pid_named("nearby-gateway").context("give --gateway-pid")
}

/// KiB as MiB.
#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Counters shared by the idle sockets' tasks.
#[derive(Debug, Default)]
struct IdleStats {
    /// Sockets open right now.
    open: AtomicUsize,
    /// Sockets the server closed or that broke before we closed them.
    lost: AtomicUsize,
    /// Pings the gateway sent (answered by tungstenite while reading).
    pings: AtomicU64,
}

/// Keeps one idle socket: reads it (which answers pings) until told to close.
async fn hold(mut ws: Ws, stop: CancellationToken, stats: Arc<IdleStats>) {
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = ws.close(None).await;
                let drain = async { while let Some(Ok(_)) = ws.next().await {} };
                let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
                break;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Ping(_))) => {
                    stats.pings.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    stats.lost.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

/// Opens, settles, reads, holds and closes the idle sockets; prints what it measured.
#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
pub(super) async fn idle(target: &Target, args: &IdleArgs) -> anyhow::Result<()> {
    let n = args.connections;
    let pid = match args.gateway_pid {
        Some(p) => p,
        None => find_gateway_pid()?,
    }
    .to_string();
    let me = std::process::id().to_string();
    let _ = raise_nofile(n as u64 + 1024);
    let (my_soft, my_hard) = nofile(&me).unwrap_or_default();
    let (gw_soft, gw_hard) = nofile(&pid).unwrap_or_default();
    let last_source = net::source_for(args.first_source, args.per_source, n.saturating_sub(1));
    println!(
        "idle: {n} connections to {} from {}..{} ({} a source), {} handshakes in flight",
        target.gateway, args.first_source, last_source, args.per_source, args.concurrency
    );
    println!(
        "  open-file limit: measure soft {my_soft} hard {my_hard}; gateway (pid {pid}) soft {gw_soft} hard {gw_hard}, {} fds open",
        open_fds(&pid).map_or("?".into(), |c| c.to_string())
    );
    if parse_limit(&gw_soft) < n as u64 + 100 {
        eprintln!(
            "  warning: the gateway's soft open-file limit ({gw_soft}) is under {n} + its own files: \
             start it with a higher `ulimit -n` or `prlimit --pid {pid} --nofile=65536:65536`"
        );
    }
    println!(
        "  gateway: {}",
        net::ready(target.gateway_admin, "the gateway").await?
    );

    let rss_before = vm_kib(&pid, "VmRSS")?;
    let (gw_cpu0, my_cpu0, machine0) = (cpu_secs(&pid), cpu_secs("self"), machine_ticks());
    let base = net::user_base();
    let stop = CancellationToken::new();
    let stats = Arc::new(IdleStats::default());
    let started = Instant::now();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut tasks = Vec::with_capacity(n);
    // Bounded: `concurrency` handshakes at once, so the gateway's backlog never overflows.
    let mut opens = futures::stream::iter(0..n)
        .map(|i| {
            let source = net::source_for(args.first_source, args.per_source, i);
            let token = target.token(base + i as i64);
            let gateway = target.gateway;
            async move { net::connect_from(source, gateway, &token).await }
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(result) = opens.next().await {
        match result {
            Ok(ws) => {
                stats.open.fetch_add(1, Ordering::Relaxed);
                tasks.push(tokio::spawn(hold(ws, stop.clone(), stats.clone())));
            }
            Err(e) => *errors.entry(format!("{e:#}")).or_default() += 1,
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    let opened = tasks.len();
    let cpu_used = |before: Option<f64>, pid: &str| match (before, cpu_secs(pid)) {
        (Some(a), Some(b)) => format!("{:.2} s", b - a),
        _ => "?".to_owned(),
    };
    println!(
        "  opened {opened}/{n} in {open_secs:.2} s ({:.0}/s), {} failed; CPU used meanwhile: gateway {}, this client {}, machine {} busy",
        opened as f64 / open_secs,
        n - opened,
        cpu_used(gw_cpu0, &pid),
        cpu_used(my_cpu0, "self"),
        busy_percent(machine0),
    );
    for (e, count) in &errors {
        println!("    {count} × {e}");
    }

    // Settle: the gateway registers a socket once its `connected` event is in Kafka.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut registered = gateway_connections(target.gateway_admin).await;
    while registered.is_none_or(|c| c < opened) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        registered = gateway_connections(target.gateway_admin).await;
    }
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let registered = gateway_connections(target.gateway_admin).await;
    let rss_after = vm_kib(&pid, "VmRSS")?;
    let gw_fds = open_fds(&pid);
    let still_open = stats.open.load(Ordering::Relaxed);
    let per_conn = if opened == 0 {
        f64::NAN
    } else {
        (rss_after as f64 - rss_before as f64) * 1024.0 / opened as f64
    };
    println!(
        "  after {} s settling: {still_open} open here, gateway counts {}, gateway fds {}",
        args.settle_secs,
        registered.map_or("?".into(), |c| c.to_string()),
        gw_fds.map_or("?".into(), |c| c.to_string())
    );
    println!(
        "  gateway VmRSS before: {rss_before} KiB ({:.1} MiB)",
        mib(rss_before)
    );
    println!(
        "  gateway VmRSS after:  {rss_after} KiB ({:.1} MiB)",
        mib(rss_after)
    );
    println!(
        "  per idle connection:  {per_conn:.0} bytes ({:.2} KiB) = (after − before) / {opened}",
        per_conn / 1024.0
    );
    let my_rss = vm_kib("self", "VmRSS").unwrap_or(0);
    println!(
        "  (this client's own VmRSS: {my_rss} KiB, {:.1} MiB)",
        mib(my_rss)
    );

    let mut held = None;
    if args.hold_secs > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
        let rss_held = vm_kib(&pid, "VmRSS")?;
        let open_now = stats.open.load(Ordering::Relaxed);
        println!(
            "  after {} s more: {open_now} open, {} pings answered, gateway VmRSS {rss_held} KiB ({:.1} MiB, {:.0} bytes/connection)",
            args.hold_secs,
            stats.pings.load(Ordering::Relaxed),
            mib(rss_held),
            (rss_held as f64 - rss_before as f64) * 1024.0 / opened.max(1) as f64
        );
        held = Some((rss_held, open_now));
    }

    let closing = Instant::now();
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let close_secs = closing.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while gateway_connections(target.gateway_admin)
        .await
        .is_some_and(|c| c > 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rss_closed = vm_kib(&pid, "VmRSS")?;
    let lost = stats.lost.load(Ordering::Relaxed);
    println!(
        "  closed all in {close_secs:.2} s ({lost} had been closed by the server or broke); gateway VmRSS after closing: {rss_closed} KiB ({:.1} MiB)",
        mib(rss_closed)
    );

    if args.json {
        let summary = json!({
            "mode": "idle",
            "connections": n,
            "opened": opened,
            "failed": n - opened,
            "open_seconds": open_secs,
            "gateway_pid": pid,
            "gateway_nofile": {"soft": gw_soft, "hard": gw_hard},
            "gateway_registered": registered,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "bytes_per_connection": per_conn,
            "held": held.map(|(rss, open)| json!({"seconds": args.hold_secs, "rss_kib": rss, "open": open})),
            "rss_after_close_kib": rss_closed,
            "lost": lost,
        });
        println!("{summary}");
    }
    Ok(())
}
