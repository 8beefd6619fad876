//! Consumes this gateway's delivery topic and queues each delivery on its recipient's sockets.
//! Deliveries are live data: a gateway that starts reads from the end of its topic (older
//! deliveries are stale), and commits nothing.
//!
//! A record is a `DeliveryBatch` (one fanout step's deliveries for this gateway) or, from a
//! fanout older than batches, a single `Delivery`: both are read, so gateways can be upgraded
//! first.

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
use crate::protocol::{FriendEntry, ServerFrame, id_string, round_distance};
use crate::registry::Registry;
use crate::users::Users;

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

/// The last profile looked up: the deliveries of one batch are mostly about one friend (the one
/// who moved), so one look-up serves them all.
#[derive(Debug, Default)]
pub struct ProfileMemo(Option<(UserId, Option<Arc<Profile>>)>);

impl ProfileMemo {
    async fn get(&mut self, users: &Users, user: UserId) -> Option<Arc<Profile>> {
        if let Some((u, p)) = &self.0
            && *u == user
        {
            return p.clone();
        }
        let p = users.profile(user).await.ok().flatten();
        self.0 = Some((user, p.clone()));
        p
    }
}

/// The frame a client gets for a delivery (`None` if the friend's profile is gone).
pub async fn frame(
    users: &Users,
    memo: &mut ProfileMemo,
    payload: &DeliveryPayload,
) -> Option<ServerFrame> {
    match payload {
        DeliveryPayload::FriendLocation(f) => {
            // Fanout decides who may see whom (it applies sharing switches in order with the
            // positions); here only the name is looked up.
            let profile = memo.get(users, f.friend_id).await?;
            Some(ServerFrame::FriendLocation(FriendEntry {
                user_id: id_string(f.friend_id),
                name: profile.name.clone(),
                lat: f.lat,
                lon: f.lon,
                distance_m: round_distance(f.distance_m),
                updated_at: f.updated_at,
            }))
        }
        DeliveryPayload::FriendLeft(f) => Some(ServerFrame::FriendLeft {
            user_id: id_string(f.friend_id),
            reason: f.reason.as_protocol_str(),
        }),
    }
}

/// Runs until `shutdown`: every delivery goes to the recipient's queues.
pub async fn run(
    consumer: StreamConsumer<LagStats>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    users: Users,
    shutdown: CancellationToken,
) {
    info!("delivery consumer started");
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
        // A fresh memo per record: a profile edit's cache invalidation shows at the next one.
        let mut memo = ProfileMemo::default();
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
        for delivery in deliveries {
            if let Some(frame) = frame(&users, &mut memo, &delivery.payload).await {
                let n = registry.push(delivery.recipient_id, &frame);
                debug!(recipient = delivery.recipient_id, sockets = n, "delivered");
            }
        }
    }
    info!("delivery consumer stopped");
}
