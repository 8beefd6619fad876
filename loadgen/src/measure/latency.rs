//! `measure latency`: report-to-friend latency through gateway → Kafka → fanout → Kafka →
//! gateway. P friend pairs a few hundred metres apart; each sender reports R times, the senders
//! spread evenly over one interval; a sample is when the receiver's socket got the
//! `friend_location` − when the report was sent.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use clap::Args;
use futures::{SinkExt, StreamExt};
use nearby_common::clock::now_us;
use nearby_common::procfs::machine_ticks;
use nearby_common::stack::StackArgs;
use serde_json::{Value, json};

use super::hops::HopReader;
use super::pairs::{Arrival, Pair, location, north, setup_pair};
use super::{Target, busy_percent, stats, stats_json};
use crate::net;

/// The flags of `measure latency`.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    /// Friend pairs (each a sender and a receiver).
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// Reports per sender.
    #[arg(long, default_value_t = 20)]
    reports: usize,
    /// Milliseconds between one sender's reports (the default limit is 1 report/s, burst 10).
    #[arg(long, default_value_t = 1100)]
    interval_ms: u64,
    /// How far apart the pair stands, metres (in range: under 5 miles).
    #[arg(long, default_value_t = 300.0)]
    distance_m: f64,
    /// Seconds to wait for a delivery before counting it missing.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Pairs set up (friendship, sockets, first positions) at once.
    #[arg(long, default_value_t = 10)]
    setup_concurrency: usize,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// Also split each sample in three (client → gateway; → fanout's delivery produced; → the
    /// receiver's socket), from the records of the location and delivery topics of the system
    /// the stack flags name.
    #[arg(long)]
    hops: bool,
    /// The stack (Kafka and the topic prefix, for `--hops`).
    #[command(flatten)]
    stack: StackArgs,
}

/// What one pair measured.
#[derive(Debug, Default)]
struct PairResult {
    sender: i64,
    /// Per report received: (ts, send time µs, receive time µs); the latencies come from these.
    samples: Vec<(i64, i64, i64)>,
    sent: usize,
    send_failed: usize,
    duplicates: usize,
    /// `error` frames the sender got, by code.
    errors: BTreeMap<String, usize>,
}

/// One pair's reports from `start_at` on, every `--interval-ms`, and their deliveries.
#[allow(clippy::cast_precision_loss)]
async fn run_pair(
    mut pair: Pair,
    args: &LatencyArgs,
    start_at: tokio::time::Instant,
) -> PairResult {
    let mut result = PairResult {
        sender: pair.sender,
        ..PairResult::default()
    };
    let interval = Duration::from_millis(args.interval_ms);
    // ts (ms) → exact send time (µs).
    let mut sent: HashMap<i64, i64> = HashMap::new();
    let mut got: HashMap<i64, i64> = HashMap::new();
    let sender_id = pair.sender.to_string();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut count_error = |v: &Value| {
        if v["type"] == "error" {
            let code = v["code"].as_str().unwrap_or("?").to_owned();
            *errors.entry(code).or_default() += 1;
        }
    };
    let on_receiver = |(at, v): Arrival, got: &mut HashMap<i64, i64>, dup: &mut usize| {
        if v["type"] == "friend_location"
            && v["user_id"].as_str() == Some(sender_id.as_str())
            && let Some(ts) = v["updated_at"].as_i64()
            && got.insert(ts, at).is_some()
        {
            *dup += 1;
        }
    };
    let mut duplicates = 0;
    let mut tick = tokio::time::interval_at(start_at, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..args.reports {
        // Wait for the next tick while taking in what arrives.
        let mut ticked = std::pin::pin!(tick.tick());
        loop {
            tokio::select! {
                _ = &mut ticked => break,
                Some(a) = pair.receiver_rx.recv() => on_receiver(a, &mut got, &mut duplicates),
                Some((_, v)) = pair.sender_rx.recv() => count_error(&v),
            }
        }
        // A little movement each time (alternating 0/1 m), within range.
        let at = north(args.distance_m + (i % 2) as f64);
        let send_us = now_us();
        let ts = send_us.div_euclid(1000);
        if pair.tx.send(location(at, ts)).await.is_ok() {
            sent.insert(ts, send_us);
            result.sent += 1;
        } else {
            result.send_failed += 1;
        }
    }
    // Wait for the rest, up to the timeout after the last send.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    while sent.keys().any(|ts| !got.contains_key(ts)) {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            a = pair.receiver_rx.recv() => match a {
                Some(a) => on_receiver(a, &mut got, &mut duplicates),
                None => break,
            },
            Some((_, v)) = pair.sender_rx.recv() => count_error(&v),
        }
    }
    while let Ok((_, v)) = pair.sender_rx.try_recv() {
        count_error(&v);
    }
    for (ts, send_us) in &sent {
        if let Some(at) = got.get(ts) {
            result.samples.push((*ts, *send_us, *at));
        }
    }
    result.duplicates = duplicates;
    result.errors = errors;
    let _ = pair.tx.close().await;
    result
}

/// Sets up the pairs, runs them all at once and prints the latencies.
#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
pub(super) async fn latency(target: &Target, args: &LatencyArgs) -> anyhow::Result<()> {
    let gw_ready = net::ready(target.gateway_admin, "the gateway").await?;
    let fanout_ready = net::ready(target.fanout_admin, "the fanout").await?;
    if args.interval_ms < 1000 {
        eprintln!(
            "measure: warning: {} ms between reports is over the default limit of 1 report/s \
             (burst 10): start the gateway with a higher NEARBY_INGEST_RATE_PER_SEC",
            args.interval_ms
        );
    }
    if !args.json {
        println!(
            "latency: {} pairs × {} reports every {} ms, {} m apart, via {}",
            args.pairs, args.reports, args.interval_ms, args.distance_m, target.gateway
        );
        println!("  gateway: {gw_ready}; fanout: {fanout_ready}");
    }

    // Set up: friendships, sockets, first positions, and one delivery each way; a few pairs at
    // once, so the set-up does not itself load the system being measured.
    let base = net::user_base();
    let setup_started = Instant::now();
    let setups: Vec<(usize, anyhow::Result<Pair>)> = futures::stream::iter(0..args.pairs)
        .map(|i| {
            let sender = base + 2 * i as i64;
            async move {
                let pair = setup_pair(
                    target,
                    sender,
                    sender + 1,
                    args.distance_m,
                    args.timeout_secs,
                );
                (i, pair.await)
            }
        })
        .buffer_unordered(args.setup_concurrency.max(1))
        .collect()
        .await;
    let mut pairs = Vec::new();
    let mut setup_errors: BTreeMap<String, usize> = BTreeMap::new();
    for (_, r) in setups {
        match r {
            Ok(p) => pairs.push(p),
            Err(e) => *setup_errors.entry(format!("{e:#}")).or_default() += 1,
        }
    }
    if !args.json {
        println!(
            "  set up {}/{} pairs in {:.1} s",
            pairs.len(),
            args.pairs,
            setup_started.elapsed().as_secs_f64()
        );
        for (e, c) in &setup_errors {
            println!("    {c} × {e}");
        }
    }

    // Measure: the senders' reports spread evenly over one interval.
    let interval = Duration::from_millis(args.interval_ms);
    let t0 = tokio::time::Instant::now() + Duration::from_millis(500);
    let pairs_ok = pairs.len();
    let n_pairs = pairs_ok.max(1) as u32;
    let hop_reader = if args.hops {
        let senders = pairs.iter().map(|p| p.sender).collect();
        Some(HopReader::start(&args.stack, senders)?)
    } else {
        None
    };
    let measuring = Instant::now();
    let machine0 = machine_ticks();
    let tasks: Vec<_> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, pair)| {
            let start_at = t0 + interval * (i as u32) / n_pairs;
            let args = args.clone();
            tokio::spawn(async move { run_pair(pair, &args, start_at).await })
        })
        .collect();
    let (mut sent, mut send_failed, mut duplicates) = (0, 0, 0);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples: Vec<(i64, i64, i64, i64)> = Vec::new();
    for task in tasks {
        let r = task.await?;
        samples.extend(r.samples.iter().map(|&(ts, s, a)| (r.sender, ts, s, a)));
        sent += r.sent;
        send_failed += r.send_failed;
        duplicates += r.duplicates;
        for (code, c) in r.errors {
            *errors.entry(code).or_default() += c;
        }
    }
    let busy = busy_percent(machine0);
    let hops = match hop_reader {
        Some(reader) => {
            let noted = reader.finish().await;
            let mut split: [Vec<f64>; 3] = Default::default();
            for &(sender, ts, send_us, at_us) in &samples {
                if let Some(h) = noted.split(sender, ts, send_us, at_us) {
                    for (v, x) in split.iter_mut().zip(h) {
                        v.push(x);
                    }
                }
            }
            Some(split.map(stats))
        }
        None => None,
    };
    let wanted = args.pairs * args.reports;
    let missing = wanted - samples.len();
    let missing_of_sent = sent - samples.len();
    // Receive − the exact send time the `ts` was taken from; and receive wall time −
    // `updated_at` (whole ms).
    let s = stats(
        samples
            .iter()
            .map(|&(_, _, send_us, at)| (at - send_us) as f64 / 1000.0)
            .collect(),
    );
    let u = stats(
        samples
            .iter()
            .map(|&(_, ts, _, at)| (at - ts * 1000) as f64 / 1000.0)
            .collect(),
    );

    if args.json {
        let summary = json!({
            "mode": "latency",
            "pairs": args.pairs,
            "pairs_set_up": pairs_ok,
            "reports_per_pair": args.reports,
            "interval_ms": args.interval_ms,
            "wanted": wanted,
            "sent": sent,
            "send_failed": send_failed,
            "missing": missing,
            "missing_of_sent": missing_of_sent,
            "duplicates": duplicates,
            "sender_errors": errors,
            "setup_errors": setup_errors,
            "latency": stats_json(&s),
            "latency_by_updated_at": stats_json(&u),
            "seconds": measuring.elapsed().as_secs_f64(),
            "machine_busy": busy,
            "hops": hops.as_ref().map(|h| json!({
                "client_to_gateway": stats_json(&h[0]),
                "gateway_to_fanout_produced": stats_json(&h[1]),
                "fanout_produced_to_receiver": stats_json(&h[2]),
            })),
        });
        println!("{summary}");
        return Ok(());
    }
    println!(
        "  measured in {:.1} s (machine {busy} busy): {} samples of {wanted} wanted ({sent} sent, {send_failed} send failures), {missing} missing ({missing_of_sent} of those sent), {duplicates} duplicates",
        measuring.elapsed().as_secs_f64(),
        s.count
    );
    if !errors.is_empty() {
        println!("  error frames the senders got: {errors:?}");
    }
    println!(
        "  latency (ms, receive − send): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (min {:.2}, mean {:.2}, count {})",
        s.p50, s.p90, s.p99, s.max, s.min, s.mean, s.count
    );
    println!(
        "  latency (ms, receive − updated_at): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (count {})",
        u.p50, u.p90, u.p99, u.max, u.count
    );
    for (label, h) in hops.iter().flat_map(|h| {
        [
            ("client → gateway received", &h[0]),
            ("gateway received → fanout's delivery produced", &h[1]),
            ("fanout's delivery produced → receiver's socket", &h[2]),
        ]
    }) {
        println!(
            "  hop {label} (ms): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (mean {:.2}, count {})",
            h.p50, h.p90, h.p99, h.max, h.mean, h.count
        );
    }
    Ok(())
}
