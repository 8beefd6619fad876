//! The friendship events topic: what the gateways write after each change to a friendship, a
//! sharing switch or a profile, and the tail readers fanout and the gateways use to act on it
//! at once (links, `friend_left`, cache invalidation).

use std::time::Duration;

use nearby_schemas::{FriendshipEvent, FriendshipKind};
use rdkafka::consumer::StreamConsumer;

use crate::{Error, Result, UserId};

/// How long a change notice may take to be acknowledged before the call reports failure.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The two records of a change to the pair `actor`–`other`: one under each user, so each
/// user's changes stay in order on their own partition.
pub fn pair_events(
    kind: FriendshipKind,
    actor: UserId,
    other: UserId,
    at: i64,
) -> [FriendshipEvent; 2] {
    [
        FriendshipEvent {
            user_id: actor,
            other_id: Some(other),
            kind,
            actor: true,
            at,
        },
        FriendshipEvent {
            user_id: other,
            other_id: Some(actor),
            kind,
            actor: false,
            at,
        },
    ]
}

/// The record of a change about `user` alone (sharing, profile).
pub fn solo_event(kind: FriendshipKind, user: UserId, at: i64) -> FriendshipEvent {
    FriendshipEvent {
        user_id: user,
        other_id: None,
        kind,
        actor: true,
        at,
    }
}

/// Writes change records to the friendship events topic, keyed by user, waiting for the ack.
#[derive(Clone)]
pub struct FriendshipLog {
    producer: crate::producer::AckedProducer,
    topic: String,
}

impl std::fmt::Debug for FriendshipLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FriendshipLog")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl FriendshipLog {
    /// A writer for `topic` on `brokers`.
    pub fn new(brokers: &str, topic: String) -> Result<Self> {
        let mut config = crate::kafka::producer_config(brokers);
        // Changes are rare and someone is waiting on each: send at once, do not batch.
        config.set("linger.ms", "0").set(
            "message.timeout.ms",
            PUBLISH_TIMEOUT.as_millis().to_string(),
        );
        Ok(Self {
            producer: crate::producer::AckedProducer::acked(&config)?,
            topic,
        })
    }

    /// The topic written.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `events` and returns once the brokers hold every one (`acks=all`).
    pub async fn publish(&self, events: &[FriendshipEvent]) -> Result<()> {
        let mut sends = Vec::with_capacity(events.len());
        for event in events {
            let payload = nearby_schemas::to_vec(event)?;
            let key = event.user_id.to_string();
            // Enqueue all before awaiting any: the records of one change travel together.
            let send = self
                .producer
                .send(&self.topic, &key, &payload)
                .map_err(|source| Error::Produce {
                    topic: self.topic.clone(),
                    source,
                })?;
            sends.push(send);
        }
        for send in sends {
            if let Err(source) = send.await {
                return Err(Error::Produce {
                    topic: self.topic.clone(),
                    source,
                });
            }
        }
        Ok(())
    }
}

/// A reader of every partition of the friendship events topic from its current end, with no
/// group: each gateway and fanout instance needs every change, and none from before it started
/// (what it loads from the user store afterwards is already newer).
fn tail_reader(brokers: &str, reader: &str, topic: &str) -> Result<StreamConsumer> {
    let mut config = crate::kafka::client_config(brokers);
    config
        .set("group.id", format!("{reader}-changes"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        // The broker answers a fetch as soon as one record is there (fetch.min.bytes 1): the
        // wait only bounds how often an idle reader asks again (10 ms doubled idle CPU).
        .set("fetch.wait.max.ms", "100");
    let consumer: StreamConsumer = config.create()?;
    crate::kafka::assign_from_end(&consumer, topic)?;
    Ok(consumer)
}

/// [`tail_reader`], once the topic exists and has its leaders (waited for as
/// [`crate::startup`] says): what a stage calls at start-up.
pub async fn tail_reader_ready(
    startup: &crate::startup::Startup,
    brokers: &str,
    reader: &str,
    topic: &str,
) -> Result<StreamConsumer> {
    startup.topic(brokers, topic).await?;
    startup
        .retry(&format!("the end offsets of topic {topic}"), || async {
            tail_reader(brokers, reader, topic)
        })
        .await
}
