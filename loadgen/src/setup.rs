//! Setting up a run's people: profiles and accepted friendships of the simulated city, either
//! through the real HTTP API (every call a client would make: small graphs) or in bulk straight
//! into the CQL user store (large graphs, where a request and an accept per pair — two
//! lightweight transactions — would take longer than the run).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use nearby_common::users::UserStore;

use crate::net;
use crate::sim::City;

/// Friend pairs up to which `auto` sets up through the API.
pub const API_MAX_PAIRS: usize = 5_000;

/// Friend calls per person up to which `auto` sets up through the API: the gateway's default
/// per-user friend-call budget at once (`NEARBY_FRIEND_REQUEST_RATE_BURST`); more would wait
/// ten seconds a call.
pub const API_MAX_CALLS_PER_PERSON: usize = 30;

/// How to create the people and their friendships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetupMode {
    /// `api` up to 5,000 friend pairs and 30 friends a person, `bulk` above.
    Auto,
    /// `GET /v1/me` for each person, then a request and an accept per pair.
    Api,
    /// Plain inserts into the CQL user store (`UserStore::bulk_*`); only for the run's new ids.
    Bulk,
}

/// The city's friend pairs, each once (smaller index first).
pub fn pairs(city: &City) -> Vec<(usize, usize)> {
    (0..city.len())
        .flat_map(|a| {
            city.friends(a)
                .iter()
                .map(|&b| b as usize)
                .filter(move |&b| a < b)
                .map(move |b| (a, b))
        })
        .collect()
}

/// Makes `a` and `b` accepted friends through the API (both profiles must exist).
pub async fn befriend(
    gateway: SocketAddr,
    ta: &str,
    tb: &str,
    a: i64,
    b: i64,
) -> anyhow::Result<()> {
    for (t, other, want) in [(ta, b, "requested"), (tb, a, "accepted")] {
        let path = format!("/v1/me/friends/{other}");
        let (status, body) = net::http(gateway, "PUT", &path, Some(t), "").await?;
        let got: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if status != 200 || got["status"] != want {
            bail!("PUT {path}: {status} {body} (wanted {want})");
        }
    }
    Ok(())
}

/// Through the API: every profile, then every pair; `concurrency` calls in flight.
pub async fn via_api(
    gateway: SocketAddr,
    tokens: &[String],
    ids: &[i64],
    pairs: &[(usize, usize)],
    concurrency: usize,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    progress.set_length((ids.len() + pairs.len()) as u64);
    // Bounded: the gateway and the store see a steady load, not thousands of calls at once.
    let mut profiles = futures::stream::iter(0..ids.len())
        .map(|i| async move {
            let (status, body) = net::http(gateway, "GET", "/v1/me", Some(&tokens[i]), "").await?;
            if status != 200 {
                bail!("GET /v1/me as {}: {status} {body}", ids[i]);
            }
            anyhow::Ok(())
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(r) = profiles.next().await {
        r?;
        progress.inc(1);
    }
    let mut befriends = futures::stream::iter(pairs)
        .map(|&(a, b)| befriend(gateway, &tokens[a], &tokens[b], ids[a], ids[b]))
        .buffer_unordered(concurrency.max(1));
    while let Some(r) = befriends.next().await {
        r?;
        progress.inc(1);
    }
    Ok(())
}

/// In bulk, straight into the user store of `keyspace`.
pub async fn via_store(
    cql_nodes: &[String],
    keyspace: &str,
    ids: &[i64],
    pairs: &[(usize, usize)],
    concurrency: usize,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let session = nearby_common::cql::connect(cql_nodes)
        .await
        .context("connecting to the CQL store")?;
    let store = UserStore::new(session, keyspace)
        .await
        .with_context(|| format!("the user store in keyspace {keyspace}"))?;
    progress.set_length((ids.len() + pairs.len()) as u64);
    store.bulk_create_profiles(ids, concurrency).await?;
    progress.inc(ids.len() as u64);
    let by_id: Vec<(i64, i64)> = pairs.iter().map(|&(a, b)| (ids[a], ids[b])).collect();
    // In chunks, so the progress bar moves.
    for chunk in by_id.chunks(2_000) {
        store.bulk_befriend(chunk, concurrency).await?;
        progress.inc(chunk.len() as u64);
    }
    Ok(())
}

/// The mode `auto` picks for `pairs` friend pairs among `people`.
pub fn resolve(mode: SetupMode, pairs: usize, people: usize) -> SetupMode {
    // Each pair is one call of each side's.
    let calls_per_person = (2 * pairs).div_ceil(people.max(1));
    match mode {
        SetupMode::Auto
            if pairs <= API_MAX_PAIRS && calls_per_person <= API_MAX_CALLS_PER_PERSON =>
        {
            SetupMode::Api
        }
        SetupMode::Auto => SetupMode::Bulk,
        other => other,
    }
}

/// How long a setup token lasts.
pub const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);
