//! Adding partitions to the location topic while the system runs: two friends whose partition
//! changes when the topic goes from 3 to 6 partitions keep seeing each other. Fanout picks the
//! new partitions up (reads them, owns them), the gateway's producer moves their reports to
//! the new partitions, and each friend receives the other's new position from there.

use std::time::Duration;

use nearby_common::partition::partition_of_user;
use nearby_schemas::{LocationBody, LocationEvent};
use nearby_system_tests::{TestFanout, system, wait_changes};
use nearby_testkit::client::sample;
use nearby_testkit::pipeline::*;
use nearby_testkit::records::partition_records;
use nearby_testkit::{Client, brokers, http, now_ms, user};
use rdkafka::admin::{AdminOptions, NewPartitions};
use tokio::time::Instant;

/// A user whose partition changes when the topic goes from 3 to 6 partitions (half of them:
/// `hash % 6` in 3..6), and where it goes.
fn moving_user() -> (i64, i32, i32) {
    loop {
        let u = user();
        let (before, after) = (partition_of_user(u, 3), partition_of_user(u, 6));
        if before != after {
            return (u, before, after);
        }
    }
}

/// Every location event on `partition` of `<prefix>.location-updates`, up to its end now.
async fn records_on(prefix: &str, partition: i32) -> Vec<LocationEvent> {
    partition_records(prefix, Some(partition)).await
}

/// Whether `user`'s position report at `ts` is on `partition`.
async fn report_on(prefix: &str, partition: i32, user: i64, ts: i64) -> bool {
    records_on(prefix, partition)
        .await
        .iter()
        .any(|e| e.user_id == user && e.ts == ts && matches!(e.body, LocationBody::Position(_)))
}

/// The `friend_location` about `friend` with `updated_at == ts`, within `secs`, skipping others.
async fn location_at(c: &mut Client, friend: i64, ts: i64, secs: u64) -> Option<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        if left == 0 {
            return None;
        }
        let v = location_of(c, friend, left).await?;
        if v["updated_at"] == ts {
            return Some(v);
        }
    }
}

/// The value of the sample `line` (name and labels) on fanout's `/metrics`, if present.
async fn fanout_metric(fanout: &TestFanout, line: &str) -> Option<i64> {
    let (_, body) = http(fanout.admin, "GET", "/metrics", None, None).await;
    sample(body.as_str().unwrap_or_default(), line)
}

/// Reports `at` for `me` until one report lands on `partition` (the gateway's producer learns
/// of new partitions at its next metadata refresh, within 10 s); returns that report's `ts`.
async fn report_until_on(
    prefix: &str,
    c: &mut Client,
    me: i64,
    at: (f64, f64),
    partition: i32,
) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let ts = now_ms();
        report(c, at, ts).await;
        // The gateway produces with a few ms of linger: give it a moment to be acked.
        let seen = Instant::now() + Duration::from_secs(3);
        while Instant::now() < seen {
            if report_on(prefix, partition, me, ts).await {
                return ts;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            Instant::now() < deadline,
            "user {me}'s reports never reached partition {partition}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_keep_seeing_each_other_when_partitions_are_added() {
    let started = Instant::now();
    let (gw, fanout) = system(&[], &[]).await;
    let prefix = gw.prefix.clone();
    let topic = format!("{prefix}.location-updates");
    let ((a, a_before, a_after), (b, b_before, b_after)) = (moving_user(), moving_user());
    befriend(&gw, a, b).await;
    wait_changes(&fanout, 2).await;
    let mut ca = gw.connect(a).await;
    let mut cb = gw.connect(b).await;

    // Before: with 3 partitions, both see each other, from the old partitions.
    let t0 = now_ms();
    report(&mut ca, HOME, t0).await;
    ca.next_of("nearby", 10).await.expect("A's first page");
    let t1 = now_ms();
    report(&mut cb, north(1_000.0), t1).await;
    let seen = location_at(&mut ca, b, t1, 10).await.expect("A sees B");
    assert_distance(&seen, HOME, north(1_000.0));
    // B learns of A in its first page or as a delivery, depending on who is first.
    let page = cb.next_of("nearby", 10).await.expect("B's first page");
    if page["friends"][0]["user_id"] != *a.to_string() {
        location_at(&mut cb, a, t0, 10).await.expect("B sees A");
    }
    assert!(report_on(&prefix, a_before, a, t0).await, "A on {a_before}");
    assert!(report_on(&prefix, b_before, b, t1).await, "B on {b_before}");

    // The operator adds partitions (what `nearby-admin topics grow --yes` does).
    let admin = nearby_common::kafka::admin_client(&brokers()).expect("admin client");
    let results = admin
        .create_partitions(
            &[NewPartitions::new(&topic, 6)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_partitions");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let grown = Instant::now();
    let grown_ms = now_ms();

    // Fanout reads the new partitions (their lag shows) and owns them (its group rebalanced).
    // Meanwhile A goes on reporting, as phones do: what becomes of those reports is printed
    // (not asserted: it depends on which client refreshes its metadata first).
    let mut during = Vec::new();
    let deadline = grown + Duration::from_secs(30);
    loop {
        let lag5 = fanout_metric(&fanout, "nearby_fanout_lag{partition=\"5\"}").await;
        let owned = fanout_metric(&fanout, "nearby_fanout_owned_partitions").await;
        if lag5.is_some() && owned == Some(6) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fanout does not read and own 6 partitions: lag of partition 5 {lag5:?}, owned {owned:?}"
        );
        // Under the per-user rate limit (1 a second).
        if during.len() < 20
            && grown.elapsed() >= Duration::from_millis(1_250) * during.len() as u32
        {
            let ts = now_ms();
            report(&mut ca, north(10.0 * during.len() as f64), ts).await;
            during.push(ts);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let owned_after = grown.elapsed();
    let frames = drain(&mut cb, 3).await;
    let delivered = |ts: i64| {
        frames.iter().any(|f| {
            f["type"] == "friend_location"
                && f["user_id"] == *a.to_string()
                && f["updated_at"] == ts
        })
    };
    let (old_records, new_records) = (
        records_on(&prefix, a_before).await,
        records_on(&prefix, a_after).await,
    );
    let on =
        |records: &[LocationEvent], ts: i64| records.iter().any(|e| e.user_id == a && e.ts == ts);
    let mut summary = Vec::new();
    for &ts in &during {
        let partition = if on(&new_records, ts) {
            a_after
        } else if on(&old_records, ts) {
            a_before
        } else {
            -1
        };
        summary.push(format!(
            "+{}ms p{partition} {}",
            ts - grown_ms,
            if delivered(ts) {
                "delivered"
            } else {
                "NOT delivered"
            }
        ));
    }
    eprintln!(
        "fanout reads and owns 6 partitions {owned_after:?} after the grow; A's reports meanwhile: {summary:?}"
    );
    // Whatever became of each one (a report on a partition nobody owned yet is fanned out by
    // no one), once fanout owns the new partitions B has A's latest: the takeover sends the
    // recent users' state again.
    if let Some(&last) = during.last() {
        assert!(
            delivered(last),
            "B does not have A's latest position ({summary:?})"
        );
    }

    // After: each one's report lands on its new partition, and the friend gets it, with the
    // new distance.
    let ta = report_until_on(&prefix, &mut ca, a, north(3_000.0), a_after).await;
    let seen = location_at(&mut cb, a, ta, 10)
        .await
        .expect("B sees A's report from its new partition");
    assert_distance(&seen, north(1_000.0), north(3_000.0));
    let tb = report_until_on(&prefix, &mut cb, b, north(3_500.0), b_after).await;
    let seen = location_at(&mut ca, b, tb, 10)
        .await
        .expect("A sees B's report from its new partition");
    assert_distance(&seen, north(3_000.0), north(3_500.0));
    eprintln!(
        "partitions {a_before} -> {a_after} and {b_before} -> {b_after}: both seen again {:?} \
         after the grow, {:?} in all",
        grown.elapsed(),
        started.elapsed()
    );

    fanout.stop().await;
    gw.stop().await;
    nearby_common::kafka::delete_topics(
        &admin,
        &[
            &topic,
            &format!("{prefix}.friendship-events"),
            &format!("{prefix}.deliveries.gw-a"),
        ],
    )
    .await
    .expect("cleanup");
}
