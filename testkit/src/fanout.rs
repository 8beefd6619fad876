//! Fanout in tests: [`TestFanout`], the real service in-process beside a test's gateways (its
//! admin port on loopback port 0, returned once `/readyz` answers), and look-ups in the
//! [`Effects`] its core returns, for the core's own tests.

use nearby_fanout::service::FanoutService;
use nearby_fanout::{Effects, RoutedDelivery};
use nearby_schemas::{DeliveryPayload, FriendLeft, FriendLocation};

use crate::names::unique;
use crate::stage::{TestStage, args};

/// A running fanout instance: its counters (events and changes applied) and its admin port.
pub type TestFanout = TestStage<FanoutService>;

impl TestFanout {
    /// Starts fanout on `prefix` and `keyspace` in a fresh group, sweeping every 200 ms, with
    /// `extra` command-line settings; returns once `/readyz` answers.
    pub async fn start(prefix: &str, keyspace: &str, extra: &[&str]) -> Self {
        let own = [
            format!("--group-id={}", unique("test-fanout-")),
            "--sweep-interval=200ms".to_owned(),
        ];
        Self::spawn_with(args("nearby-fanout", prefix, keyspace, &own, extra))
            .await
            .ready()
            .await
    }
}

/// The deliveries `recipient` gets, with their gateway.
pub fn to(out: &Effects, recipient: i64) -> Vec<&RoutedDelivery> {
    out.deliveries
        .iter()
        .filter(|d| d.delivery.recipient_id == recipient)
        .collect()
}

/// The friend entries `recipient` gets.
pub fn locations_to(out: &Effects, recipient: i64) -> Vec<FriendLocation> {
    to(out, recipient)
        .into_iter()
        .filter_map(|d| match d.delivery.payload {
            DeliveryPayload::FriendLocation(location) => Some(location),
            DeliveryPayload::FriendLeft(_) => None,
        })
        .collect()
}

/// The `friend_left` messages `recipient` gets.
pub fn lefts_to(out: &Effects, recipient: i64) -> Vec<FriendLeft> {
    to(out, recipient)
        .into_iter()
        .filter_map(|d| match d.delivery.payload {
            DeliveryPayload::FriendLeft(left) => Some(left),
            DeliveryPayload::FriendLocation(_) => None,
        })
        .collect()
}

/// Whether `got` is within 0.3 % (or a centimetre, for tiny distances) of `exact`.
pub fn close(got: f64, exact: f64) -> bool {
    (got - exact).abs() <= (exact * 0.003).max(0.01)
}
