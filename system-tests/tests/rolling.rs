//! A rolling restart of every stage, one process at a time, while 100 clients report every
//! second, on the real stack: two history sinks, two fanout instances and two gateways, each a
//! real process of its binary, stopped with SIGTERM (a gateway's SIGTERM drains it) and started
//! again. Clients see at most a `reconnect` (no error, no close without one), friends keep
//! seeing each other, and the history table holds every report the clients sent, exactly once.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nearby_testkit::pipeline::*;
use nearby_testkit::process::System;
use nearby_testkit::{now_ms, token, user};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const PAIRS: usize = 50;
/// Each client reports this often.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Load between two restarts.
const SETTLE: Duration = Duration::from_secs(4);

/// The load balancer in front of the gateways: hands out the live ones in turn.
#[derive(Default)]
struct Balancer {
    live: Mutex<Vec<SocketAddr>>,
    turn: AtomicUsize,
}

impl Balancer {
    fn pick(&self, not: Option<SocketAddr>) -> Option<SocketAddr> {
        let live = self.live.lock().expect("lock");
        let choices: Vec<_> = live.iter().filter(|a| Some(**a) != not).collect();
        let i = self.turn.fetch_add(1, Ordering::Relaxed);
        choices.get(i % choices.len().max(1)).map(|a| **a)
    }
    fn set(&self, addrs: &[SocketAddr]) {
        *self.live.lock().expect("lock") = addrs.to_vec();
    }
}

/// What one client saw and did.
#[derive(Debug, Default)]
struct Outcome {
    user: i64,
    sent: Vec<i64>,
    reconnects: usize,
    /// (restart under way, when) of each time the friend showed.
    sightings: Vec<(usize, Instant)>,
    unexpected: Vec<String>,
}

/// A client as the contract asks: report every second, follow `reconnect` to the next gateway
/// the balancer gives, until `stop`.
async fn client(
    me: i64,
    friend: i64,
    at: (f64, f64),
    first: SocketAddr,
    balancer: Arc<Balancer>,
    phase: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> Outcome {
    let mut out = Outcome {
        user: me,
        ..Outcome::default()
    };
    let mut addr = first;
    'sessions: loop {
        let url = format!("ws://{addr}/v1/ws?access_token={}", token(me));
        let mut ws = match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                // A gateway that began draining after the balancer gave it out: 503, try the
                // next one (what a client does with a 503 `draining`).
                out.unexpected.push(format!("connect to {addr}: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                addr = balancer.pick(Some(addr)).expect("a live gateway");
                continue;
            }
        };
        let mut tick = tokio::time::interval(REPORT_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let _ = ws.close(None).await;
                    break 'sessions;
                }
                _ = tick.tick() => {
                    let ts = now_ms();
                    let frame = json!({"type": "location", "lat": at.0, "lon": at.1, "ts": ts});
                    if ws.send(Message::text(frame.to_string())).await.is_err() {
                        out.unexpected.push("send failed".into());
                    } else {
                        out.sent.push(ts);
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).expect("JSON frame");
                        if shows(&v, friend) {
                            out.sightings.push((phase.load(Ordering::Relaxed), Instant::now()));
                        }
                        match v["type"].as_str() {
                            Some("reconnect") => {
                                out.reconnects += 1;
                                let _ = ws.close(None).await;
                                while let Some(Ok(_)) = ws.next().await {}
                                addr = balancer.pick(Some(addr)).expect("a live gateway");
                                continue 'sessions;
                            }
                            Some("error") => out.unexpected.push(v.to_string()),
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    other => {
                        out.unexpected.push(format!("closed without reconnect: {other:?}"));
                        addr = balancer.pick(Some(addr)).expect("a live gateway");
                        continue 'sessions;
                    }
                },
            }
        }
    }
    out
}

/// A gateway's drain: the window and the grace it gives clients.
const DRAIN_WINDOW_S: u64 = 2;
const DRAIN_GRACE_S: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_of_every_stage_costs_clients_at_most_a_reconnect_and_history_nothing() {
    let system = System::new().await;
    let drain = [
        format!("--drain-window={DRAIN_WINDOW_S}s"),
        format!("--drain-grace={DRAIN_GRACE_S}s"),
    ];
    // The first gateway creates the user store's tables before the others start.
    let mut gateways = vec![system.gateway("gw-1", &drain).await];
    gateways.push(system.gateway("gw-2", &drain).await);
    let mut fanouts = vec![system.fanout().await, system.fanout().await];
    let mut sinks = vec![system.sink().await, system.sink().await];
    let balancer = Arc::new(Balancer::default());
    balancer.set(&[gateways[0].1, gateways[1].1]);

    let pairs: Vec<(i64, i64)> = (0..PAIRS).map(|_| (user(), user())).collect();
    for &(a, b) in &pairs {
        befriend_at(gateways[0].1, a, b).await;
    }
    let started_ms = now_ms();
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let mut clients = Vec::new();
    for (i, &(a, b)) in pairs.iter().enumerate() {
        let spot = north(100.0 * i as f64);
        // The two of a pair on different gateways.
        for (me, friend, gw) in [(a, b, 0), (b, a, 1)] {
            clients.push(tokio::spawn(client(
                me,
                friend,
                spot,
                gateways[gw].1,
                balancer.clone(),
                phase.clone(),
                stop.clone(),
            )));
        }
    }
    tokio::time::sleep(SETTLE).await;

    // Each stop is a SIGTERM and must end in a clean exit within its bound.
    let stop_within = Duration::from_secs(15);
    let mut steps = vec!["steady"];
    // History sinks, one at a time.
    for i in 0..2 {
        steps.push("history sink restart");
        phase.store(steps.len() - 1, Ordering::Relaxed);
        sinks.remove(i).terminate(stop_within).await;
        sinks.insert(i, system.sink().await);
        tokio::time::sleep(SETTLE).await;
    }
    // Fanout instances, one at a time; each new one is ready once its table is rebuilt and it
    // has joined the group.
    for i in 0..2 {
        steps.push("fanout restart");
        phase.store(steps.len() - 1, Ordering::Relaxed);
        fanouts.remove(i).terminate(stop_within).await;
        fanouts.insert(i, system.fanout().await);
        tokio::time::sleep(SETTLE).await;
    }
    // Gateways, one at a time: out of the balancer, SIGTERM (a drain), started again under its
    // id once it has exited.
    for (i, id) in ["gw-1", "gw-2"].into_iter().enumerate() {
        steps.push("gateway restart");
        phase.store(steps.len() - 1, Ordering::Relaxed);
        balancer.set(&[gateways[1 - i].1]);
        let (old, _) = gateways.remove(i);
        old.terminate(Duration::from_secs(DRAIN_WINDOW_S + DRAIN_GRACE_S + 10))
            .await;
        gateways.insert(i, system.gateway(id, &drain).await);
        balancer.set(&[gateways[0].1, gateways[1].1]);
        tokio::time::sleep(SETTLE).await;
    }
    steps.push("after");
    phase.store(steps.len() - 1, Ordering::Relaxed);
    let after = Instant::now();
    tokio::time::sleep(SETTLE).await;
    stop.cancel();
    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(c.await.expect("client"));
    }

    let mut longest: HashMap<usize, Duration> = HashMap::new();
    let mut total_reconnects = 0;
    for o in &outcomes {
        assert_nothing_unexpected(o.user, &o.unexpected);
        // One reconnect per gateway restart at most (a client moved off gw-1 may be on gw-2
        // when that one restarts).
        assert!(
            o.reconnects <= 2,
            "user {}: {} reconnects",
            o.user,
            o.reconnects
        );
        total_reconnects += o.reconnects;
        assert!(
            o.sightings.iter().any(|(_, t)| *t >= after),
            "user {} does not see its friend after the restarts",
            o.user
        );
        for w in o.sightings.windows(2) {
            let gap = w[1].1 - w[0].1;
            let e = longest.entry(w[1].0).or_default();
            *e = (*e).max(gap);
        }
    }
    let report: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{s}: {:?}", longest.get(&i).copied().unwrap_or_default()))
        .collect();
    eprintln!(
        "rolling restart, {} clients reporting every {REPORT_EVERY:?}: {total_reconnects} \
         reconnects; longest time a client went without its friend's position, by step: {}",
        outcomes.len(),
        report.join("; ")
    );

    // History: every report, exactly once (the table's key makes a replayed row the same row;
    // the count shows nothing is missing and nothing foreign is there).
    let nodes = nearby_testkit::cql_nodes();
    let history = nearby_common::history::HistoryStore::new(
        nearby_common::cql::connect(&nodes).await.expect("cql"),
        &system.keyspace,
    )
    .await
    .expect("history store");
    let deadline = Instant::now() + Duration::from_secs(60);
    for o in &outcomes {
        let want: BTreeSet<i64> = o.sent.iter().copied().collect();
        assert_eq!(want.len(), o.sent.len(), "distinct ts per user");
        loop {
            let rows = history
                .range(o.user, started_ms - 60_000, now_ms() + 60_000, 10_000)
                .await
                .expect("history read");
            let got: Vec<i64> = rows.iter().map(|r| r.ts).collect();
            let got_set: BTreeSet<i64> = got.iter().copied().collect();
            if got_set == want && got.len() == want.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "user {}: history holds {} rows, {} reports sent; missing {:?}, extra {:?}",
                o.user,
                got.len(),
                want.len(),
                want.difference(&got_set).take(5).collect::<Vec<_>>(),
                got_set.difference(&want).take(5).collect::<Vec<_>>(),
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    for p in sinks.into_iter().chain(fanouts) {
        p.terminate(stop_within).await;
    }
    for (g, _) in gateways {
        g.terminate(Duration::from_secs(DRAIN_WINDOW_S + DRAIN_GRACE_S + 10))
            .await;
    }
}
