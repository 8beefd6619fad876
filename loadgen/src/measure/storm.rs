//! `measure storm`: a reconnect storm, as after a gateway's loss. N sockets connect at once (as
//! many handshakes in flight as `--concurrency`), each reports a position and waits for its
//! first `nearby` page; the time until all are connected and until the last page, the page
//! times' percentiles (from the storm's start) and every failure by kind are reported.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

use super::{Target, stats, stats_json};
use crate::net;

/// The flags of `measure storm`.
#[derive(Debug, Args)]
pub struct StormArgs {
    /// How many sockets connect.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Handshakes in flight at once (the listen backlog of a gateway is 4,096 by default).
    #[arg(long, default_value_t = 2_000)]
    pub concurrency: usize,
    /// The first client source address; the next ones follow (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, default_value = "127.0.0.2")]
    pub first_source: Ipv4Addr,
    /// Sockets per source address (under a gateway's `NEARBY_CONNECT_RATE_BURST`, 200).
    #[arg(long, default_value_t = 100)]
    pub per_source: usize,
    /// How long a socket waits for its first page.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub page_timeout: Duration,
    /// Print a JSON summary as well.
    #[arg(long)]
    pub json: bool,
}

/// What became of one socket: when it was connected and when its page came (from the storm's
/// start), or how it failed.
type Outcome = Result<(Duration, Duration), String>;

/// A failure's kind: an HTTP answer to the upgrade by status and error code, or the step.
fn kind(e: &anyhow::Error) -> String {
    if let Some(tungstenite::Error::Http(response)) = e.downcast_ref::<tungstenite::Error>() {
        let body = response
            .body()
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let code = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return format!("http {} {code}", response.status().as_u16());
    }
    format!("{e:#}")
}

/// One socket of the storm: connects, reports a position, waits for its first page. The socket
/// is returned, open, so that every page is served while all the others are still connected.
async fn one(
    target: &Target,
    args: &StormArgs,
    i: usize,
    base: i64,
    started: Instant,
) -> (Outcome, Option<net::Ws>) {
    let source = net::source_for(args.first_source, args.per_source, i);
    let token = target.token(base + i as i64);
    let mut ws = match net::connect_from(source, target.gateway, &token).await {
        Ok(ws) => ws,
        Err(e) => return (Err(kind(&e)), None),
    };
    let connected = started.elapsed();
    // Spread over a few kilometres, so pages are read from many cells.
    let (lat, lon) = (
        37.7 + (i % 100) as f64 * 0.001,
        -122.4 - (i / 100) as f64 * 0.0001,
    );
    let report = json!({"type": "location", "lat": lat, "lon": lon,
        "ts": nearby_common::clock::now_ms()});
    if ws.send(Message::text(report.to_string())).await.is_err() {
        return (Err("report not sent".into()), None);
    }
    let page = tokio::time::timeout(args.page_timeout, async {
        while let Some(msg) = ws.next().await {
            let Ok(Message::Text(text)) = msg else {
                if msg.is_err() {
                    return Err("socket broke".to_owned());
                }
                continue;
            };
            let frame: Value = serde_json::from_str(&text).unwrap_or_default();
            match frame["type"].as_str() {
                Some("nearby") => return Ok(()),
                Some("error") => return Err(format!("error frame {}", frame["code"])),
                _ => {}
            }
        }
        Err("closed before its page".to_owned())
    })
    .await;
    match page {
        Ok(Ok(())) => (Ok((connected, started.elapsed())), Some(ws)),
        Ok(Err(e)) => (Err(e), None),
        Err(_) => (Err("no page in time".into()), None),
    }
}

/// Runs the storm; prints what it measured (and returns it as JSON).
#[allow(clippy::cast_precision_loss)]
pub async fn storm(target: &Target, args: &StormArgs) -> anyhow::Result<Value> {
    let n = args.connections;
    let _ = nearby_common::procfs::raise_nofile(n as u64 + 1024);
    println!(
        "storm: {n} sockets to {}, {} handshakes in flight, {} a source address",
        target.gateway, args.concurrency, args.per_source
    );
    println!(
        "  gateway: {}",
        net::ready(target.gateway_admin, "the gateway").await?
    );
    let base = net::user_base();
    let started = Instant::now();
    let outcomes: Vec<(Outcome, Option<net::Ws>)> = futures::stream::iter(0..n)
        .map(|i| one(target, args, i, base, started))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let (mut connected, mut paged) = (Vec::new(), Vec::new());
    let mut open = Vec::new();
    for (outcome, ws) in outcomes {
        match outcome {
            Ok((c, p)) => {
                connected.push(ms(&c));
                paged.push(ms(&p));
            }
            Err(e) => *errors.entry(e).or_default() += 1,
        }
        open.extend(ws);
    }
    let (connected, paged) = (stats(connected), stats(paged));
    println!(
        "  {} of {n} connected and paged; the last connected after {:.0} ms, the last page after {:.0} ms",
        paged.count, connected.max, paged.max
    );
    println!(
        "  first page (from the storm's start): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms",
        paged.p50, paged.p90, paged.p99
    );
    for (e, count) in &errors {
        println!("    {count} × {e}");
    }
    let closing = open.into_iter().map(|mut ws| async move {
        let _ = ws.close(None).await;
    });
    futures::future::join_all(closing).await;
    let summary = json!({
        "mode": "storm",
        "connections": n,
        "concurrency": args.concurrency,
        "paged": paged.count,
        "connected_ms": stats_json(&connected),
        "first_page_ms": stats_json(&paged),
        "errors": errors,
    });
    if args.json {
        println!("{summary}");
    }
    Ok(summary)
}
