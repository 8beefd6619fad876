//! Fanout in tests: [`TestFanout`], the real service in-process beside a test's gateways (its
//! admin port on loopback port 0, returned once `/readyz` answers), and look-ups in the
//! [`Effects`] its core returns, for the core's own tests.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use nearby_common::shutdown::Shutdown;
use nearby_common::stage::Listeners;
use nearby_fanout::service::{FanoutService, FanoutServiceConfig, Status};
use nearby_fanout::{Effects, RoutedDelivery};
use nearby_schemas::{DeliveryPayload, FriendLeft, FriendLocation};
use tokio::task::JoinHandle;

use crate::client::wait_ready;
use crate::gateway::READY;
use crate::names::unique;

/// A running fanout instance.
#[derive(Debug)]
pub struct TestFanout {
    /// Its counters (events and changes applied).
    pub status: Arc<Status>,
    /// Its admin port (`/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// What stops it ([`Shutdown::stop`]).
    pub shutdown: Shutdown,
    /// Its run, which ends once it has stopped.
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl TestFanout {
    /// Starts fanout on `prefix` and `keyspace` in a fresh group, sweeping every 200 ms, with
    /// `extra` command-line settings.
    pub async fn start(prefix: &str, keyspace: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "nearby-fanout".to_owned(),
            format!("--topic-prefix={prefix}"),
            format!("--cql-keyspace={keyspace}"),
            format!("--group-id={}", unique("test-fanout-")),
            "--sweep-interval=200ms".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let config = FanoutServiceConfig::parse_from(args);
        let listeners = Listeners::loopback(false).await.expect("bind");
        let admin = listeners.admin.local_addr().expect("addr");
        let service = FanoutService::build(config).await.expect("fanout builds");
        let status = service.status.clone();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(service.run(listeners, shutdown.clone()));
        wait_ready(admin, "fanout", READY).await;
        Self {
            status,
            admin,
            shutdown,
            task,
        }
    }

    /// Stops it and waits for a clean end.
    pub async fn stop(self) {
        self.shutdown.stop();
        self.task.await.expect("joins").expect("fanout ran cleanly");
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
