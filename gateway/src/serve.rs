//! Serving: [`GatewayStage`]'s `run` serves the client and admin ports and consumes the delivery topic
//! until its [`Shutdown`] asks it to stop. An orderly stop drains first (every client gets
//! `reconnect`, spread over the drain window), a second ask stops at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nearby_common::shutdown::Shutdown;
use nearby_common::stage::{Listeners, Stage};
use tokio::net::TcpListener;
use tracing::info;

use crate::GatewayConfig;
use crate::state::Gateway;
use crate::{admin, changes, deliveries, pinger, protocol, upgrade};

/// The gateway as a [`Stage`]: what `main` and the tests start. Its handle is the shared
/// state itself.
#[derive(Debug)]
pub struct GatewayStage(pub Arc<Gateway>);

impl Stage for GatewayStage {
    type Config = GatewayConfig;
    type Handle = Arc<Gateway>;
    const NAME: &'static str = "nearby-gateway";

    fn addresses(config: &Self::Config) -> (Option<std::net::SocketAddr>, std::net::SocketAddr) {
        (Some(config.listen), config.admin_listen)
    }

    async fn build(config: Self::Config) -> anyhow::Result<Self> {
        Gateway::build(config).await.map(GatewayStage)
    }

    fn handle(&self) -> Self::Handle {
        self.0.clone()
    }

    /// Serves clients on the client listener and operators on the admin one, and consumes the
    /// delivery topic, until `shutdown` asks for a stop (an orderly stop drains first); then
    /// closes every socket and waits (bounded) for the records in flight.
    async fn run(self, listeners: Listeners, shutdown: Shutdown) -> anyhow::Result<()> {
        let listener = listeners
            .client
            .context("the gateway needs a client listener")?;
        serve(self.0, listener, listeners.admin, shutdown).await
    }
}

async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let stack = &gw.config.stack;
    let startup = stack.startup();
    let topic = stack.topics()?.deliveries(&gw.config.gateway_id)?;
    let follow_task = tokio::spawn(follow_shutdown(gw.clone(), shutdown));
    // The identity provider's keys are fetched now and kept fresh until the stop; tokens are
    // refused (401) until a first fetch succeeds.
    let jwks_task = gw
        .verifier
        .key_set()
        .map(|jwks| tokio::spawn(jwks.run(gw.shutdown.clone())));
    // The consumer starts from the topic's current end, fixed before it is assigned: from here
    // on no delivery for this gateway is missed, so it is ready.
    let consumer = startup
        .retry(&format!("the end offset of topic {topic}"), || async {
            deliveries::consumer(
                &stack.kafka_brokers,
                &gw.config.gateway_id,
                &topic,
                gw.metrics.delivery_stats.clone(),
            )
        })
        .await?;
    // Likewise for change notices: from here on no cached entry outlives its change.
    let change_reader = nearby_common::friendship::tail_reader_ready(
        &startup,
        &stack.kafka_brokers,
        &format!("nearby-gateway-{}", gw.config.gateway_id),
        &stack.topics()?.friendship_events(),
    )
    .await
    .context("reading the friendship events topic")?;
    gw.deliveries_ready
        .store(true, std::sync::atomic::Ordering::Release);
    let change_task = tokio::spawn(changes::run(
        change_reader,
        gw.users.clone(),
        gw.shutdown.clone(),
    ));
    let deliveries_done = spawn_delivery_reader(&gw, consumer)?;

    let drain_task = tokio::spawn(stop_when_drained(gw.clone()));
    let ping_task = tokio::spawn(pinger::run(
        gw.registry.clone(),
        gw.config.ping_interval,
        gw.shutdown.clone(),
    ));

    info!(addr = %listener.local_addr()?, admin = %admin_listener.local_addr()?, gateway = %gw.config.gateway_id, "gateway listening");
    let shutdown = gw.shutdown.clone();
    let limits = gw.clone();
    let client = upgrade::serve(
        listener,
        gw.router(),
        shutdown.clone(),
        Duration::from_secs(5),
        gw.config.http_header_timeout,
        move |source| {
            let limited = limits.connect_limiter.check(source_key(source)).err()?;
            limits.metrics.connection_refused("too_many_connections");
            Some(limited.retry_after_ms())
        },
    );
    // The admin port gets the same header timeout (a half-sent request there holds a socket
    // too) and no per-source budget (operators and scrapers are few and known).
    let admin = upgrade::serve(
        admin_listener,
        admin::router(gw.clone()),
        shutdown.clone(),
        Duration::from_secs(5),
        gw.config.http_header_timeout,
        |_| None,
    );
    let (client, admin) = tokio::join!(client, admin);
    client?;
    admin?;
    let _ = deliveries_done.await;
    let _ = change_task.await;
    let _ = drain_task.await;
    let _ = ping_task.await;
    let _ = follow_task.await;
    if let Some(task) = jwks_task {
        let _ = task.await;
    }
    // Sessions end on the same token and record their disconnects; give them a bounded moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !gw.registry.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.ingest.flush(Duration::from_secs(5)).await?;
    info!("gateway stopped");
    Ok(())
}

/// What new connections are counted by: the address for IPv4, the /64 for IPv6 (one host
/// commonly holds a whole /64).
fn source_key(source: std::net::IpAddr) -> std::net::IpAddr {
    match source {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1)).into(),
        },
        v4 => v4,
    }
}

/// Starts the delivery reader on a thread of its own (with a runtime of its own), so what it
/// costs — decoding, frames, socket writes — is one thread's CPU time, apart from the report
/// intake, pages and pings on the shared workers, and a burst of reports cannot delay it.
/// Resolves when it has stopped (at the gateway's shutdown).
fn spawn_delivery_reader(
    gw: &Arc<Gateway>,
    consumer: rdkafka::consumer::StreamConsumer<nearby_common::lag::LagStats>,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done, stopped) = tokio::sync::oneshot::channel();
    let reader = deliveries::run(
        consumer,
        gw.registry.clone(),
        gw.metrics.clone(),
        gw.users.clone(),
        gw.shutdown.clone(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("the delivery reader's runtime")?;
    std::thread::Builder::new()
        .name(deliveries::THREAD_NAME.into())
        .spawn(move || {
            runtime.block_on(reader);
            let _ = done.send(());
        })
        .context("starting the delivery reader's thread")?;
    Ok(stopped)
}

/// Once a drain starts: queues `reconnect` on every socket in turn over the window, then stops
/// the gateway (cancels its shutdown token) when every session has ended, or at the drain's
/// deadline.
async fn stop_when_drained(gw: Arc<Gateway>) {
    tokio::select! {
        () = gw.shutdown.cancelled() => return,
        () = gw.drain.started() => {}
    }
    // Two passes: the second reaches sockets whose upgrade was under way at the first.
    let mut told = std::collections::HashSet::new();
    for _ in 0..2 {
        let conns: Vec<_> = gw
            .registry
            .all()
            .into_iter()
            .filter(|c| !told.contains(&c.session_id))
            .collect();
        let n = conns.len();
        for (i, conn) in conns.into_iter().enumerate() {
            tokio::select! {
                () = gw.shutdown.cancelled() => return,
                () = tokio::time::sleep_until(gw.drain.turn(i, n)) => {}
            }
            let frame = protocol::ServerFrame::Reconnect {
                reason: "draining",
                after_ms: None,
            };
            if conn.send_frame(&frame) {
                conn.told_to_reconnect.notify_one();
                gw.metrics.reconnects_sent.inc();
            }
            told.insert(conn.session_id.clone());
        }
    }
    let deadline = gw
        .drain
        .deadline()
        .unwrap_or_else(tokio::time::Instant::now);
    // Sessions end in their own tasks; a permit is held from the upgrade until the session's
    // disconnect is recorded, so "all permits back" means no socket is left, including one
    // still being set up when the drain began. Looking every 50 ms is cheap and bounded.
    loop {
        let open = gw.config.max_connections - gw.connections.available_permits();
        if open == 0 || tokio::time::Instant::now() >= deadline {
            info!(open, "drain finished: stopping");
            break;
        }
        tokio::select! {
            () = gw.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    gw.shutdown.cancel();
}

/// Turns the stage's [`Shutdown`] into the gateway's own stop: an orderly stop drains (every
/// client gets `reconnect` over the window, then the gateway stops by itself); a stop at once
/// cancels the gateway's token.
async fn follow_shutdown(gw: Arc<Gateway>, shutdown: Shutdown) {
    tokio::select! {
        // A stop at once also cancels the orderly one: looked at first, so it starts no drain.
        biased;
        () = shutdown.now().cancelled() => {
            gw.shutdown.cancel();
            return;
        }
        () = shutdown.graceful().cancelled() => { gw.drain.start(None); }
        () = gw.shutdown.cancelled() => return,
    }
    tokio::select! {
        () = shutdown.now().cancelled() => gw.shutdown.cancel(),
        () = gw.shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::source_key;
    use std::net::IpAddr;

    #[test]
    fn an_ipv6_host_is_counted_by_its_64_and_a_mapped_ipv4_by_its_address() {
        let key = |s: &str| source_key(s.parse::<IpAddr>().expect("an address"));
        assert_eq!(key("203.0.113.7"), key("203.0.113.7"));
        assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:203.0.113.7"), key("203.0.113.7"));
    }
}
