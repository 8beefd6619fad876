//! The Redis latest-location cache: one key per active user, `SET … EX ttl` by fanout on every
//! accepted report, read by gateways for the first page and paging. Losing it loses nothing: it
//! is rebuilt from the location topic.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::{Result, UserId};

/// A reconnecting, multiplexed Redis connection: cheap to clone, one socket shared by all tasks.
pub async fn connect(url: &str) -> Result<ConnectionManager> {
    let client = redis::Client::open(url)?;
    Ok(ConnectionManager::new(client).await?)
}

/// A user's latest reported position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatestLocation {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// The report's time (client clock, as validated at ingest), epoch ms.
    pub ts: i64,
}

impl LatestLocation {
    /// The stored form: `lat,lon,ts` (compact, and readable with `redis-cli`).
    pub fn encode(&self) -> String {
        format!("{},{},{}", self.lat, self.lon, self.ts)
    }

    /// Reads the stored form; `None` for anything else.
    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.split(',');
        let lat = parts.next()?.parse().ok()?;
        let lon = parts.next()?.parse().ok()?;
        let ts = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !crate::geo::is_valid_position(lat, lon) {
            return None;
        }
        Some(Self { lat, lon, ts })
    }
}

/// The cache's keys, under a prefix (a deployment's `nearby`, a test's random one).
#[derive(Debug, Clone)]
pub struct LocationCache {
    prefix: String,
    ttl_s: u64,
}

impl LocationCache {
    /// Keys `<prefix>:loc:<user>`, each kept `ttl_s` seconds after its last write.
    pub fn new(prefix: &str, ttl_s: u64) -> Self {
        Self {
            prefix: prefix.to_owned(),
            ttl_s,
        }
    }

    /// The key of `user`'s latest location.
    pub fn key(&self, user: UserId) -> String {
        format!("{}:loc:{user}", self.prefix)
    }

    /// Writes `user`'s latest location with the TTL.
    pub async fn set(
        &self,
        conn: &mut ConnectionManager,
        user: UserId,
        loc: &LatestLocation,
    ) -> Result<()> {
        let _: () = conn
            .set_ex(self.key(user), loc.encode(), self.ttl_s)
            .await?;
        Ok(())
    }

    /// Writes the latest locations of several users in one round trip, each expiring at its
    /// own absolute time (epoch ms: `PXAT`), so the cache forgets a user exactly when fanout does.
    pub async fn set_many_until(
        &self,
        conn: &mut ConnectionManager,
        entries: &[(UserId, LatestLocation, i64)],
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (user, loc, expires_at_ms) in entries {
            pipe.cmd("SET")
                .arg(self.key(*user))
                .arg(loc.encode())
                .arg("PXAT")
                .arg(*expires_at_ms)
                .ignore();
        }
        let _: () = pipe.query_async(conn).await?;
        Ok(())
    }

    /// Latest locations of `users`, in the same order (`None` where absent or expired).
    pub async fn get_many(
        &self,
        conn: &mut ConnectionManager,
        users: &[UserId],
    ) -> Result<Vec<Option<LatestLocation>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = users.iter().map(|u| self.key(*u)).collect();
        // MGET with many keys returns a list; with one key redis-rs would return a scalar, so
        // ask for a Vec explicitly.
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
        Ok(values
            .into_iter()
            .map(|v| v.as_deref().and_then(LatestLocation::decode))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips_and_rejects_junk() {
        let loc = LatestLocation {
            lat: 37.774_929_5,
            lon: -122.419_415_5,
            ts: 1_764_057_600_000,
        };
        assert_eq!(LatestLocation::decode(&loc.encode()), Some(loc));
        for junk in ["", "1,2", "1,2,3,4", "a,b,c", "91,0,1", "NaN,0,1"] {
            assert_eq!(LatestLocation::decode(junk), None, "{junk}");
        }
        assert_eq!(LocationCache::new("nearby", 600).key(42), "nearby:loc:42");
    }
}
