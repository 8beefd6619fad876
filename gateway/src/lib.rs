//! The gateway: clients' WebSocket and HTTP port, authentication, the connection registry, the
//! first page and paging, and the consumer of its own delivery topic.
//!
//! [`Gateway::build`] connects to the stack; [`Gateway::run`] serves on listeners it is given
//! until its [`Shutdown`] asks it to stop (the first ask drains, a second stops at once), so
//! tests start the real thing on port 0.

pub mod admin;
pub mod changes;
pub mod config;
pub mod deliveries;
pub mod demo;
pub mod drain;
pub mod http;
pub mod locations;
pub mod metrics;
pub mod nearby;
pub mod openapi;
pub mod outbox;
pub mod protocol;
pub mod registry;
pub mod session;
pub mod users;

use axum::serve::ListenerExt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use nearby_common::auth::Verifier;
use nearby_common::friendship::FriendshipLog;
use nearby_common::history::HistoryStore;
use nearby_common::kafka::{self, TopicSpec};
use nearby_common::redis_store::LocationCache;
use nearby_common::shutdown::Shutdown;
use nearby_common::stage::Listeners;
use nearby_common::users::UserStore;
use nearby_ingest::{Ingest, RateLimiter};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::GatewayConfig;

/// Everything a request handler or session needs, shared by all of them.
#[derive(Debug)]
pub struct Gateway {
    /// The configuration it runs with.
    pub config: GatewayConfig,
    /// Checks tokens.
    pub verifier: Verifier,
    /// The write path into Kafka.
    pub ingest: Ingest,
    /// Where friendship, sharing and profile changes are announced.
    pub changes: FriendshipLog,
    /// Friend lists and profiles.
    pub users: users::Users,
    /// Builds `nearby` pages.
    pub pager: nearby::Pager,
    /// Location history (read by `GET /v1/me/history`; the history sink writes it).
    pub history: HistoryStore,
    /// Upload requests per user (`POST /v1/me/locations`).
    pub upload_limiter: RateLimiter,
    /// Open connections.
    pub registry: Arc<registry::Registry>,
    /// One permit per connection.
    pub connections: Arc<Semaphore>,
    /// Cancelled to stop everything.
    pub shutdown: CancellationToken,
    /// Taking the gateway out of service: `reconnect` to every client, then stop.
    pub drain: drain::Drain,
    /// Whether the delivery consumer is reading (readiness).
    pub deliveries_ready: Arc<AtomicBool>,
    /// Counters and gauges (`/metrics` on the admin port).
    pub metrics: Arc<metrics::Metrics>,
}

impl Gateway {
    /// Checks the configuration and connects to the stack (CQL, Redis, Kafka); creates the
    /// user store's tables, the history table and this gateway's delivery topic if missing.
    /// Each part of the stack is waited for as long as `NEARBY_STARTUP_TIMEOUT` allows.
    pub async fn build(config: GatewayConfig) -> anyhow::Result<Arc<Self>> {
        config.validate().map_err(anyhow::Error::msg)?;
        let verifier = Verifier::from_args(&config.auth).map_err(anyhow::Error::msg)?;
        if config.auth.jwt_public_key_file.is_none()
            && config.auth.jwt_secret == nearby_common::auth::DEV_SECRET
        {
            tracing::warn!(
                "NEARBY_JWT_SECRET is the public development default: set it outside development"
            );
        }
        let stack = &config.stack;
        let topics = stack.topics()?;
        let ingest = Ingest::new(
            &stack.kafka_brokers,
            topics.location_updates(),
            &config.ingest,
        )?;
        let changes = FriendshipLog::new(&stack.kafka_brokers, topics.friendship_events())?;

        let startup = stack.startup();
        let session = startup.cql(&stack.cql_nodes).await?;
        startup
            .retry(
                "the user store's and the location history's tables",
                || async {
                    nearby_common::users::create_schema(&session, &stack.cql_keyspace, 1).await?;
                    nearby_common::history::create_table(&session, &stack.cql_keyspace).await
                },
            )
            .await
            .context("creating the user store's and the history's tables")?;
        let store = Arc::new(UserStore::new(session, &stack.cql_keyspace).await?);
        let users = users::Users::new(store, config.user_cache_capacity, config.user_cache_ttl);
        // Each store owns its session (both take one by value); history reads get their own.
        let history = HistoryStore::new(startup.cql(&stack.cql_nodes).await?, &stack.cql_keyspace)
            .await
            .context("preparing the location history statements")?;

        let redis = startup.redis(&stack.redis_url).await?;
        let ttl = config.rules.location_ttl;
        let pager = nearby::Pager {
            users: users.clone(),
            cache: LocationCache::new(&stack.topic_prefix, ttl.as_secs()),
            redis,
            radius_m: config.rules.radius_m,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            page_size: config.page_size,
        };

        let admin = kafka::admin_client(&stack.kafka_brokers)?;
        let delivery_topic = TopicSpec {
            name: topics.deliveries(&config.gateway_id)?,
            partitions: 1,
            replication: config.replication_factor,
            retention: Duration::from_secs(3600),
        };
        startup
            .retry(
                "the broker, to create this gateway's delivery topic",
                || kafka::ensure_topics(&admin, std::slice::from_ref(&delivery_topic)),
            )
            .await
            .context("creating this gateway's delivery topic")?;
        startup
            .topic(&stack.kafka_brokers, &delivery_topic.name)
            .await?;

        Ok(Arc::new(Self {
            verifier,
            ingest,
            changes,
            users,
            pager,
            history,
            upload_limiter: RateLimiter::new(config.upload_rate_limit()),
            registry: Arc::default(),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            shutdown: CancellationToken::new(),
            drain: drain::Drain::new(config.drain_window, config.drain_grace),
            deliveries_ready: Arc::default(),
            metrics: Arc::default(),
            config,
        }))
    }

    /// The client port's routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/ws", get(http::ws))
            .route("/v1/me", get(http::get_me).patch(http::patch_me))
            .route("/v1/me/friends", get(http::get_friends))
            .route(
                "/v1/me/friends/{id}",
                put(http::put_friend).delete(http::delete_friend),
            )
            .route("/v1/me/sharing", put(http::put_sharing))
            .route("/v1/me/nearby", get(http::get_nearby))
            .route("/v1/me/locations", post(locations::post_locations))
            .route("/v1/me/history", get(locations::get_history))
            .route("/v1/users/{id}/history", get(locations::get_user_history))
            .route("/v1/openapi.json", get(openapi::openapi_json))
            .route("/v1/asyncapi.yaml", get(openapi::asyncapi_yaml))
            .route("/demo", get(demo::page))
            .fallback(http::not_found)
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .with_state(self.clone())
    }
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
            if conn.outbox.push(frame) {
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
        () = shutdown.graceful().cancelled() => { gw.drain.start(None); }
        () = gw.shutdown.cancelled() => return,
    }
    tokio::select! {
        () = shutdown.now().cancelled() => gw.shutdown.cancel(),
        () = gw.shutdown.cancelled() => {}
    }
}

impl Gateway {
    /// Serves clients on the client listener and operators on the admin one, and consumes the
    /// delivery topic, until `shutdown` asks for a stop (an orderly stop drains first); then
    /// closes every socket and waits (bounded) for the records in flight.
    pub async fn run(
        self: Arc<Self>,
        listeners: Listeners,
        shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        let listener = listeners
            .client
            .context("the gateway needs a client listener")?;
        run(self, listener, listeners.admin, shutdown).await
    }
}

async fn run(
    gw: Arc<Gateway>,
    listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let stack = &gw.config.stack;
    let startup = stack.startup();
    let topic = stack.topics()?.deliveries(&gw.config.gateway_id)?;
    let follow_task = tokio::spawn(follow_shutdown(gw.clone(), shutdown));
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
    let delivery_task = tokio::spawn(deliveries::run(
        consumer,
        gw.registry.clone(),
        gw.metrics.clone(),
        gw.users.clone(),
        gw.shutdown.clone(),
    ));

    let drain_task = tokio::spawn(stop_when_drained(gw.clone()));

    info!(addr = %listener.local_addr()?, admin = %admin_listener.local_addr()?, gateway = %gw.config.gateway_id, "gateway listening");
    let shutdown = gw.shutdown.clone();
    // TCP_NODELAY on every client socket: a frame is a whole message for a screen, and Nagle's
    // algorithm would hold a second frame behind the first until the phone's (delayed) ACK,
    // up to 40 ms later.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let client = axum::serve(listener, gw.router())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let admin = axum::serve(admin_listener, admin::router(gw.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let (client, admin) = tokio::join!(client.into_future(), admin.into_future());
    client?;
    admin?;
    let _ = delivery_task.await;
    let _ = change_task.await;
    let _ = drain_task.await;
    let _ = follow_task.await;
    // Sessions end on the same token and record their disconnects; give them a bounded moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !gw.registry.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.ingest.flush(Duration::from_secs(5)).await?;
    info!("gateway stopped");
    Ok(())
}
