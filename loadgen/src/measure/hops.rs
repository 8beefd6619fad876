//! Where a report's milliseconds go, for `measure latency --hops`: a reader of the location
//! topic and every gateway's delivery topic notes, for the measured senders' reports, when the
//! gateway received each (the event's `received_at`) and when fanout produced its delivery to
//! the receiver (the delivery record's timestamp, set by fanout's producer). With the send and
//! receive times the client took, a report's way to the friend's screen splits in three:
//! client → gateway, gateway → Kafka → fanout → its delivery produced, and Kafka → gateway →
//! the receiver's socket. The record times are whole milliseconds, so is each hop.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nearby_common::stack::StackArgs;
use nearby_schemas::{DeliveryBatch, DeliveryPayload, LocationBody, LocationEvent};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long the reader waits for the topics' metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// What the reader noted, by report: (sender, ts).
#[derive(Debug, Default)]
pub(super) struct Hops {
    /// When the gateway received the report, epoch ms.
    pub(super) received: HashMap<(i64, i64), i64>,
    /// When fanout produced its delivery (to anyone), epoch ms.
    pub(super) produced: HashMap<(i64, i64), i64>,
}

impl Hops {
    /// The three hops of a report `ts` of `sender` sent at `send_us` and received at `at_us`,
    /// ms, when both records were seen.
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn split(&self, sender: i64, ts: i64, send_us: i64, at_us: i64) -> Option<[f64; 3]> {
        let received = *self.received.get(&(sender, ts))?;
        let produced = *self.produced.get(&(sender, ts))?;
        Some([
            (received * 1000 - send_us) as f64 / 1000.0,
            (produced - received) as f64,
            (at_us - produced * 1000) as f64 / 1000.0,
        ])
    }
}

/// The running reader.
#[derive(Debug)]
pub(super) struct HopReader {
    task: JoinHandle<Hops>,
    stop: watch::Sender<bool>,
}

impl HopReader {
    /// Starts reading, from their ends now, the location topic and every delivery topic of the
    /// system `stack` names, noting the reports of `senders` only (the memory stays theirs).
    pub(super) fn start(stack: &StackArgs, senders: HashSet<i64>) -> anyhow::Result<Self> {
        let topics = stack.topics()?;
        let location = topics.location_updates();
        let deliveries = format!("{}.deliveries.", stack.topic_prefix);
        let mut config = nearby_common::kafka::client_config(&stack.kafka_brokers);
        config
            .set("enable.auto.commit", "false")
            .set("group.id", "nearby-loadgen-hops");
        let consumer: StreamConsumer = config.create()?;
        let metadata = consumer.fetch_metadata(None, METADATA_TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        for t in metadata.topics() {
            if t.name() == location || t.name().starts_with(&deliveries) {
                for p in t.partitions() {
                    assignment.add_partition_offset(t.name(), p.id(), Offset::End)?;
                }
            }
        }
        anyhow::ensure!(
            assignment.count() > 0,
            "no topic {location} to read: is the system running with this topic prefix?"
        );
        consumer.assign(&assignment)?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut hops = Hops::default();
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    msg = consumer.recv() => {
                        let Ok(msg) = msg else { continue };
                        let Some(bytes) = msg.payload() else { continue };
                        if msg.topic() == location {
                            note_report(&mut hops, &senders, bytes);
                        } else if let Some(at) = msg.timestamp().to_millis() {
                            note_deliveries(&mut hops, &senders, bytes, at);
                        }
                    }
                }
            }
            hops
        });
        Ok(Self { task, stop })
    }

    /// Stops the reader and hands over what it noted.
    pub(super) async fn finish(self) -> Hops {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// A location event: when the gateway received a sender's report.
fn note_report(hops: &mut Hops, senders: &HashSet<i64>, bytes: &[u8]) {
    if let Ok(e) = nearby_schemas::decode::<LocationEvent>(bytes)
        && matches!(e.body, LocationBody::Position(_))
        && senders.contains(&e.user_id)
    {
        hops.received.insert((e.user_id, e.ts), e.received_at);
    }
}

/// A delivery record produced at `at`: the first delivery of each sender's report.
fn note_deliveries(hops: &mut Hops, senders: &HashSet<i64>, bytes: &[u8], at: i64) {
    let Ok(batch) = nearby_schemas::decode::<DeliveryBatch>(bytes) else {
        return;
    };
    for d in batch.deliveries {
        if let DeliveryPayload::FriendLocation(f) = d.payload
            && senders.contains(&f.friend_id)
        {
            hops.produced
                .entry((f.friend_id, f.updated_at))
                .or_insert(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use nearby_schemas::{Delivery, FriendLocation, PositionReport};

    use super::*;

    fn report(user: i64, ts: i64, received_at: i64) -> Vec<u8> {
        let e = LocationEvent {
            user_id: user,
            gateway_id: Some("gw".into()),
            ts,
            received_at,
            body: LocationBody::Position(PositionReport {
                lat: 1.0,
                lon: 2.0,
                accuracy_m: None,
            }),
        };
        nearby_schemas::to_vec(&e).expect("encodes")
    }

    fn delivery(recipient: i64, friend: i64, updated_at: i64) -> Delivery {
        Delivery {
            recipient_id: recipient,
            payload: DeliveryPayload::FriendLocation(FriendLocation {
                friend_id: friend,
                lat: 1.0,
                lon: 2.0,
                distance_m: 300.0,
                updated_at,
            }),
        }
    }

    #[test]
    fn a_report_splits_into_its_three_hops_from_the_records_of_its_sender() {
        let senders: HashSet<i64> = [7].into();
        let mut hops = Hops::default();
        note_report(&mut hops, &senders, &report(7, 1_000, 1_002));
        note_report(&mut hops, &senders, &report(8, 1_000, 1_001));
        let batch = DeliveryBatch {
            deliveries: vec![delivery(9, 8, 1_000), delivery(9, 7, 1_000)],
        };
        let bytes = nearby_schemas::to_vec(&batch).expect("encodes");
        note_deliveries(&mut hops, &senders, &bytes, 1_005);
        // A later record about the same report (to another recipient) does not move it.
        note_deliveries(&mut hops, &senders, &bytes, 1_009);
        // Sent at 1,001.5 ms, received by the gateway at 1,002, produced at 1,005, on the
        // receiver's socket at 1,008.25.
        assert_eq!(
            hops.split(7, 1_000, 1_001_500, 1_008_250),
            Some([0.5, 3.0, 3.25])
        );
        // Not a sender measured, or a report never seen: no split.
        assert_eq!(hops.split(8, 1_000, 1_000_000, 1_009_000), None);
        assert_eq!(hops.split(7, 2_000, 1_000_000, 1_009_000), None);
    }
}
