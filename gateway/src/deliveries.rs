//! Reads this gateway's delivery topic and writes each delivery to its recipient's sockets,
//! straight from the reader (a socket that would block queues it; see [`crate::writer`]).
//! Deliveries are live data: a gateway that starts reads from the end of its topic (older
//! deliveries are stale), and commits nothing.
//!
//! A record is a `DeliveryBatch` (one fanout step's deliveries for this gateway) or, from a
//! fanout older than batches, a single `Delivery`: both are read, so gateways can be upgraded
//! first.

use std::collections::HashMap;
use std::sync::Arc;

use nearby_common::UserId;
use nearby_common::kafka::recv_or_stop;
use nearby_common::lag::LagStats;
use nearby_common::users::Profile;
use nearby_schemas::{Delivery, DeliveryBatch, DeliveryPayload, Error as SchemaError};
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::protocol::{DeliveryFrame, round_distance};
use crate::registry::Registry;
use crate::users::Users;
use crate::writer::Frame;
use crate::wsframe::FrameBuilder;

/// The name of the delivery reader's thread (what `/proc/<pid>/task/*/comm` shows; 15 bytes
/// at most).
pub const THREAD_NAME: &str = "gw-deliveries";

/// The consumer of `topic`: every partition of this gateway's own topic, assigned directly (no
/// group: no other process reads it) from the end the topic has now. Deliveries are live data;
/// older ones are stale. Starting from an offset read before `assign` (rather than from
/// `auto.offset.reset`, resolved some time after it) means every delivery produced once this
/// returns is read, so readiness can be raised right away.
pub fn consumer(
    brokers: &str,
    gateway_id: &str,
    topic: &str,
    stats: LagStats,
) -> nearby_common::Result<StreamConsumer<LagStats>> {
    let mut config = nearby_common::kafka::client_config(brokers);
    // Its lag (`/metrics`) comes from the client's statistics every 5 s.
    nearby_common::lag::with_lag_stats(&mut config, std::time::Duration::from_secs(5));
    config
        .set("group.id", format!("nearby-gateway-{gateway_id}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        // The broker answers a fetch as soon as one record is there (fetch.min.bytes 1): the
        // wait only bounds how often an idle reader asks again (10 ms doubled idle CPU).
        .set("fetch.wait.max.ms", "100");
    let consumer: StreamConsumer<LagStats> = config.create_with_context(stats)?;
    nearby_common::kafka::assign_from_end(&consumer, topic)?;
    Ok(consumer)
}

/// Decodes a record of the delivery topic: a batch, or a single delivery from an older fanout.
pub fn decode(bytes: &[u8]) -> Result<Vec<Delivery>, SchemaError> {
    match nearby_schemas::decode::<DeliveryBatch>(bytes) {
        Ok(batch) => Ok(batch.deliveries),
        Err(SchemaError::WrongRecordType { .. }) => {
            nearby_schemas::decode::<Delivery>(bytes).map(|d| vec![d])
        }
        Err(e) => Err(e),
    }
}

/// The display names of the friends one record is about, each looked up once: a batch's
/// deliveries are mostly about a few friends (the ones who moved).
#[derive(Debug, Default)]
pub struct Names(HashMap<UserId, Option<Arc<Profile>>>);

impl Names {
    /// Looks up the name of every friend whose position `deliveries` carry (a fresh set per
    /// record: a profile edit's cache invalidation shows at the next one).
    pub async fn resolve(&mut self, users: &Users, deliveries: &[Delivery]) {
        self.0.clear();
        for d in deliveries {
            if let DeliveryPayload::FriendLocation(f) = &d.payload
                && !self.0.contains_key(&f.friend_id)
            {
                let profile = users.profile(f.friend_id).await.ok().flatten();
                self.0.insert(f.friend_id, profile);
            }
        }
    }

    /// Sets a friend's profile (benches and tests build batches without a user store).
    pub fn insert(&mut self, user: UserId, profile: Option<Arc<Profile>>) {
        self.0.insert(user, profile);
    }

    fn name(&self, user: UserId) -> Option<&str> {
        self.0.get(&user)?.as_deref().map(|p| p.name.as_str())
    }
}

/// Turns a record's deliveries into socket-ready frames and writes them: each frame's bytes are
/// built once, into one buffer per record, and a recipient's frames of one record go out in one
/// write. Its buffers are kept from record to record.
#[derive(Debug, Default)]
pub struct Dispatcher {
    frames: FrameBuilder,
    out: Vec<(UserId, Frame)>,
    group: Vec<Frame>,
}

impl Dispatcher {
    /// The frames of `deliveries`, in order (`None` where the friend's profile is gone: fanout
    /// decides who may see whom, applying sharing switches in order with the positions; here
    /// only the name is looked up).
    pub fn render(&mut self, deliveries: &[Delivery], names: &Names) {
        self.out.clear();
        self.frames.reserve(deliveries.len() * 160);
        let mut id = itoa::Buffer::new();
        for d in deliveries {
            let (friend, frame) = match &d.payload {
                DeliveryPayload::FriendLocation(f) => {
                    let Some(name) = names.name(f.friend_id) else {
                        continue;
                    };
                    let frame = DeliveryFrame::FriendLocation {
                        user_id: id.format(f.friend_id),
                        name,
                        lat: f.lat,
                        lon: f.lon,
                        distance_m: round_distance(f.distance_m),
                        updated_at: f.updated_at,
                    };
                    (f.friend_id, self.frames.text(&frame))
                }
                DeliveryPayload::FriendLeft(f) => {
                    let frame = DeliveryFrame::FriendLeft {
                        user_id: id.format(f.friend_id),
                        reason: f.reason.as_protocol_str(),
                    };
                    (f.friend_id, self.frames.text(&frame))
                }
            };
            self.out.push((
                d.recipient_id,
                Frame {
                    friend: Some(friend),
                    bytes: frame,
                },
            ));
        }
    }

    /// Writes the rendered frames to their recipients' sockets, each recipient's in one write,
    /// in the order rendered; returns how many socket writes were asked for.
    pub fn dispatch(&mut self, registry: &Registry) -> usize {
        // A stable sort: one recipient's frames keep their order.
        self.out.sort_by_key(|(recipient, _)| *recipient);
        let mut writes = 0;
        for run in self.out.chunk_by(|a, b| a.0 == b.0) {
            let recipient = run[0].0;
            let frames = if let [(_, one)] = run {
                std::slice::from_ref(one)
            } else {
                self.group.clear();
                self.group.extend(run.iter().map(|(_, f)| f.clone()));
                &self.group[..]
            };
            writes += registry.send(recipient, frames);
        }
        writes
    }
}

/// Runs until `shutdown`: every delivery goes to its recipient's sockets.
pub async fn run(
    consumer: StreamConsumer<LagStats>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    users: Users,
    shutdown: CancellationToken,
) {
    info!("delivery reader started");
    let mut names = Names::default();
    let mut dispatcher = Dispatcher::default();
    // Stops promptly on shutdown: an unfinished delivery is worthless after it.
    while let Some(msg) = recv_or_stop(&consumer, &shutdown).await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                Metrics::count(&metrics.delivery_errors, "kind", "consume", 1);
                warn!(error = %e, "delivery consume error");
                continue;
            }
        };
        metrics.delivery_records.inc();
        let Some(bytes) = msg.payload() else { continue };
        let deliveries = match decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                // A poison record is logged, counted and skipped: it must not stop the stream.
                Metrics::count(&metrics.delivery_errors, "kind", "undecodable", 1);
                warn!(error = %e, offset = msg.offset(), "undecodable delivery skipped");
                continue;
            }
        };
        // Counted per record, not per delivery: a labelled counter's look-up allocates.
        let lefts = deliveries
            .iter()
            .filter(|d| matches!(d.payload, DeliveryPayload::FriendLeft(_)))
            .count() as u64;
        let locations = deliveries.len() as u64 - lefts;
        for (kind, n) in [("friend_location", locations), ("friend_left", lefts)] {
            if n > 0 {
                Metrics::count(&metrics.deliveries, "kind", kind, n);
            }
        }
        names.resolve(&users, &deliveries).await;
        dispatcher.render(&deliveries, &names);
        let writes = dispatcher.dispatch(&registry);
        debug!(deliveries = deliveries.len(), writes, "delivered");
    }
    info!("delivery reader stopped");
}
