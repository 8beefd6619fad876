//! A randomized run on the real stack: people on two gateways make and end friendships, leave
//! requests pending, switch sharing, rename themselves and move; every frame every client gets
//! is checked against the rules (accepted friend, both sharing — at some moment of the round,
//! as a round's changes are made one after another — in range, the friend's real position and
//! name), and after each round each client's own list — built only from the frames it got —
//! must equal exactly what the rules say it should show.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nearby_common::geo::{NEARBY_RADIUS_M, haversine_m};
use nearby_system_tests::{TestGateway, start_fanout, wait_changes};
use nearby_testkit::pipeline::*;
use nearby_testkit::{now_ms, user};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PEOPLE: usize = 16;
const ROUNDS: usize = 14;
/// Pairs this close to the radius may fall either side (positions are quantized): not judged.
const EDGE_M: f64 = 1.0;

type Pair = (i64, i64);

fn pair(a: i64, b: i64) -> Pair {
    (a.min(b), a.max(b))
}

/// What the rules say, kept by the test from the calls it made.
#[derive(Default)]
struct Model {
    accepted: BTreeSet<Pair>,
    /// (asker, asked).
    pending: BTreeSet<Pair>,
    sharing: BTreeMap<i64, bool>,
    /// Current and start-of-round positions.
    at: BTreeMap<i64, (f64, f64)>,
    was_at: BTreeMap<i64, (f64, f64)>,
    name: BTreeMap<i64, String>,
    was_named: BTreeMap<i64, String>,
    /// Pairs that could see each other at some moment of this round (its changes are made one
    /// after another: an accept then a sharing-off may show a pair, then hide it again).
    visible_in_round: BTreeSet<Pair>,
}

impl Model {
    /// Adds the pairs visible now to those visible at some moment of the round.
    fn note_visible(&mut self) {
        let now: Vec<Pair> = self
            .accepted
            .iter()
            .copied()
            .filter(|&(a, b)| self.sharing[&a] && self.sharing[&b])
            .collect();
        self.visible_in_round.extend(now);
    }

    fn visible(&self, r: i64, f: i64) -> bool {
        self.accepted.contains(&pair(r, f)) && self.sharing[&r] && self.sharing[&f]
    }

    /// Who `r` should list now; and the friends too close to the edge to call.
    fn expected(&self, r: i64) -> (BTreeSet<i64>, BTreeSet<i64>) {
        let (mut list, mut edge) = (BTreeSet::new(), BTreeSet::new());
        for &f in self.at.keys() {
            if f == r || !self.visible(r, f) {
                continue;
            }
            let (a, b) = (self.at[&r], self.at[&f]);
            let d = haversine_m(a.0, a.1, b.0, b.1);
            if (d - NEARBY_RADIUS_M).abs() < EDGE_M {
                edge.insert(f);
            } else if d < NEARBY_RADIUS_M {
                list.insert(f);
            }
        }
        (list, edge)
    }

    /// Whether an entry about `f` shown to `r` keeps the rules; `None` if so, else why not.
    fn judge(&self, r: i64, entry: &Value) -> Option<String> {
        let f: i64 = entry["user_id"].as_str()?.parse().ok()?;
        if !self.visible_in_round.contains(&pair(r, f)) {
            return Some(format!(
                "{f} shown to {r}: never accepted friends with sharing on during the round"
            ));
        }
        let (lat, lon) = (entry["lat"].as_f64()?, entry["lon"].as_f64()?);
        let real = [self.at[&f], self.was_at[&f]];
        if !real.iter().any(|p| haversine_m(p.0, p.1, lat, lon) < 1.0) {
            return Some(format!("{f} shown to {r} at a place they never reported"));
        }
        let nearest = [self.at[&r], self.was_at[&r]]
            .iter()
            .map(|p| haversine_m(p.0, p.1, lat, lon))
            .fold(f64::INFINITY, f64::min);
        if nearest > NEARBY_RADIUS_M + EDGE_M {
            return Some(format!("{f} shown to {r} from {nearest:.0} m"));
        }
        let name = entry["name"].as_str()?;
        if name != self.name[&f] && name != self.was_named[&f] {
            return Some(format!("{f} shown to {r} as {name:?}"));
        }
        None
    }
}

/// A place in a 16 km square around HOME.
fn somewhere(rng: &mut StdRng) -> (f64, f64) {
    let (n, e) = (
        rng.random_range(-8_000.0..8_000.0),
        rng.random_range(-8_000.0..8_000.0),
    );
    let lon_scale = HOME.0.to_radians().cos();
    (HOME.0 + n / M_PER_DEG, HOME.1 + e / (M_PER_DEG * lon_scale))
}

/// A walk, a drive or a jump from `from`.
fn moved(rng: &mut StdRng, from: (f64, f64)) -> (f64, f64) {
    let step: f64 = match rng.random_range(0..10) {
        0..6 => 500.0,
        6..9 => 5_000.0,
        _ => return somewhere(rng),
    };
    let lon_scale = HOME.0.to_radians().cos();
    let (n, e) = (rng.random_range(-step..step), rng.random_range(-step..step));
    (from.0 + n / M_PER_DEG, from.1 + e / (M_PER_DEG * lon_scale))
}

#[tokio::test]
async fn random_changes_and_moves_never_break_a_rule() {
    let seed: u64 = std::env::var("NEARBY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (NEARBY_TEST_SEED={seed} repeats this run)");
    let mut rng = StdRng::seed_from_u64(seed);

    let g1 = TestGateway::start(&[]).await;
    let g2 = TestGateway::start_on(&g1.prefix, &g1.keyspace, "gw-b", &[]).await;
    let fanout = start_fanout(&g1.prefix, &g1.keyspace, &[]).await;
    let gws = [&g1, &g2];
    let people: Vec<i64> = (0..PEOPLE).map(|_| user()).collect();
    let home_of = |i: usize| gws[i % 2];

    let mut model = Model::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Value)>();
    let mut sinks = Vec::new();
    for (i, &p) in people.iter().enumerate() {
        let name = format!("p{i}");
        let (status, _) = home_of(i)
            .call(
                p,
                "PATCH",
                "/v1/me",
                Some(&json!({"name": name}).to_string()),
            )
            .await;
        assert_eq!(status, 200);
        model.name.insert(p, name.clone());
        model.was_named.insert(p, name);
        model.sharing.insert(p, true);
        let (sink, mut stream) = home_of(i).connect(p).await.ws.split();
        sinks.push(sink);
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Text(t) = msg
                    && tx
                        .send((i, serde_json::from_str(&t).expect("JSON")))
                        .is_err()
                {
                    break;
                }
            }
        });
    }
    let mut changes_sent = 0u64;
    let mut lists: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); PEOPLE];
    let (mut checked, mut lefts, mut violations) = (0usize, 0usize, Vec::<String>::new());

    for round in 0..=ROUNDS {
        model.was_at.clone_from(&model.at);
        model.was_named.clone_from(&model.name);
        model.visible_in_round.clear();
        model.note_visible();
        // Round 0 makes a quarter of all pairs friends before anyone is placed; later rounds
        // make a few random changes, each checked against the model as it is made.
        if round == 0 {
            for i in 0..PEOPLE {
                for j in i + 1..PEOPLE {
                    if rng.random_bool(0.25) {
                        befriend(home_of(i), people[i], people[j]).await;
                        model.accepted.insert(pair(people[i], people[j]));
                        model.note_visible();
                        changes_sent += 4;
                    }
                }
            }
        }
        let ops = if round == 0 {
            0
        } else {
            rng.random_range(2..7)
        };
        for _ in 0..ops {
            let (mut i, mut j) = (rng.random_range(0..PEOPLE), rng.random_range(0..PEOPLE));
            // Some requests answer a pending one, so friendships are made as well as asked.
            let answer = model
                .pending
                .iter()
                .nth(rng.random_range(0..=model.pending.len() * 2))
                .copied();
            if let Some((asker, asked)) = answer {
                let at = |u| people.iter().position(|&p| p == u).unwrap();
                (i, j) = (at(asked), at(asker));
            }
            let (x, y) = (people[i], people[j]);
            let gw = home_of(i);
            match rng.random_range(0..10) {
                _ if answer.is_some() => {
                    let (_, r) = gw
                        .call(x, "PUT", &format!("/v1/me/friends/{y}"), None)
                        .await;
                    assert_eq!(r["status"], "accepted", "PUT {x} -> {y}");
                    model.pending.remove(&(y, x));
                    model.accepted.insert(pair(x, y));
                    changes_sent += 2;
                }
                0..4 if i != j => {
                    let (_, r) = gw
                        .call(x, "PUT", &format!("/v1/me/friends/{y}"), None)
                        .await;
                    let want = if model.accepted.contains(&pair(x, y)) {
                        "already_friends"
                    } else if model.pending.contains(&(x, y)) {
                        "already_requested"
                    } else if model.pending.remove(&(y, x)) {
                        model.accepted.insert(pair(x, y));
                        "accepted"
                    } else {
                        model.pending.insert((x, y));
                        "requested"
                    };
                    assert_eq!(r["status"], want, "PUT {x} -> {y}");
                    changes_sent += 2;
                }
                4..6 if i != j => {
                    let (status, r) = gw
                        .call(x, "DELETE", &format!("/v1/me/friends/{y}"), None)
                        .await;
                    let want = if model.accepted.remove(&pair(x, y)) {
                        "unfriended"
                    } else if model.pending.remove(&(x, y)) {
                        "withdrawn"
                    } else if model.pending.remove(&(y, x)) {
                        "declined"
                    } else {
                        assert_eq!(status, 404, "DELETE {x} -> {y}: {r}");
                        continue;
                    };
                    assert_eq!(r["status"], want, "DELETE {x} -> {y}");
                    changes_sent += 2;
                }
                6..8 => {
                    let on = !model.sharing[&x];
                    let body = json!({"enabled": on}).to_string();
                    let (status, _) = gw.call(x, "PUT", "/v1/me/sharing", Some(&body)).await;
                    assert_eq!(status, 200);
                    model.sharing.insert(x, on);
                    changes_sent += 1;
                }
                _ => {
                    let name = format!("p{i}-r{round}");
                    let body = json!({"name": name}).to_string();
                    assert_eq!(gw.call(x, "PATCH", "/v1/me", Some(&body)).await.0, 200);
                    model.name.insert(x, name);
                    changes_sent += 1;
                }
            }
            model.note_visible();
        }
        // Fanout has every change before anyone moves: a report sent after a change returned
        // may otherwise race it between the two topics (a documented window).
        wait_changes(&fanout, changes_sent).await;

        // Moves: everyone at first, about half later; one report each per round.
        let now = now_ms();
        for (i, &p) in people.iter().enumerate() {
            if round > 0 && rng.random_bool(0.5) {
                continue;
            }
            let to = match model.at.get(&p) {
                Some(&from) => moved(&mut rng, from),
                None => somewhere(&mut rng),
            };
            model.at.insert(p, to);
            if round == 0 {
                model.was_at.insert(p, to);
            }
            let frame = json!({"type": "location", "lat": to.0, "lon": to.1, "ts": now});
            sinks[i]
                .send(Message::text(frame.to_string()))
                .await
                .expect("send");
        }

        // Everything this round causes, until the sockets are quiet.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while let Ok(Some((i, frame))) =
            tokio::time::timeout(Duration::from_millis(700), rx.recv()).await
        {
            assert!(tokio::time::Instant::now() < deadline, "never quiet");
            let r = people[i];
            match frame["type"].as_str() {
                Some("friend_location") => {
                    checked += 1;
                    if let Some(v) = model.judge(r, &frame) {
                        violations.push(format!("round {round}: {v}"));
                    }
                    lists[i].insert(frame["user_id"].as_str().unwrap().parse().unwrap());
                }
                Some("nearby") => {
                    lists[i].clear();
                    for entry in frame["friends"].as_array().unwrap() {
                        checked += 1;
                        if let Some(v) = model.judge(r, entry) {
                            violations.push(format!("round {round}: page: {v}"));
                        }
                        lists[i].insert(entry["user_id"].as_str().unwrap().parse().unwrap());
                    }
                }
                Some("friend_left") => {
                    lefts += 1;
                    lists[i].remove(&frame["user_id"].as_str().unwrap().parse().unwrap());
                }
                _ => violations.push(format!("round {round}: unexpected frame {frame}")),
            }
        }
        // Each client's own list is what the rules say it should be.
        for (i, &r) in people.iter().enumerate() {
            let (want, edge) = model.expected(r);
            let got: BTreeSet<i64> = lists[i].difference(&edge).copied().collect();
            let want: BTreeSet<i64> = want.difference(&edge).copied().collect();
            if got != want {
                violations.push(format!(
                    "round {round}: {r} lists {got:?}, should list {want:?}"
                ));
            }
        }
    }
    println!(
        "{checked} friend entries and {lefts} friend_left checked, and {} client lists \
         compared with the rules, over {ROUNDS} rounds; \
         {} friendships, {} pending, {} not sharing at the end; {} violations",
        PEOPLE * (ROUNDS + 1),
        model.accepted.len(),
        model.pending.len(),
        model.sharing.values().filter(|s| !**s).count(),
        violations.len()
    );
    assert!(violations.is_empty(), "seed {seed}: {violations:#?}");
    assert!(
        checked >= 30,
        "too few deliveries to mean anything: {checked}"
    );
    fanout.stop().await;
    g2.stop().await;
    g1.stop().await;
}
