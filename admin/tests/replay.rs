//! `nearby-admin replay` against the real stack: `replay group` prints its plan and changes
//! nothing without `--yes`, commits exactly `offsets_for_times` with it, and refuses a group
//! with an active member; `replay cache` restores every active user's newest position (and no
//! inactive one) after the test's own cache keys are deleted.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use nearby_admin::replay::time;
use nearby_common::redis_store::{LatestLocation, LocationCache};
use nearby_schemas::LocationEvent;
use nearby_testkit::events::{self, gateway_position};
use nearby_testkit::process::{admin, stdout};
use nearby_testkit::records::{produce, produce_events};
use nearby_testkit::topics::{create_topic, delete_topic};
use nearby_testkit::{brokers, now_ms, redis_url, topic_prefix};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

/// A consumer of `group` that never commits by itself.
fn group_consumer(group: &str) -> BaseConsumer {
    nearby_common::kafka::client_config(&brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// The group's committed offset per partition (`None` where it has none).
fn committed(group: &str, topic: &str) -> BTreeMap<i32, Option<i64>> {
    let consumer = group_consumer(group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, TIMEOUT).expect("committed");
    (0..PARTITIONS)
        .map(|p| {
            let o = got.find_partition(topic, p).expect("asked").offset();
            (
                p,
                match o {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                },
            )
        })
        .collect()
}

#[tokio::test]
async fn replay_group_plans_commits_offsets_for_times_and_refuses_a_live_group() {
    let prefix = topic_prefix();
    let topic = format!("{prefix}.location-updates");
    let group = format!("{prefix}.group");
    create_topic(&topic, PARTITIONS).await;

    // 30 reports of 6 users, one a minute (by record timestamp) over the last half hour.
    let base = now_ms() - 30 * 60_000;
    let events: Vec<(LocationEvent, i64)> = (0..30)
        .map(|i| {
            let ts = base + i * 60_000;
            (gateway_position(1 + i % 6, ts, 37.0, -122.0), ts)
        })
        .collect();
    let landed = produce_events(&topic, &events).await;
    let mut end: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    for (p, o) in &landed {
        let e = end.get_mut(p).expect("known partition");
        *e = (*e).max(o + 1);
    }
    assert!(
        end.values().filter(|e| **e > 0).count() >= 2,
        "6 users spread over the partitions: {end:?}"
    );

    // The group has read everything.
    {
        let consumer = group_consumer(&group);
        let mut tpl = TopicPartitionList::new();
        for (p, e) in &end {
            tpl.add_partition_offset(&topic, *p, Offset::Offset(*e))
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }
    let at_end: BTreeMap<i32, Option<i64>> = end.iter().map(|(p, e)| (*p, Some(*e))).collect();
    assert_eq!(committed(&group, &topic), at_end);

    // From the 16th minute: per partition the first record at or after it, from what was
    // produced (and where no record is that new, the end).
    let from = base + 15 * 60_000;
    let mut expected: BTreeMap<i32, i64> = end.clone();
    for ((_, ts), (p, o)) in events.iter().zip(&landed) {
        if *ts >= from {
            let e = expected.get_mut(p).expect("known");
            *e = (*e).min(*o);
        }
    }
    // ... which is what the broker's offsets_for_times says.
    {
        let consumer = group_consumer(&group);
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&topic, p, Offset::Offset(from))
                .expect("tpl");
        }
        let found = consumer.offsets_for_times(tpl, TIMEOUT).expect("offsets");
        for p in 0..PARTITIONS {
            let got = match found.find_partition(&topic, p).expect("asked").offset() {
                Offset::Offset(o) => o,
                _ => end[&p],
            };
            assert_eq!(got, expected[&p], "partition {p}");
        }
    }

    // Without --yes: the plan, and nothing changes.
    let from_text = time::format(from);
    let dry = stdout(&admin(
        &prefix,
        &[
            "replay", "group", "--group", &group, "--topic", &topic, "--from", &from_text,
        ],
    ));
    assert!(
        dry.contains(&format!(
            "replay group {group} on {topic} from {from_text} ({from} epoch ms)"
        )),
        "{dry}"
    );
    assert!(dry.contains("no active member"), "{dry}");
    for p in 0..PARTITIONS {
        let (e, t) = (end[&p], expected[&p]);
        let line = if e > t {
            format!(
                "partition {p}: committed {e} -> {t}: re-reads {} records (end {e})",
                e - t
            )
        } else {
            format!("partition {p}: committed {e} -> {t}: unchanged (end {e})")
        };
        assert!(
            dry.lines().any(|l| l == line),
            "missing {line:?} in:\n{dry}"
        );
    }
    let total: i64 = (0..PARTITIONS).map(|p| end[&p] - expected[&p]).sum();
    assert_eq!(total, 15, "the last 15 reports are read again");
    assert!(
        dry.contains(&format!(
            "total: 15 records read again over {PARTITIONS} partitions"
        )),
        "{dry}"
    );
    assert!(dry.contains("dry run: nothing changed"), "{dry}");
    assert_eq!(
        committed(&group, &topic),
        at_end,
        "a dry run commits nothing"
    );

    // With an active member in the group: the plan says so, and --yes is refused.
    // A static member (as the history sink with --instance-id): it stays in the group after
    // it closes, until its session times out.
    let member: BaseConsumer = nearby_common::kafka::client_config(&brokers())
        .set("group.id", &group)
        .set("group.instance.id", "replay-test-member")
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .create()
        .expect("member");
    member.subscribe(&[&topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while member.assignment().expect("assignment").count() == 0 {
        assert!(std::time::Instant::now() < deadline, "member never joined");
        let _ = member.poll(Duration::from_millis(100));
    }
    let from_ms = from.to_string();
    let args = [
        "replay", "group", "--group", &group, "--topic", &topic, "--from", &from_ms, "--yes",
    ];
    let refused = admin(&prefix, &args);
    assert!(!refused.status.success(), "a live group must be refused");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("refused"), "{err}");
    assert!(err.contains("1 active member(s)"), "{err}");
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("state Stable, 1 active member(s)"),
        "the plan is printed first"
    );
    let dry_live = stdout(&admin(&prefix, &args[..8]));
    assert!(
        dry_live.contains("--yes is refused until they stop"),
        "{dry_live}"
    );
    assert_eq!(committed(&group, &topic), at_end, "nothing committed");
    drop(member);

    // --wait: the commit waits for the member's session to end, then goes through.
    let mut waiting: Vec<&str> = args.to_vec();
    waiting.extend(["--wait", "30s"]);
    let done = stdout(&admin(&prefix, &waiting));
    assert!(
        done.contains("1 active member(s)") && done.contains("waiting up to 30s"),
        "{done}"
    );
    assert!(done.contains("committed: group"), "{done}");
    let want: BTreeMap<i32, Option<i64>> = expected.iter().map(|(p, o)| (*p, Some(*o))).collect();
    assert_eq!(committed(&group, &topic), want);

    // Again: every partition is where it should be already.
    let again = stdout(&admin(&prefix, &args[..8]));
    assert!(
        again.contains(&format!(
            "total: 0 records read again over {PARTITIONS} partitions"
        )),
        "{again}"
    );

    // `replay history` is the same on the location topic, with the steps around it.
    let history = stdout(&admin(
        &prefix,
        &["replay", "history", "--group", &group, "--from", "now-15m"],
    ));
    assert!(
        history.contains("stop every history-sink instance"),
        "{history}"
    );
    assert!(history.contains("no duplicates"), "{history}");
    assert!(
        history.contains(&format!("replay group {group} on {topic} from")),
        "{history}"
    );
    assert!(history.contains("dry run: nothing changed"), "{history}");
    assert_eq!(committed(&group, &topic), want);

    delete_topic(&topic).await;
}

#[test]
fn a_bad_time_or_a_missing_topic_is_refused_clearly() {
    let out = admin(
        "test.badtime",
        &["replay", "history", "--from", "yesterday"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RFC 3339"), "{err}");

    let out = admin(&topic_prefix(), &["replay", "history", "--from", "now-1h"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn replay_fanout_explains_a_restart() {
    let out = stdout(&admin(
        "nearby",
        &["replay", "fanout", "--location-ttl", "10m"],
    ));
    assert!(out.contains("restart its instances"), "{out}");
    assert!(out.contains("now - 10m"), "{out}");
    assert!(
        out.contains("deliveries already sent are not re-sent"),
        "{out}"
    );
}

/// Deletes this test's cache keys (`<prefix>:loc:*`) and nothing else.
async fn delete_own_keys(conn: &mut redis::aio::ConnectionManager, prefix: &str) {
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<'_, String> =
            redis::AsyncCommands::scan_match(conn, format!("{prefix}:loc:*"))
                .await
                .expect("scan");
        let mut keys = Vec::new();
        while let Some(k) = iter.next_item().await {
            keys.push(k.expect("key"));
        }
        keys
    };
    if !keys.is_empty() {
        let _: () = redis::AsyncCommands::del(conn, &keys).await.expect("del");
    }
}

#[tokio::test]
async fn replay_cache_restores_every_active_users_newest_position() {
    let prefix = topic_prefix();
    let topic = format!("{prefix}.location-updates");
    create_topic(&topic, 2).await;
    let now = now_ms();
    let min = 60_000;
    let ttl_ms = 10 * min;
    // Sockets of one session on gw-a.
    let connected = |user, ts| events::connected(user, ts, "gw-a", "s1");
    let disconnected = |user, ts| events::disconnected(user, ts, "gw-a", "s1");
    let events = vec![
        // 3: its only report is older than the TTL (first on its partition: not even read).
        (
            gateway_position(3, now - 20 * min, 10.0, 10.0),
            now - 20 * min,
        ),
        // 1: several reports; the newest by ts is not the last one on the topic.
        (
            gateway_position(1, now - 5 * min, 37.70, -122.40),
            now - 5 * min,
        ),
        (
            gateway_position(1, now - 2 * min, 37.72, -122.42),
            now - 2 * min,
        ),
        (
            gateway_position(1, now - 3 * min, 37.71, -122.41),
            now - min,
        ),
        // 2: a report, then a connect and a disconnect (nothing to cache).
        (connected(2, now - 4 * min), now - 4 * min),
        (
            gateway_position(2, now - 4 * min, 40.0, -74.0),
            now - 4 * min,
        ),
        (disconnected(2, now - min), now - min),
        // 4: an old report uploaded recently: read, but inactive by its ts.
        (gateway_position(4, now - 15 * min, 11.0, 11.0), now - min),
        // 5: connected only.
        (connected(5, now - 2 * min), now - 2 * min),
        // 6..=12: one recent report each.
        (
            gateway_position(6, now - 6 * min, 51.5, -0.1),
            now - 6 * min,
        ),
        (
            gateway_position(7, now - 3 * min, 48.85, 2.35),
            now - 3 * min,
        ),
        (
            gateway_position(8, now - 9 * min, -33.9, 151.2),
            now - 9 * min,
        ),
        (gateway_position(9, now - min, 35.7, 139.7), now - min),
        (gateway_position(10, now - 2 * min, 0.0, 0.0), now - 2 * min),
        (
            gateway_position(11, now - 7 * min, -90.0, 180.0),
            now - 7 * min,
        ),
        // 12: out of range coordinates (never accepted by ingest; skipped like fanout does).
        (gateway_position(12, now - min, 91.0, 0.0), now - min),
    ];
    produce_events(&topic, &events).await;
    // A record that is not a LocationEvent at all.
    produce(&topic, &[("13".into(), b"not avro".to_vec(), now - min)]).await;

    let expected: HashMap<i64, LatestLocation> = [
        (1, (37.72, -122.42, now - 2 * min)),
        (2, (40.0, -74.0, now - 4 * min)),
        (6, (51.5, -0.1, now - 6 * min)),
        (7, (48.85, 2.35, now - 3 * min)),
        (8, (-33.9, 151.2, now - 9 * min)),
        (9, (35.7, 139.7, now - min)),
        (10, (0.0, 0.0, now - 2 * min)),
        (11, (-90.0, 180.0, now - 7 * min)),
    ]
    .into_iter()
    .map(|(u, (lat, lon, ts))| (u, LatestLocation { lat, lon, ts }))
    .collect();
    let absent = [3, 4, 5, 12, 13];
    let all: Vec<i64> = (1..=13).collect();

    let mut conn = nearby_common::redis_store::connect(&redis_url())
        .await
        .expect("redis");
    let cache = LocationCache::new(&prefix, 600);
    delete_own_keys(&mut conn, &prefix).await;
    // 7's entry is newer than anything on the topic (fanout wrote it meanwhile): kept.
    let newer7 = LatestLocation {
        lat: 1.0,
        lon: 2.0,
        ts: now - 30_000,
    };
    cache
        .set_many_until(&mut conn, &[(7, newer7, newer7.ts + ttl_ms)])
        .await
        .expect("set");

    let dry = stdout(&admin(
        &prefix,
        &["replay", "cache", "--location-ttl", "10m"],
    ));
    assert!(dry.contains(&format!("{prefix}:loc:<user>")), "{dry}");
    assert!(dry.contains("dry run: nothing read or written"), "{dry}");
    // Every record but 3's is at or after now - TTL.
    assert!(
        dry.contains("total: 16 records to read over 2 partitions"),
        "{dry}"
    );
    let got = cache.get_many(&mut conn, &all).await.expect("get");
    assert_eq!(
        got.iter().filter(|g| g.is_some()).count(),
        1,
        "a dry run writes nothing"
    );

    let done = stdout(&admin(
        &prefix,
        &["replay", "cache", "--location-ttl", "10m", "--yes"],
    ));
    assert!(
        done.contains(
            "read 16 records: 12 positions, 3 connects/disconnects, 1 undecodable, 1 invalid positions"
        ),
        "{done}"
    );
    assert!(
        done.contains(
            "users with a position: 9; inactive by now: 1; already as new in the cache: 1"
        ),
        "{done}"
    );
    assert!(done.contains("users restored: 7"), "{done}");

    let got = cache.get_many(&mut conn, &all).await.expect("get");
    for (user, got) in all.iter().zip(&got) {
        if *user == 7 {
            assert_eq!(*got, Some(newer7), "a newer entry is left as it was");
        } else if let Some(want) = expected.get(user) {
            assert_eq!(got.as_ref(), Some(want), "user {user}");
        } else {
            assert!(absent.contains(user));
            assert_eq!(*got, None, "user {user} is not active");
        }
    }
    // Each entry expires when its user does: ts + TTL.
    let expires_at = expected[&8].ts + ttl_ms;
    let before = now_ms();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(cache.key(8))
        .query_async(&mut conn)
        .await
        .expect("pttl");
    let after = now_ms();
    assert!(
        (expires_at - after - 5..=expires_at - before + 5).contains(&pttl),
        "user 8 expires in {pttl} ms, expected {} ms",
        expires_at - before
    );

    delete_own_keys(&mut conn, &prefix).await;
    delete_topic(&topic).await;
}
