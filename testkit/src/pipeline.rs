//! The steps end-to-end tests share once gateways and fanout run: befriending through the API (with sockets: [`connected_friends`]),
//! reporting at points north of [`HOME`], reading what a socket gets (the next location or
//! `friend_left` about a friend, every frame for a while) and what a client must not meet.

use std::net::SocketAddr;
use std::time::Duration;

use nearby_common::clock::now_ms;
use nearby_common::geo::haversine_m;
use serde_json::{Value, json};

use crate::client::{Client, http};
use nearby_common::redis_store::{LatestLocation, LocationCache};
use nearby_common::stage::Stage;

use crate::gateway::TestGateway;
use crate::names::user;
use crate::tokens::token;

/// Metres per degree of latitude (haversine's radius).
pub const M_PER_DEG: f64 = 111_195.08;
/// Where the tests' people stand (San Francisco).
pub const HOME: (f64, f64) = (37.7749, -122.4194);

/// Makes `a` and `b` accepted friends through the API.
pub async fn befriend<S: Stage>(gw: &TestGateway<S>, a: i64, b: i64) {
    befriend_at(gw.addr, a, b).await;
}

/// Makes `a` and `b` accepted friends through the API of the gateway at `addr`.
pub async fn befriend_at(addr: SocketAddr, a: i64, b: i64) {
    let call = |u: i64, method: &'static str, path: String| async move {
        http(addr, method, &path, Some(&token(u)), None).await
    };
    // Both must exist (their first call creates them) before one can ask the other.
    for u in [a, b] {
        assert_eq!(call(u, "GET", "/v1/me".into()).await.0, 200);
    }
    assert_eq!(
        call(a, "PUT", format!("/v1/me/friends/{b}")).await.1["status"],
        "requested"
    );
    assert_eq!(
        call(b, "PUT", format!("/v1/me/friends/{a}")).await.1["status"],
        "accepted"
    );
}

/// Two fresh users made friends through `a_on`'s API, each with a socket open: A's on `a_on`,
/// B's on `b_on`. Returns A, B and their clients.
pub async fn connected_friends<S: Stage>(
    a_on: &TestGateway<S>,
    b_on: &TestGateway<S>,
) -> (i64, i64, Client, Client) {
    let (a, b) = (user(), user());
    befriend(a_on, a, b).await;
    let ca = a_on.connect(a).await;
    let cb = b_on.connect(b).await;
    (a, b, ca, cb)
}

/// A point `north_m` metres north of HOME.
pub fn north(north_m: f64) -> (f64, f64) {
    (HOME.0 + north_m / M_PER_DEG, HOME.1)
}

/// Reports the position `at` with time `ts` on `c`.
pub async fn report(c: &mut Client, at: (f64, f64), ts: i64) {
    c.send_json(json!({"type": "location", "lat": at.0, "lon": at.1, "ts": ts}))
        .await;
}

/// Reports HOME now and takes the first page that answers it.
pub async fn at_home(c: &mut Client) {
    report(c, HOME, now_ms()).await;
    c.next_of("nearby", 10).await.expect("first page");
}

/// Every frame that arrives within `secs` (for "never" assertions).
pub async fn drain(c: &mut Client, secs: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(v)) = tokio::time::timeout_at(deadline, c.next_within(secs)).await {
        out.push(v);
    }
    out
}

/// Asserts that `entry`'s `distance_m` is the haversine distance of `a` and `b` (within 0.3 %).
pub fn assert_distance(entry: &Value, a: (f64, f64), b: (f64, f64)) {
    let want = haversine_m(a.0, a.1, b.0, b.1);
    let got = entry["distance_m"].as_f64().expect("distance");
    assert!(
        (got - want).abs() / want < 0.003,
        "distance {got} vs haversine {want}"
    );
}

/// A position item of an upload, `north_m` metres north of [`HOME`] at `ts`.
pub fn item(north_m: f64, ts: i64) -> Value {
    let (lat, lon) = north(north_m);
    json!({"lat": lat, "lon": lon, "ts": ts})
}

/// `POST /v1/me/locations` of `locations` as `u`: the status and the answer.
pub async fn upload<S: Stage>(gw: &TestGateway<S>, u: i64, locations: Vec<Value>) -> (u16, Value) {
    let body = json!({ "locations": locations }).to_string();
    gw.call(u, "POST", "/v1/me/locations", Some(&body)).await
}

/// `u`'s latest position in the location cache of topic prefix `prefix` (what a page is built
/// from), read from Redis as a gateway reads it.
pub async fn cached(prefix: &str, u: i64) -> Option<LatestLocation> {
    let mut redis = nearby_common::redis_store::connect(&crate::stack::redis_url())
        .await
        .expect("redis");
    let cache = LocationCache::new(prefix, 600);
    cache.get_many(&mut redis, &[u]).await.expect("redis")[0]
}

/// Asserts that `user`'s client met nothing a client should not (an error, a close without a
/// `reconnect`): `unexpected` is what it met.
pub fn assert_nothing_unexpected(user: i64, unexpected: &[String]) {
    assert!(unexpected.is_empty(), "user {user}: {unexpected:?}");
}

/// Whether `frame` shows `friend` to its reader: in a `nearby` page or as a `friend_location`.
pub fn shows(frame: &Value, friend: i64) -> bool {
    let id = friend.to_string();
    match frame["type"].as_str() {
        Some("nearby") => frame["friends"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["user_id"] == id.as_str())),
        Some("friend_location") => frame["user_id"] == id.as_str(),
        _ => false,
    }
}

/// The next frame of `kind` about `friend` within `secs`, skipping other frames.
async fn next_about(c: &mut Client, kind: &str, friend: i64, secs: u64) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(v)) = tokio::time::timeout_at(deadline, c.next_within(secs)).await {
        if v["type"] == kind && v["user_id"].as_str() == Some(&*friend.to_string()) {
            return Some(v);
        }
    }
    None
}

/// The next `friend_location` about `friend` within `secs`, skipping other frames.
pub async fn location_of(c: &mut Client, friend: i64, secs: u64) -> Option<Value> {
    next_about(c, "friend_location", friend, secs).await
}

/// The next `friend_left` about `friend` within `secs`, skipping other frames.
pub async fn left_of(c: &mut Client, friend: i64, secs: u64) -> Option<Value> {
    next_about(c, "friend_left", friend, secs).await
}

/// The `ts` of every position in `u`'s history from `from` on, oldest first, as the history API
/// of the gateway at `addr` lists them (one page of up to 1000).
pub async fn history_at(addr: SocketAddr, u: i64, from: i64) -> Vec<i64> {
    try_history_at(addr, u, from)
        .await
        .unwrap_or_else(|(status, page)| panic!("history: {status} {page}"))
}

/// [`history_at`], or the status and body of an answer other than 200 (a 503 while a store
/// comes back, say).
pub async fn try_history_at(addr: SocketAddr, u: i64, from: i64) -> Result<Vec<i64>, (u16, Value)> {
    let path = format!("/v1/me/history?from={from}&to={}&limit=1000", now_ms() + 1);
    let (status, page) = http(addr, "GET", &path, Some(&token(u)), None).await;
    if status != 200 {
        return Err((status, page));
    }
    Ok(page["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .map(|l| l["ts"].as_i64().expect("ts"))
        .collect())
}

/// Waits (at most 60 s) until `u`'s history from `from` holds at least `want` positions (a sink
/// behind a fault catches up); returns what it holds then, and how many reads were answered 503
/// meanwhile (a store coming back: tried again, as a client honouring `Retry-After` would).
pub async fn history_settled(addr: SocketAddr, u: i64, from: i64, want: usize) -> (Vec<i64>, u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    loop {
        let late = tokio::time::Instant::now() > deadline;
        match try_history_at(addr, u, from).await {
            Ok(got) if got.len() >= want || late => return (got, refused),
            Ok(_) => {}
            Err((503, _)) if !late => refused += 1,
            Err((status, page)) => panic!("history: {status} {page}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
