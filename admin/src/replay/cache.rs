//! Rebuilding Redis's latest-location cache from the location topic: every partition is read
//! (by a reader in no shared group) from the offsets of now − TTL to the end it had when the
//! replay started; each user's newest position by `ts` is kept, and every user still active
//! is written with the expiry fanout gives it (`ts` + TTL).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use nearby_common::redis_store::{LatestLocation, LocationCache};
use nearby_common::{StackArgs, UserId};
use nearby_schemas::{LocationBody, LocationEvent};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{group, time};

/// Longest wait for the next record before the read is given up as stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Users written (and first read, to skip newer entries) in one Redis round trip.
const BATCH: usize = 500;

/// One partition's range to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The partition.
    pub partition: i32,
    /// The first offset at or after now − TTL.
    pub start: i64,
    /// The end when the replay started (exclusive).
    pub end: i64,
}

/// What `replay cache` will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePlan {
    /// The location topic.
    pub topic: String,
    /// now − TTL, epoch ms.
    pub from_ms: i64,
    /// The TTL.
    pub ttl: Duration,
    /// Per partition.
    pub ranges: Vec<Range>,
}

impl CachePlan {
    /// Writes the plan.
    pub fn print(&self, prefix: &str, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "replay cache: rebuild the Redis keys {prefix}:loc:<user> from {}, records since \
             now - {} = {} ({} epoch ms)",
            self.topic,
            humantime::format_duration(self.ttl),
            time::format(self.from_ms),
            self.from_ms
        )?;
        for r in &self.ranges {
            writeln!(
                out,
                "partition {}: offsets {} -> {} ({} records)",
                r.partition,
                r.start,
                r.end,
                r.end - r.start
            )?;
        }
        let total: i64 = self.ranges.iter().map(|r| r.end - r.start).sum();
        writeln!(
            out,
            "total: {total} records to read over {} partitions",
            self.ranges.len()
        )
    }
}

/// What the read found and the write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheReport {
    /// Records read.
    pub records: u64,
    /// Position reports among them.
    pub positions: u64,
    /// Connects and disconnects (nothing to cache).
    pub other_events: u64,
    /// Records that could not be decoded (or had no value): skipped.
    pub undecodable: u64,
    /// Positions with coordinates out of range: skipped, as fanout does.
    pub invalid: u64,
    /// Users with a position.
    pub users: u64,
    /// Users whose newest position is older than the TTL by now: not written.
    pub inactive: u64,
    /// Users whose cache entry was already as new or newer (fanout wrote it meanwhile): left.
    pub newer_in_cache: u64,
    /// Users written.
    pub restored: u64,
}

/// Reads the offsets of now − TTL and the ends of every partition of `topic`.
pub fn plan(brokers: &str, topic: &str, ttl: Duration) -> anyhow::Result<CachePlan> {
    let consumer: BaseConsumer = reader_config(brokers).create()?;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let from_ms = time::now_ms().saturating_sub(ttl_ms);
    let ids = group::partitions(&consumer, topic)?;
    let ranges = group::offsets_at(&consumer, topic, &ids, from_ms)?
        .into_iter()
        .map(|(partition, start, end)| Range {
            partition,
            start,
            end,
        })
        .collect();
    Ok(CachePlan {
        topic: topic.to_owned(),
        from_ms,
        ttl,
        ranges,
    })
}

/// A reader outside every consumer group: it is assigned partitions and commits nothing (the
/// client wants a `group.id` all the same; this one is never joined nor written to).
fn reader_config(brokers: &str) -> rdkafka::ClientConfig {
    let mut config = nearby_common::kafka::client_config(brokers);
    config
        .set(
            "group.id",
            format!(
                "nearby-admin-replay-cache-{}-{}",
                std::process::id(),
                time::now_ms()
            ),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "50");
    config
}

/// Reads every range of `plan` and returns each user's newest valid position by `ts`.
pub async fn read_latest(
    brokers: &str,
    plan: &CachePlan,
    report: &mut CacheReport,
) -> anyhow::Result<HashMap<UserId, LatestLocation>> {
    let consumer: StreamConsumer = reader_config(brokers).create()?;
    let mut tpl = TopicPartitionList::new();
    let mut left = HashMap::new();
    for r in plan.ranges.iter().filter(|r| r.start < r.end) {
        tpl.add_partition_offset(&plan.topic, r.partition, Offset::Offset(r.start))?;
        left.insert(r.partition, r.end);
    }
    let mut latest: HashMap<UserId, LatestLocation> = HashMap::new();
    if left.is_empty() {
        return Ok(latest);
    }
    consumer.assign(&tpl)?;
    while !left.is_empty() {
        let msg = match tokio::time::timeout(STALL_TIMEOUT, consumer.recv()).await {
            Err(_) => anyhow::bail!(
                "no record for {}s; partitions not read to their end: {:?}",
                STALL_TIMEOUT.as_secs(),
                left.keys().collect::<Vec<_>>()
            ),
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                // At the partition's end (its last offsets may hold no record to read).
                left.remove(&p);
                continue;
            }
            Ok(Err(e)) => return Err(e).context("reading the location topic"),
            Ok(Ok(m)) => m,
        };
        let partition = msg.partition();
        let Some(&end) = left.get(&partition) else {
            continue;
        };
        if msg.offset() >= end {
            // Past the end the replay started with: newer records are fanout's to write.
            left.remove(&partition);
            continue;
        }
        if msg.offset() + 1 >= end {
            left.remove(&partition);
        }
        report.records += 1;
        let event = match msg.payload().map(nearby_schemas::decode::<LocationEvent>) {
            Some(Ok(event)) => event,
            Some(Err(e)) => {
                tracing::warn!(error = %e, partition, offset = msg.offset(), "undecodable location event skipped");
                report.undecodable += 1;
                continue;
            }
            None => {
                report.undecodable += 1;
                continue;
            }
        };
        let LocationBody::Position(position) = event.body else {
            report.other_events += 1;
            continue;
        };
        report.positions += 1;
        if !nearby_common::geo::is_valid_position(position.lat, position.lon) {
            report.invalid += 1;
            continue;
        }
        let loc = LatestLocation {
            lat: position.lat,
            lon: position.lon,
            ts: event.ts,
        };
        // Newest by `ts`; an older (or equal) report never replaces a newer one, as in fanout.
        latest
            .entry(event.user_id)
            .and_modify(|cur| {
                if loc.ts > cur.ts {
                    *cur = loc;
                }
            })
            .or_insert(loc);
    }
    report.users = latest.len() as u64;
    Ok(latest)
}

/// Writes each user still active at `now_ms` (expiring at `ts` + TTL), in batches; a user
/// whose entry in the cache is already as new or newer is left as it is.
pub async fn write(
    stack: &StackArgs,
    ttl: Duration,
    latest: HashMap<UserId, LatestLocation>,
    now_ms: i64,
    report: &mut CacheReport,
) -> anyhow::Result<()> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let mut active: Vec<(UserId, LatestLocation)> = latest
        .into_iter()
        .filter(|(_, loc)| {
            let live = loc.ts.saturating_add(ttl_ms) > now_ms;
            if !live {
                report.inactive += 1;
            }
            live
        })
        .collect();
    active.sort_unstable_by_key(|(user, _)| *user);
    let mut conn = stack
        .startup()
        .redis(&stack.redis_url)
        .await
        .context("connecting to Redis")?;
    let cache = LocationCache::new(&stack.topic_prefix, ttl.as_secs());
    for batch in active.chunks(BATCH) {
        let users: Vec<UserId> = batch.iter().map(|(u, _)| *u).collect();
        let cached = cache.get_many(&mut conn, &users).await?;
        let entries: Vec<(UserId, LatestLocation, i64)> = batch
            .iter()
            .zip(cached)
            .filter(|((_, loc), cached)| match cached {
                Some(c) if c.ts >= loc.ts => {
                    report.newer_in_cache += 1;
                    false
                }
                _ => true,
            })
            .map(|((user, loc), _)| (*user, *loc, loc.ts.saturating_add(ttl_ms)))
            .collect();
        cache.set_many_until(&mut conn, &entries).await?;
        report.restored += entries.len() as u64;
    }
    Ok(())
}

/// `replay cache`: prints the plan; with `yes`, reads and writes.
pub async fn run(
    stack: &StackArgs,
    ttl: Duration,
    yes: bool,
    out: &mut impl Write,
) -> anyhow::Result<CacheReport> {
    let topic = stack.topics()?.location_updates();
    let plan = plan(&stack.kafka_brokers, &topic, ttl)?;
    plan.print(&stack.topic_prefix, out)?;
    let mut report = CacheReport::default();
    if !yes {
        writeln!(
            out,
            "dry run: nothing read or written; run again with --yes to rebuild the cache"
        )?;
        return Ok(report);
    }
    let latest = read_latest(&stack.kafka_brokers, &plan, &mut report).await?;
    writeln!(
        out,
        "read {} records: {} positions, {} connects/disconnects, {} undecodable, {} invalid positions",
        report.records, report.positions, report.other_events, report.undecodable, report.invalid
    )?;
    write(stack, ttl, latest, time::now_ms(), &mut report).await?;
    writeln!(
        out,
        "users with a position: {}; inactive by now: {}; already as new in the cache: {}",
        report.users, report.inactive, report.newer_in_cache
    )?;
    writeln!(out, "users restored: {}", report.restored)?;
    Ok(report)
}
