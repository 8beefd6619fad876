//! `rebuild`'s producing child: the users' events into the location topic, as ingest writes
//! them, from a process of its own so that neither its CPU nor its memory is the measured
//! instance's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use nearby_common::clock::now_ms;
use nearby_common::kafka;
use nearby_schemas::{Connected, LocationBody, LocationEvent, PositionReport};
use rand::Rng;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::{RebuildArgs, Run};

/// Where the users stand: a box of about 30 km around San Francisco.
const HOME: (f64, f64) = (37.7749, -122.4194);
const HALF_BOX_DEG: (f64, f64) = (0.135, 0.17);

/// Starts the child process that produces `per_user` reports of every user.
pub(super) fn producing_child(
    args: &RebuildArgs,
    run: &Run,
    per_user: u64,
    connect_first: bool,
) -> anyhow::Result<std::process::Child> {
    std::process::Command::new(std::env::current_exe()?)
        .arg("rebuild")
        .args(connect_first.then_some("--connect-first"))
        .args([
            format!("--produce-into={}", run.location_topic),
            format!("--user-base={}", run.user_base),
            format!("--users={}", args.users),
            format!("--reports-per-user={per_user}"),
            format!("--gateway={}", args.gateway),
            format!("--kafka-brokers={}", args.stack.kafka_brokers),
        ])
        .spawn()
        .context("starting the producing child")
}

/// Profiles for every user and `friends / 2` friendships each (user i with the next ids, a
/// Counts the broker's acks.
#[derive(Debug, Default)]
struct Acks {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        let counter = if result.is_ok() {
            &self.ok
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The child process: every user's reports into `topic`, as fast as the producer takes them,
/// each user's in order (round by round: all users' first report, then all their second).
pub(super) fn produce(args: &RebuildArgs, topic: &str) -> anyhow::Result<()> {
    let producer: ThreadedProducer<Acks> = kafka::producer_config(&args.stack.kafka_brokers)
        .set("queue.buffering.max.messages", "500000")
        .create_with_context(Acks::default())?;
    let mut rng = rand::rng();
    let mut payload = Vec::with_capacity(96);
    // An event of the i-th user with `body`, as ingest writes it (now, from the run's gateway).
    let mut send = |i: u64, body: LocationBody| -> anyhow::Result<()> {
        let user_id = args.user_base + i64::try_from(i)?;
        let now = now_ms();
        let event = LocationEvent {
            user_id,
            gateway_id: Some(args.gateway.clone()),
            ts: now,
            received_at: now,
            body,
        };
        payload.clear();
        nearby_schemas::encode(&event, &mut payload)?;
        let key = nearby_common::ids::user_key(user_id);
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    };
    if args.connect_first {
        for i in 0..args.users {
            let session_id = format!("rebuild-{}", args.user_base + i64::try_from(i)?);
            send(i, LocationBody::Connected(Connected { session_id }))?;
        }
    }
    for _ in 0..args.reports_per_user {
        for i in 0..args.users {
            let position = PositionReport {
                lat: HOME.0 + rng.random_range(-HALF_BOX_DEG.0..HALF_BOX_DEG.0),
                lon: HOME.1 + rng.random_range(-HALF_BOX_DEG.1..HALF_BOX_DEG.1),
                accuracy_m: Some(10.0),
            };
            send(i, LocationBody::Position(position))?;
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let acks = producer.context();
    let (ok, failed) = (
        acks.ok.load(Ordering::Relaxed),
        acks.failed.load(Ordering::Relaxed),
    );
    let want = args.users * (args.reports_per_user + u64::from(args.connect_first));
    anyhow::ensure!(
        failed == 0 && ok == want,
        "{ok} of {want} acked, {failed} failed"
    );
    Ok(())
}
