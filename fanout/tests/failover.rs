//! Fanout instances as real processes sharing the location topic's partitions, on the real
//! stack. While every user reports twice a second: one of two instances is killed with
//! SIGKILL, and the other takes its partitions over within the group's session timeout; then a
//! third starts, rebuilds its table, joins, and takes a share with no gap longer than the
//! rebalance. No delivery ever goes to a non-friend, and at the end every pair (all in range)
//! sees each other.
//!
//! The test plays the gateway's part itself: it produces the location events (as ingest would,
//! keyed by user) and reads the gateway's delivery topic.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nearby_common::kafka::TopicSpec;
use nearby_common::partition::partition_of_user;
use nearby_schemas::{
    Connected, DeliveryBatch, DeliveryPayload, LocationBody, LocationEvent, PositionReport,
};
use nearby_testkit::client::{get, sample};
use nearby_testkit::process::Process;
use nearby_testkit::{brokers, cql_nodes, now_ms, unique};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::time::Instant;

const PARTITIONS: i32 = 6;
const PAIRS: i64 = 30;
const GATEWAY: &str = "gw-t";
/// Every user reports this often.
const TICK: Duration = Duration::from_millis(500);
/// The group's session timeout given to the instances (the broker's minimum is 6 s).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// A fanout process in `group` (killed if dropped, so a failing test leaves none behind).
fn fanout(prefix: &str, keyspace: &str, group: &str, name: &str) -> Process {
    let args = [
        format!("--topic-prefix={prefix}"),
        format!("--cql-keyspace={keyspace}"),
        format!("--group-id={group}"),
        format!("--session-timeout={}s", SESSION_TIMEOUT.as_secs()),
        "--sweep-interval=200ms".to_owned(),
    ];
    Process::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_nearby-fanout")),
        &args,
        &format!("fanout-{name}"),
    )
}

/// What the delivery reader saw.
#[derive(Debug, Default)]
struct Seen {
    /// Per partition of the mover: the last delivery about one of its users.
    last_by_partition: HashMap<i32, Instant>,
    /// The longest wait between two deliveries about users of one partition, per phase.
    longest_gap: HashMap<usize, (Duration, i32)>,
    /// Per recipient: the last `friend_location` about its friend.
    last_by_recipient: HashMap<i64, Instant>,
    /// Deliveries to someone about a user who is not their friend.
    strangers: Vec<(i64, i64)>,
    deliveries: usize,
}

async fn produce(producer: &FutureProducer, topic: &str, event: &LocationEvent) {
    let mut buf = Vec::with_capacity(128);
    nearby_schemas::encode(event, &mut buf).expect("encodes");
    let key = event.user_id.to_string();
    producer
        .send(
            FutureRecord::to(topic).key(&key).payload(&buf),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_replaced_within_the_session_timeout_and_a_new_one_joins_without_loss()
{
    let (prefix, keyspace, group) = (unique("test."), unique("test_fo_"), unique("test-fanout-"));
    let topics = nearby_common::Topics::new(&prefix).expect("topics");
    let location = topics.location_updates();
    let deliveries = topics.deliveries(GATEWAY).expect("delivery topic");
    let admin = nearby_common::kafka::admin_client(&brokers()).expect("admin");
    let hour = Duration::from_secs(3600);
    nearby_common::kafka::ensure_topics(
        &admin,
        &[
            TopicSpec {
                name: location.clone(),
                partitions: PARTITIONS,
                replication: 1,
                retention: hour,
            },
            TopicSpec {
                name: topics.friendship_events(),
                partitions: 3,
                replication: 1,
                retention: hour,
            },
            TopicSpec {
                name: deliveries.clone(),
                partitions: 1,
                replication: 1,
                retention: hour,
            },
        ],
    )
    .await
    .expect("topics");

    // Pairs of friends, each pair together at its own spot, spread over every partition.
    let base = i64::from(rand::random::<u32>()) * 1_000 + 1_000;
    let pairs: Vec<(i64, i64)> = (0..PAIRS)
        .map(|i| (base + 2 * i, base + 2 * i + 1))
        .collect();
    let users: Vec<i64> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    let friend_of: Arc<HashMap<i64, i64>> =
        Arc::new(pairs.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect());
    let covered: HashSet<i32> = users
        .iter()
        .map(|u| partition_of_user(*u, PARTITIONS))
        .collect();
    assert_eq!(
        covered.len(),
        PARTITIONS as usize,
        "users on every partition"
    );
    let session = nearby_common::cql::connect(&cql_nodes())
        .await
        .expect("cql");
    nearby_common::users::create_schema(&session, &keyspace, 1)
        .await
        .expect("schema");
    let store = nearby_common::users::UserStore::new(session, &keyspace)
        .await
        .expect("store");
    store.bulk_create_profiles(&users, 16).await.expect("users");
    store.bulk_befriend(&pairs, 16).await.expect("friends");

    // The delivery reader, from the topic's start.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let phase = Arc::new(AtomicUsize::new(0));
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let consumer: StreamConsumer =
            nearby_common::kafka::consumer_config(&brokers(), &unique("test-read-"))
                .create()
                .expect("consumer");
        consumer.subscribe(&[&deliveries]).expect("subscribe");
        let (seen, phase, reading, friend_of) = (
            seen.clone(),
            phase.clone(),
            reading.clone(),
            friend_of.clone(),
        );
        tokio::spawn(async move {
            while reading.load(Ordering::Relaxed) {
                let Ok(Ok(msg)) =
                    tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
                else {
                    continue;
                };
                let batch: DeliveryBatch =
                    nearby_schemas::decode(msg.payload().expect("payload")).expect("a batch");
                let now = Instant::now();
                let mut seen = seen.lock().expect("lock");
                let phase = phase.load(Ordering::Relaxed);
                for d in batch.deliveries {
                    let DeliveryPayload::FriendLocation(f) = d.payload else {
                        continue;
                    };
                    seen.deliveries += 1;
                    if friend_of.get(&d.recipient_id) != Some(&f.friend_id) {
                        seen.strangers.push((d.recipient_id, f.friend_id));
                    }
                    seen.last_by_recipient.insert(d.recipient_id, now);
                    let p = partition_of_user(f.friend_id, PARTITIONS);
                    if let Some(before) = seen.last_by_partition.insert(p, now) {
                        let gap = now - before;
                        let longest = seen.longest_gap.entry(phase).or_default();
                        if gap > longest.0 {
                            *longest = (gap, p);
                        }
                    }
                }
            }
        })
    };

    let mut first = fanout(&prefix, &keyspace, &group, "first");
    let mut second = fanout(&prefix, &keyspace, &group, "second");
    first.ready(Duration::from_secs(60)).await;
    second.ready(Duration::from_secs(60)).await;

    // Every user connected to the test's gateway, then reporting each tick.
    let producer: FutureProducer = nearby_common::kafka::producer_config(&brokers())
        .create()
        .expect("producer");
    for &u in &users {
        let event = LocationEvent {
            user_id: u,
            gateway_id: Some(GATEWAY.into()),
            ts: now_ms(),
            received_at: now_ms(),
            body: LocationBody::Connected(Connected {
                session_id: format!("s{u}"),
            }),
        };
        produce(&producer, &location, &event).await;
    }
    let reporting = Arc::new(AtomicBool::new(true));
    let reporter = {
        let (producer, location, users, reporting) = (
            producer.clone(),
            location.clone(),
            users.clone(),
            reporting.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            let mut step = 0.0;
            while reporting.load(Ordering::Relaxed) {
                tick.tick().await;
                step += 1.0;
                let reports = users.iter().enumerate().map(|(i, &u)| {
                    // Each pair at its own spot, both a few metres apart, moving a little.
                    let lat = 48.85 + (i / 2) as f64 * 0.001 + (i % 2) as f64 * 0.0001;
                    let event = LocationEvent {
                        user_id: u,
                        gateway_id: Some(GATEWAY.into()),
                        ts: now_ms(),
                        received_at: now_ms(),
                        body: LocationBody::Position(PositionReport {
                            lat,
                            lon: 2.35 + step * 1e-6,
                            accuracy_m: None,
                        }),
                    };
                    let (producer, location) = (&producer, &location);
                    async move { produce(producer, location, &event).await }
                });
                futures::future::join_all(reports).await;
            }
        })
    };

    // Steady, with two instances.
    tokio::time::sleep(Duration::from_secs(6)).await;
    phase.store(1, Ordering::Relaxed);
    let killed_at = Instant::now();
    first.kill();
    // The survivor is given the dead one's partitions once the session times out.
    tokio::time::sleep(SESSION_TIMEOUT + Duration::from_secs(10)).await;
    // The survivor sent again the state of the users who reported since the dead one's last
    // commit, on the partitions it took over.
    let (_, metrics) = get(second.admin, "/metrics").await;
    let refreshed = sample(&metrics, "nearby_fanout_refreshed_total");
    assert!(
        refreshed.is_some_and(|n| n > 0),
        "the survivor refreshed the taken-over users: {refreshed:?}"
    );
    phase.store(2, Ordering::Relaxed);
    let mut third = fanout(&prefix, &keyspace, &group, "third");
    third.ready(Duration::from_secs(60)).await;
    let joined_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The third owns a share now.
    let (_, metrics) = get(third.admin, "/metrics").await;
    let owned = sample(&metrics, "nearby_fanout_owned_partitions");
    assert!(
        owned.is_some_and(|n| n > 0),
        "the third instance owns partitions: {owned:?}"
    );
    let before_end = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    reporting.store(false, Ordering::Relaxed);
    reporter.await.expect("reporter");
    tokio::time::sleep(Duration::from_secs(2)).await;
    reading.store(false, Ordering::Relaxed);
    reader.await.expect("reader");

    // The reader has ended: take what it saw (no lock held across the awaits below).
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    assert!(seen.deliveries > 0, "no delivery at all");
    assert!(
        seen.strangers.is_empty(),
        "deliveries to non-friends: {:?}",
        &seen.strangers[..seen.strangers.len().min(5)]
    );
    // Afterwards every pair sees each other: each user got its friend's latest positions.
    for &u in &users {
        let last = seen.last_by_recipient.get(&u).copied();
        assert!(
            last.is_some_and(|t| t >= before_end),
            "user {u} got nothing from its friend at the end"
        );
    }
    let gap = |phase: usize| seen.longest_gap.get(&phase).copied().unwrap_or_default();
    let (steady, killed, joined) = (gap(0), gap(1), gap(2));
    eprintln!(
        "fanout failover, {} users reporting every {TICK:?} on {PARTITIONS} partitions: longest \
         gap in one partition's deliveries: steady {:?}; after SIGKILL {:?} (partition {}; \
         session timeout {SESSION_TIMEOUT:?}); while a third joined {:?} (partition {}); {} \
         deliveries; killed at +0, third ready {:?} later",
        users.len(),
        steady.0,
        killed.0,
        killed.1,
        joined.0,
        joined.1,
        seen.deliveries,
        joined_at - killed_at,
    );
    // Resumed on the survivor within the session timeout (plus the rebalance and a tick).
    assert!(
        killed.0 < SESSION_TIMEOUT + Duration::from_secs(5),
        "deliveries stopped for {:?} after the kill",
        killed.0
    );
    // A join costs a rebalance, nothing like a session timeout.
    assert!(
        joined.0 < SESSION_TIMEOUT,
        "deliveries stopped for {:?} while the third instance joined",
        joined.0
    );
    // The orderly stop: SIGTERM ends each process cleanly, and promptly.
    for instance in [second, third] {
        instance.terminate(Duration::from_secs(15)).await;
    }
}
