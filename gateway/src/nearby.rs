//! The `nearby` pages: a user's accepted friends with sharing on, active (a cached latest
//! location younger than the TTL) and within the radius, nearest first, a page at a time. The
//! cursor names the last entry of the previous page, so a page is computed afresh each time and
//! the server keeps no paging state.

use nearby_common::UserId;
use nearby_common::geo::haversine_m;
use nearby_common::redis_store::{LatestLocation, LocationCache};
use redis::aio::ConnectionManager;

use crate::protocol::{FriendEntry, id_string, round_distance};
use crate::users::Users;

/// Where the next page starts: after this (distance in cm, friend id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    distance_cm: u64,
    friend: UserId,
}

impl Cursor {
    /// The wire form (opaque to clients).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.distance_cm, self.friend)
    }

    /// The key of a friend `distance_m` away: whole centimetres, then the id.
    fn at(distance_m: f64, friend: UserId) -> Self {
        // Distances are at most the radius: whole centimetres fit u64 easily.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let distance_cm = (distance_m * 100.0).round() as u64;
        Self {
            distance_cm,
            friend,
        }
    }

    /// Reads a cursor this server issued; `None` for anything else.
    pub fn decode(s: &str) -> Option<Self> {
        let (d, f) = s.split_once('.')?;
        Some(Self {
            distance_cm: d.parse().ok()?,
            friend: nearby_common::ids::parse_user_id(f)?,
        })
    }
}

/// Builds pages.
#[derive(Debug, Clone)]
pub struct Pager {
    /// Friend lists and profiles.
    pub users: Users,
    /// The latest-location cache.
    pub cache: LocationCache,
    /// A Redis connection (multiplexed; clones share it).
    pub redis: ConnectionManager,
    /// The radius, metres.
    pub radius_m: f64,
    /// How old a location may be and still count, ms.
    pub ttl_ms: i64,
    /// Entries per page.
    pub page_size: usize,
}

/// Why a page could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Redis or the user store failed.
    #[error("{0}")]
    Store(#[from] nearby_common::Error),
}

impl Pager {
    /// `user`'s own latest position, if younger than the TTL at `now_ms`.
    pub async fn own_position(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> nearby_common::Result<Option<LatestLocation>> {
        let mut redis = self.redis.clone();
        let mine = self.cache.get_many(&mut redis, &[user]).await?;
        Ok(mine
            .into_iter()
            .next()
            .flatten()
            .filter(|l| now_ms - l.ts <= self.ttl_ms))
    }

    /// The page after `after` (the first page when `None`) for `user` standing at `(lat, lon)`.
    /// Someone with sharing off sees nobody (sharing is both ways).
    pub async fn page(
        &self,
        user: UserId,
        (lat, lon): (f64, f64),
        after: Option<Cursor>,
        now_ms: i64,
    ) -> Result<(Vec<FriendEntry>, Option<String>), PageError> {
        if self
            .users
            .profile(user)
            .await?
            .is_some_and(|me| !me.sharing)
        {
            return Ok((Vec::new(), None));
        }
        let friends = self.users.friends(user).await?;
        let mut redis = self.redis.clone();
        let locations = self.cache.get_many(&mut redis, &friends).await?;
        let mut candidates: Vec<(Cursor, (UserId, LatestLocation, f64))> = Vec::new();
        for (friend, loc) in friends.iter().zip(locations) {
            let Some(loc) = loc else { continue };
            if now_ms - loc.ts > self.ttl_ms {
                continue;
            }
            let d = haversine_m(lat, lon, loc.lat, loc.lon);
            if d > self.radius_m {
                continue;
            }
            candidates.push((Cursor::at(d, *friend), (*friend, loc, d)));
        }
        let candidates = ranked_after(candidates, after);
        let mut entries = Vec::with_capacity(self.page_size.min(candidates.len()));
        let mut last = None;
        for (key, (friend, loc, d)) in candidates.iter().copied() {
            if entries.len() == self.page_size {
                break;
            }
            // Only friends with sharing on are ever listed.
            let Some(profile) = self.users.profile(friend).await? else {
                continue;
            };
            if !profile.sharing {
                continue;
            }
            entries.push(FriendEntry {
                user_id: id_string(friend),
                name: profile.name.clone(),
                lat: loc.lat,
                lon: loc.lon,
                distance_m: round_distance(d),
                updated_at: loc.ts,
            });
            last = Some(key);
        }
        let more = last.is_some_and(|l| candidates.iter().any(|c| c.0 > l));
        let next = if more { last.map(|c| c.encode()) } else { None };
        Ok((entries, next))
    }
}

/// The entries after `after` (all of them when `None`), nearest first, ties by id: a page is a
/// prefix of this, and the next page starts after the page's last key, so paging skips and
/// repeats nobody however the entries are spread.
fn ranked_after<T>(mut entries: Vec<(Cursor, T)>, after: Option<Cursor>) -> Vec<(Cursor, T)> {
    entries.retain(|(key, _)| after.is_none_or(|a| *key > a));
    entries.sort_by_key(|(key, _)| *key);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = Cursor {
            distance_cm: 81_250,
            friend: 17,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for junk in ["", "x", "1.", ".1", "1.-2", "a.b", "1.2.3"] {
            assert_eq!(Cursor::decode(junk), None, "{junk}");
        }
    }

    proptest::proptest! {
        /// Paging a page at a time through the cursor's wire form lists every friend in range
        /// once, in order: no gap and no repeat, ties of distance included.
        #[test]
        fn paging_lists_everyone_once_in_order(
            distances in proptest::collection::vec(0.0..=200.0f64, 0..60),
            page_size in 1usize..8,
        ) {
            // Distances on a coarse grid, so many friends tie to the centimetre.
            let all: Vec<(Cursor, UserId)> = distances
                .iter()
                .enumerate()
                .map(|(i, d)| (Cursor::at(d.round(), 1_000 + i as UserId), 1_000 + i as UserId))
                .collect();
            let want: Vec<UserId> = ranked_after(all.clone(), None).into_iter().map(|e| e.1).collect();
            let (mut got, mut cursor) = (Vec::new(), None);
            for _ in 0..=all.len() {
                let rest = ranked_after(all.clone(), cursor);
                let page: Vec<_> = rest.iter().take(page_size).copied().collect();
                got.extend(page.iter().map(|e| e.1));
                if rest.len() <= page_size {
                    break;
                }
                let next = page.last().map(|e| e.0.encode()).expect("a full page");
                cursor = Cursor::decode(&next);
                proptest::prop_assert!(cursor.is_some());
            }
            proptest::prop_assert_eq!(got, want);
        }
    }
}
