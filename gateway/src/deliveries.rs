//! Consumes this gateway's delivery topic and queues each delivery on its recipient's sockets.
//! Deliveries are live data: a gateway that starts reads from the end of its topic (older
//! deliveries are stale), and offsets are committed in the background, not per record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nearby_schemas::{Delivery, DeliveryPayload};
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::protocol::{FriendEntry, ServerFrame, id_string, round_distance};
use crate::registry::Registry;
use crate::users::Users;

/// Marks the gateway ready once its delivery partitions are assigned: before that, deliveries
/// produced for its sockets would be skipped (it starts from the end of the topic).
#[derive(Debug, Default)]
pub struct AssignmentFlag(pub Arc<AtomicBool>);

impl ClientContext for AssignmentFlag {}

impl ConsumerContext for AssignmentFlag {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Only signal here; the run loop does the work (callbacks run on librdkafka's thread).
        match rebalance {
            Rebalance::Assign(tpl) => self.0.store(tpl.count() > 0, Ordering::Release),
            Rebalance::Revoke(_) => self.0.store(false, Ordering::Release),
            Rebalance::Error(_) => {}
        }
    }
}

/// The consumer of `topic`, in the gateway's own group.
pub fn consumer(
    brokers: &str,
    gateway_id: &str,
    topic: &str,
    ready: Arc<AtomicBool>,
) -> rdkafka::error::KafkaResult<StreamConsumer<AssignmentFlag>> {
    let mut config = nearby_common::kafka::client_config(brokers);
    config
        .set("group.id", format!("nearby-gateway-{gateway_id}"))
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "true")
        // Low fetch wait: these records are on their way to a screen.
        .set("fetch.wait.max.ms", "10");
    let consumer: StreamConsumer<AssignmentFlag> =
        config.create_with_context(AssignmentFlag(ready))?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// The frame a client gets for a delivery (`None` if the friend's profile is gone).
pub async fn frame(users: &Users, payload: &DeliveryPayload) -> Option<ServerFrame> {
    match payload {
        DeliveryPayload::FriendLocation(f) => {
            let profile = users.profile(f.friend_id).await.ok().flatten()?;
            // A friend who turned sharing off is never shown, whatever is in flight.
            if !profile.sharing {
                return None;
            }
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
    consumer: StreamConsumer<AssignmentFlag>,
    registry: Arc<Registry>,
    users: Users,
    shutdown: CancellationToken,
) {
    info!("delivery consumer started");
    loop {
        let msg = tokio::select! {
            // Stop promptly on shutdown; an unfinished delivery is worthless after it.
            biased;
            () = shutdown.cancelled() => break,
            msg = consumer.recv() => msg,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "delivery consume error");
                continue;
            }
        };
        let Some(bytes) = msg.payload() else { continue };
        let delivery: Delivery = match nearby_schemas::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                // A poison record is logged and skipped: it must not stop the stream.
                warn!(error = %e, offset = msg.offset(), "undecodable delivery skipped");
                continue;
            }
        };
        if let Some(frame) = frame(&users, &delivery.payload).await {
            let n = registry.push(delivery.recipient_id, &frame);
            debug!(recipient = delivery.recipient_id, sockets = n, "delivered");
        }
    }
    info!("delivery consumer stopped");
}
