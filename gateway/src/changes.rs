//! Friendship events as the gateway sees them: it writes one after each change it makes (so
//! fanout and every other gateway act on it at once), and reads everyone's from the topic's end
//! to drop what its caches hold about the users changed.

use nearby_common::UserId;
use nearby_common::friendship::{FriendshipLog, pair_events, solo_event};
use nearby_common::kafka::recv_or_stop;
use nearby_schemas::{FriendshipEvent, FriendshipKind};
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::users::Users;

/// Announces a change to the pair `actor`–`other` (one record under each), after it is stored.
pub async fn announce_pair(
    log: &FriendshipLog,
    kind: FriendshipKind,
    actor: UserId,
    other: UserId,
) -> nearby_common::Result<()> {
    log.publish(&pair_events(
        kind,
        actor,
        other,
        nearby_common::clock::now_ms(),
    ))
    .await
}

/// Announces a change about `user` alone (sharing, profile), after it is stored.
pub async fn announce(
    log: &FriendshipLog,
    kind: FriendshipKind,
    user: UserId,
) -> nearby_common::Result<()> {
    log.publish(&[solo_event(kind, user, nearby_common::clock::now_ms())])
        .await
}

/// Runs until `shutdown`: each event drops the cached friend list and profile of its user (the
/// other side of a pair change has its own record).
pub async fn run(consumer: StreamConsumer, users: Users, shutdown: CancellationToken) {
    info!("friendship event reader started");
    while let Some(msg) = recv_or_stop(&consumer, &shutdown).await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                // The caches' TTL bounds how stale a missed change can leave them.
                warn!(error = %e, "friendship event consume error");
                continue;
            }
        };
        let Some(bytes) = msg.payload() else { continue };
        match nearby_schemas::decode::<FriendshipEvent>(bytes) {
            Ok(event) => users.invalidate(&[event.user_id]).await,
            Err(e) => {
                warn!(error = %e, offset = msg.offset(), "undecodable friendship event skipped");
            }
        }
    }
    info!("friendship event reader stopped");
}
