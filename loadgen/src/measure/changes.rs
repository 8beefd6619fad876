//! `measure changes`: change-to-socket latency. P friend pairs in range; C times, one pair's
//! sender unfriends the receiver (or turns sharing off); a sample is when the receiver got
//! `friend_left` − when the HTTP call returned. Each change is undone (befriend again, sharing
//! on) and the friend's return timed the same way. One change at a time, each waiting for its
//! effect, so the samples do not queue behind each other.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use nearby_common::clock::now_us;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::pairs::{Arrival, next_of, setup_pair};
use super::{Stats, Target, stats, stats_json};
use crate::net;

/// How far apart each pair stands, metres (in range).
const DISTANCE_M: f64 = 300.0;

/// The flags of `measure changes`.
#[derive(Debug, Clone, Args)]
pub struct ChangesArgs {
    /// Friend pairs to take turns (each change waits for its effect before the next).
    #[arg(long, default_value_t = 20)]
    pairs: usize,
    /// Changes that end visibility (half unfriend, half sharing off), each undone after.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Seconds to wait for an effect before counting it missing.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
}

/// Waits for the frame of `kind` about `friend` on `rx`; its arrival time (epoch µs).
async fn arrival_of(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    kind: &str,
    friend: i64,
    within: Duration,
) -> Option<(i64, Value)> {
    let id = friend.to_string();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (at, v) = next_of(rx, kind, left, |_| {}).await?;
        if v["user_id"].as_str() == Some(id.as_str()) {
            return Some((at, v));
        }
    }
}

/// A call that must answer 200, timed: (start, return) in epoch µs.
async fn timed_call(
    target: &Target,
    user: i64,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(i64, i64)> {
    let start = now_us();
    let (status, answer) = net::http(
        target.gateway,
        method,
        path,
        Some(&target.token(user)),
        body,
    )
    .await?;
    let returned = now_us();
    if status != 200 {
        bail!("{method} {path}: {status} {answer}");
    }
    Ok((start, returned))
}

/// Sets up the pairs, makes and undoes the changes one at a time, and prints the latencies.
#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
pub(super) async fn changes(target: &Target, args: &ChangesArgs) -> anyhow::Result<()> {
    let gw_ready = net::ready(target.gateway_admin, "the gateway").await?;
    let fanout_ready = net::ready(target.fanout_admin, "the fanout").await?;
    let base = net::user_base();
    let mut pairs = Vec::new();
    for i in 0..args.pairs.max(1) {
        let sender = base + 2 * i as i64;
        let pair = setup_pair(target, sender, sender + 1, DISTANCE_M, args.timeout_secs);
        pairs.push(pair.await?);
    }
    if !args.json {
        println!(
            "changes: {} changes over {} pairs, one at a time, via {}",
            args.changes, args.pairs, target.gateway
        );
        println!("  gateway: {gw_ready}; fanout: {fanout_ready}");
    }
    let within = Duration::from_secs(args.timeout_secs);
    let (mut left_after_return, mut left_after_start) = (Vec::new(), Vec::new());
    let mut back_after_return = Vec::new();
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut missing = 0usize;
    for k in 0..args.changes {
        let n = pairs.len();
        let pair = &mut pairs[k % n];
        let (sender, receiver) = (pair.sender, pair.sender + 1);
        let unfriend = k % 2 == 0;
        let (start, returned) = if unfriend {
            let path = format!("/v1/me/friends/{receiver}");
            timed_call(target, sender, "DELETE", &path, "").await?
        } else {
            let body = r#"{"enabled": false}"#;
            timed_call(target, sender, "PUT", "/v1/me/sharing", body).await?
        };
        let reason = if unfriend {
            "unfriended"
        } else {
            "sharing_off"
        };
        match arrival_of(&mut pair.receiver_rx, "friend_left", sender, within).await {
            Some((at, v)) if v["reason"] == reason => {
                let ms = (at - returned) as f64 / 1000.0;
                left_after_return.push(ms);
                left_after_start.push((at - start) as f64 / 1000.0);
                by_kind.entry(reason).or_default().push(ms);
            }
            _ => missing += 1,
        }
        // Undo it, and time the friend coming back the same way.
        let (_, returned) = if unfriend {
            let path = format!("/v1/me/friends/{receiver}");
            timed_call(target, sender, "PUT", &path, "").await?;
            let path = format!("/v1/me/friends/{sender}");
            timed_call(target, receiver, "PUT", &path, "").await?
        } else {
            let body = r#"{"enabled": true}"#;
            timed_call(target, sender, "PUT", "/v1/me/sharing", body).await?
        };
        match arrival_of(&mut pair.receiver_rx, "friend_location", sender, within).await {
            Some((at, _)) => back_after_return.push((at - returned) as f64 / 1000.0),
            None => missing += 1,
        }
        // The sender's own socket gets its side too; drop what it holds.
        while pair.sender_rx.try_recv().is_ok() {}
    }
    let left = stats(left_after_return);
    let left_start = stats(left_after_start);
    let back = stats(back_after_return);
    if args.json {
        let kinds: serde_json::Map<String, Value> = by_kind
            .into_iter()
            .map(|(k, v)| (k.to_owned(), stats_json(&stats(v))))
            .collect();
        println!(
            "{}",
            json!({
                "mode": "changes",
                "pairs": args.pairs,
                "changes": args.changes,
                "missing": missing,
                "friend_left_after_return": stats_json(&left),
                "friend_left_after_call_start": stats_json(&left_start),
                "friend_left_by_reason": kinds,
                "friend_back_after_return": stats_json(&back),
            })
        );
        return Ok(());
    }
    let line = |name: &str, s: &Stats| {
        println!(
            "  {name}: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms  (min {:.2}, count {})",
            s.p50, s.p90, s.p99, s.max, s.min, s.count
        );
    };
    println!("  {missing} effects missing");
    line("friend_left after the call returned", &left);
    line("friend_left after the call started ", &left_start);
    for (reason, samples) in by_kind {
        line(&format!("  of which {reason:<11}"), &stats(samples));
    }
    line("friend back after the undo returned", &back);
    Ok(())
}
