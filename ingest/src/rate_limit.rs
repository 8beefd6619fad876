//! The per-user rate limit: a token bucket per user (`burst` reports at once, refilled at
//! `per_second`), kept in bounded memory. The key is a user id unless said otherwise (the
//! gateway also keys one by source address: [`LimitKey`]).
//!
//! Each bucket is stored as GCRA's "theoretical arrival time" (one `u64` per user), which
//! behaves exactly like a token bucket: a user whose TAT is in the past has a full bucket, so
//! their entry can be dropped without changing any decision. That is how idle users are cleaned
//! up. When the table is at its cap even after dropping the idle, the entry nearest to full among
//! a small sample is evicted: that user gets a fresh bucket (a little leniency), and nobody is
//! ever refused because of memory pressure.
//!
//! A hand-written limiter rather than `governor`: governor's keyed store inserts every key it
//! sees and offers no cap or membership test, so it cannot bound memory the way this must.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use nearby_common::UserId;
use tokio::time::Instant;

/// How often a shard drops its idle users, even when not full, so the tracked-users gauge
/// follows the active population.
const IDLE_SWEEP_EVERY: Duration = Duration::from_secs(30);
/// The least time between two sweeps of a full shard: under a flood of new users, a full shard
/// evicts by sampling instead of scanning itself on every insert.
const FULL_SWEEP_GAP: Duration = Duration::from_millis(100);
/// Entries looked at to choose one to evict from a full shard.
const EVICTION_SAMPLE: usize = 8;
/// Shards of the table: each has its own lock, so reports of different users rarely contend.
const MAX_SHARDS: usize = 16;
/// The fewest entries a shard is sized for: a small table is one shard, so its cap is exact.
const MIN_SHARD_CAP: usize = 1024;

/// The limit every user gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Reports accepted at once from a full bucket.
    pub burst: u32,
    /// Sustained reports per second (the refill rate).
    pub per_second: f64,
    /// The most users whose buckets are kept at once.
    pub max_users: usize,
}

/// A report refused by the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// How long until the user's next report will be accepted.
    pub retry_after: Duration,
}

impl Limited {
    /// [`retry_after`](Self::retry_after) in whole milliseconds, rounded up, so a client that
    /// waits exactly that long is accepted.
    pub fn retry_after_ms(&self) -> u64 {
        u64::try_from(self.retry_after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// What a limiter's buckets are keyed by: a user id, or a source address.
pub trait LimitKey: Copy + Eq + Hash + std::fmt::Debug {
    /// Bits that differ between keys, spread over the shards by a multiplicative hash.
    fn bits(&self) -> u64;
}

impl LimitKey for UserId {
    fn bits(&self) -> u64 {
        *self as u64
    }
}

impl LimitKey for IpAddr {
    fn bits(&self) -> u64 {
        match self {
            IpAddr::V4(a) => u64::from(u32::from(*a)),
            IpAddr::V6(a) => {
                let v = u128::from(*a);
                (v >> 64) as u64 ^ v as u64
            }
        }
    }
}

/// Per-key (per-user, by default) token buckets in a capped, sharded table. Shared by
/// reference (`&self`): every method is thread-safe.
#[derive(Debug)]
pub struct RateLimiter<K: LimitKey = UserId> {
    /// Time one token takes to refill (GCRA's emission interval), nanoseconds.
    emission_ns: u64,
    /// How far ahead of now a user's TAT may run and still be accepted: `(burst - 1)` tokens.
    tolerance_ns: u64,
    /// Entries each shard may hold; `shards.len() * shard_cap <= max_users`.
    shard_cap: usize,
    /// The zero of the limiter's clock (times are nanoseconds since it).
    epoch: Instant,
    shards: Box<[Mutex<Shard<K>>]>,
    /// Entries over all shards, kept by each shard as it changes so reading needs no lock.
    tracked: AtomicUsize,
    /// Entries evicted before they were idle.
    evicted: AtomicU64,
}

/// One lock's worth of buckets.
#[derive(Debug)]
struct Shard<K> {
    /// Key → theoretical arrival time (ns since the epoch). At or before now: a full bucket.
    tat: HashMap<K, u64>,
    /// When this shard last dropped its idle entries.
    last_sweep_ns: u64,
}

impl<K> Default for Shard<K> {
    fn default() -> Self {
        Self {
            tat: HashMap::new(),
            last_sweep_ns: 0,
        }
    }
}

impl<K: LimitKey> RateLimiter<K> {
    /// A limiter with `limit`. `burst`, `per_second` and `max_users` must be positive (the
    /// config checks this); out-of-range values are clamped to the nearest sane one.
    pub fn new(limit: RateLimit) -> Self {
        let burst = u64::from(limit.burst.max(1));
        let per_second = if limit.per_second.is_finite() && limit.per_second > 0.0 {
            limit.per_second
        } else {
            1.0
        };
        // At least 1 ns, so a token always takes time to come back.
        let emission_ns = ((1e9 / per_second).round() as u64).max(1);
        let max_users = limit.max_users.max(1);
        let shard_count = (max_users / MIN_SHARD_CAP).clamp(1, MAX_SHARDS);
        Self {
            emission_ns,
            tolerance_ns: emission_ns.saturating_mul(burst - 1),
            shard_cap: max_users / shard_count,
            epoch: Instant::now(),
            shards: (0..shard_count).map(|_| Mutex::default()).collect(),
            tracked: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// Takes one token from `user`'s bucket now, or says how long until one is back.
    ///
    /// Uses Tokio's clock, so tests with paused time (`tokio::time::pause`) drive it.
    pub fn check(&self, user: K) -> Result<(), Limited> {
        self.check_at(user, Instant::now())
    }

    /// [`check`](Self::check) at a given instant (for tests and callers with their own clock).
    pub fn check_at(&self, user: K, now: Instant) -> Result<(), Limited> {
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let shard = &self.shards[self.shard_of(user)];
        // A std mutex, not Tokio's: the critical section is a few hash-map operations and
        // never awaits, so blocking briefly is cheaper than an async lock.
        let mut shard = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = shard.tat.len();
        if now_ns.saturating_sub(shard.last_sweep_ns) >= duration_ns(IDLE_SWEEP_EVERY) {
            shard.sweep(now_ns);
        }
        let decision = match shard.tat.get(&user).copied() {
            Some(tat) => self.decide(tat, now_ns),
            None => {
                if shard.tat.len() >= self.shard_cap {
                    self.make_room(&mut shard, now_ns);
                }
                // A user we do not track has a full bucket.
                self.decide(now_ns, now_ns)
            }
        };
        if let Ok(new_tat) = decision {
            shard.tat.insert(user, new_tat);
        }
        let after = shard.tat.len();
        // Relaxed: the gauge is a tally for metrics; no other data is published through it.
        if after > before {
            self.tracked.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.tracked.fetch_sub(before - after, Ordering::Relaxed);
        }
        decision.map(drop).map_err(|retry_after_ns| Limited {
            retry_after: Duration::from_nanos(retry_after_ns),
        })
    }

    /// How many users have a bucket in memory now (a gauge).
    pub fn tracked_users(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    /// How many buckets were evicted before they were idle because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// The most buckets this limiter keeps at once.
    pub fn capacity(&self) -> usize {
        self.shard_cap * self.shards.len()
    }

    /// GCRA: accept (returning the new TAT) if the bucket has a token, else the wait in ns.
    fn decide(&self, tat: u64, now_ns: u64) -> Result<u64, u64> {
        let tat = tat.max(now_ns);
        let ahead = tat - now_ns;
        if ahead > self.tolerance_ns {
            Err(ahead - self.tolerance_ns)
        } else {
            Ok(tat.saturating_add(self.emission_ns))
        }
    }

    /// Frees at least one slot in a full shard: drops idle entries if that has not been tried
    /// just now, then evicts the fullest-bucket entry of a small sample if still full.
    fn make_room(&self, shard: &mut Shard<K>, now_ns: u64) {
        if now_ns.saturating_sub(shard.last_sweep_ns) >= duration_ns(FULL_SWEEP_GAP) {
            shard.sweep(now_ns);
        }
        while shard.tat.len() >= self.shard_cap {
            let victim = shard
                .tat
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, tat)| **tat)
                .map(|(user, _)| *user);
            let Some(victim) = victim else { break };
            shard.tat.remove(&victim);
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The shard of a user: a multiplicative hash, so consecutive ids spread over shards.
    fn shard_of(&self, user: K) -> usize {
        let h = user.bits().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        (h % self.shards.len() as u64) as usize
    }
}

impl<K: LimitKey> Shard<K> {
    /// Drops every entry whose bucket is full again (TAT not after now): forgetting them
    /// changes no decision, since an unknown user starts with a full bucket.
    fn sweep(&mut self, now_ns: u64) {
        self.tat.retain(|_, tat| *tat > now_ns);
        self.last_sweep_ns = now_ns;
    }
}

/// A duration in nanoseconds, saturating.
fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, per_second: f64, max_users: usize) -> RateLimiter {
        RateLimiter::new(RateLimit {
            burst,
            per_second,
            max_users,
        })
    }

    #[test]
    fn burst_then_rejection_then_refill() {
        let l = limiter(10, 1.0, 1000);
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(l.check_at(7, t0), Ok(()), "report {i} of the burst");
        }
        let limited = l.check_at(7, t0).expect_err("11th at once is refused");
        assert_eq!(limited.retry_after, Duration::from_secs(1));
        assert_eq!(limited.retry_after_ms(), 1000);
        // Half a token later: still refused, with half the wait.
        let half = l
            .check_at(7, t0 + Duration::from_millis(500))
            .expect_err("no token yet");
        assert_eq!(half.retry_after_ms(), 500);
        // Waiting exactly the advertised time gives exactly one token.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.check_at(7, t1), Ok(()));
        assert!(l.check_at(7, t1).is_err());
        // Other users are not affected.
        assert_eq!(l.check_at(8, t1), Ok(()));
        // After burst × interval of quiet the bucket is full again.
        let t2 = t1 + Duration::from_secs(10);
        for _ in 0..10 {
            assert_eq!(l.check_at(7, t2), Ok(()));
        }
        assert!(l.check_at(7, t2).is_err());
    }

    #[test]
    fn steady_reports_at_the_rate_are_never_refused() {
        let l = limiter(1, 2.0, 10);
        let t0 = Instant::now();
        for i in 0..100 {
            let t = t0 + Duration::from_millis(500) * i;
            assert_eq!(l.check_at(1, t), Ok(()), "report {i}");
        }
        let early = l
            .check_at(1, t0 + Duration::from_millis(500 * 99 + 1))
            .expect_err("burst 1: the next report needs a full interval");
        // The next token is due at 100 × 500 ms; it is 49 501 ms now.
        assert_eq!(early.retry_after_ms(), 499);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_milliseconds() {
        let l = limiter(1, 3.0, 10);
        let t0 = Instant::now();
        assert!(l.check_at(1, t0).is_ok());
        let limited = l.check_at(1, t0).expect_err("limited");
        // 1/3 s is 333.33… ms: waiting 333 ms would still be too early.
        assert_eq!(limited.retry_after_ms(), 334);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_drives_refill() {
        let l = limiter(3, 1.0, 10);
        for _ in 0..3 {
            assert_eq!(l.check(5), Ok(()));
        }
        let limited = l.check(5).expect_err("burst spent");
        tokio::time::advance(limited.retry_after).await;
        assert_eq!(l.check(5), Ok(()));
        assert!(l.check(5).is_err());
    }

    #[test]
    fn idle_users_are_forgotten_and_memory_stays_under_the_cap() {
        let cap = 64;
        let l = limiter(10, 1.0, cap);
        assert_eq!(l.capacity(), cap);
        let t0 = Instant::now();
        for user in 0..1000 {
            assert_eq!(l.check_at(user, t0), Ok(()), "a new user is never refused");
            assert!(l.tracked_users() <= cap, "user {user}");
        }
        assert_eq!(l.tracked_users(), cap);
        assert!(l.evictions() > 0, "a flood of new users evicts");
        // Long after, every bucket is full again: the next check sweeps them all away.
        let later = t0 + IDLE_SWEEP_EVERY + Duration::from_secs(1);
        assert_eq!(l.check_at(5000, later), Ok(()));
        assert_eq!(l.tracked_users(), 1);
        let stored: usize = l
            .shards
            .iter()
            .map(|s| s.lock().expect("lock").tat.len())
            .sum();
        assert_eq!(stored, 1, "the gauge matches what is stored");
    }

    #[test]
    fn large_tables_are_sharded_within_the_cap() {
        let l = limiter(10, 1.0, 200_000);
        assert_eq!(l.shards.len(), MAX_SHARDS);
        assert!(l.capacity() <= 200_000 && l.capacity() > 199_000);
    }

    #[test]
    fn a_full_table_prefers_dropping_idle_users_over_active_ones() {
        let l = limiter(2, 1.0, 4);
        let t0 = Instant::now();
        for user in 2..=4 {
            assert!(l.check_at(user, t0).is_ok());
        }
        // 1.5 s later users 2..=4 are idle (full buckets again); user 1 spends its burst.
        let t1 = t0 + Duration::from_millis(1500);
        for _ in 0..2 {
            assert!(l.check_at(1, t1).is_ok());
        }
        // Newcomers fill the table: the idle users make room, nobody active is evicted.
        for user in 10..13 {
            assert!(l.check_at(user, t1).is_ok());
        }
        assert_eq!(l.tracked_users(), 4);
        assert_eq!(l.evictions(), 0, "idle entries were dropped, none evicted");
        let limited = l.check_at(1, t1).expect_err("user 1 is still limited");
        assert_eq!(limited.retry_after_ms(), 1000);
    }

    #[test]
    fn odd_limits_are_clamped_not_panicking() {
        let l = limiter(0, f64::NAN, 0);
        let t0 = Instant::now();
        assert!(l.check_at(1, t0).is_ok());
        assert!(l.check_at(1, t0).is_err());
        assert_eq!(l.capacity(), 1);
    }

    proptest::proptest! {
        /// Whatever the arrivals: no window of time accepts more than the burst plus what the
        /// rate refills in it, and a refused caller who waits the `retry_after` it was given is
        /// accepted.
        #[test]
        fn no_window_accepts_more_than_burst_plus_refill_and_retry_after_is_honest(
            burst in 1u32..20,
            per_second in 0.1f64..50.0,
            gaps_ms in proptest::collection::vec(0u64..400, 1..200),
        ) {
            let l = limiter(burst, per_second, 1000);
            let t0 = Instant::now();
            let mut now = t0;
            let mut accepted = Vec::new();
            for gap in gaps_ms {
                now += Duration::from_millis(gap);
                match l.check_at(1, now) {
                    Ok(()) => accepted.push(now),
                    Err(limited) => {
                        let later = now + limited.retry_after;
                        proptest::prop_assert!(l.check_at(1, later).is_ok(), "retry_after too short");
                        accepted.push(later);
                        now = later;
                    }
                }
            }
            for (i, start) in accepted.iter().enumerate() {
                for (j, end) in accepted.iter().enumerate().skip(i) {
                    let window = end.duration_since(*start).as_secs_f64();
                    let allowed = f64::from(burst) + window * per_second + 1e-6;
                    proptest::prop_assert!(
                        (j - i + 1) as f64 <= allowed,
                        "{} accepted in {window} s (burst {burst}, {per_second}/s)", j - i + 1
                    );
                }
            }
        }
    }
}
