//! The gateway's shared state: [`Gateway`], what every request handler and session reads, and
//! [`Gateway::build`], which checks the configuration and connects it to the stack.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use nearby_common::auth::Verifier;
use nearby_common::friendship::FriendshipLog;
use nearby_common::history::HistoryStore;
use nearby_common::kafka::{self, TopicSpec};
use nearby_common::redis_store::LocationCache;
use nearby_common::users::UserStore;
use nearby_ingest::{Ingest, RateLimiter};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::{drain, metrics, nearby, registry, users};

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
    /// Authenticated HTTP calls per user.
    pub api_limiter: RateLimiter,
    /// Sharing turned on, per user.
    pub sharing_limiter: RateLimiter,
    /// Per-user limit of friend calls (`PUT /v1/me/friends/{id}`).
    pub friend_limiter: RateLimiter,
    /// Per-source-address limit of new connections on the client port.
    pub connect_limiter: RateLimiter<std::net::IpAddr>,
    /// Open connections.
    pub registry: Arc<registry::Registry>,
    /// One permit per connection.
    pub connections: Arc<Semaphore>,
    /// Sockets per user (at most `NEARBY_MAX_SOCKETS_PER_USER` each).
    pub user_sockets: Arc<crate::user_sockets::UserSockets>,
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
        // Refuses the public development secret and short secrets unless NEARBY_DEV is set.
        let verifier = Verifier::from_args(&config.auth).map_err(anyhow::Error::msg)?;
        if config.auth.dev {
            tracing::warn!(
                "development mode (NEARBY_DEV): the public development secret is accepted"
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
        let store = Arc::new(
            UserStore::new(session, &stack.cql_keyspace)
                .await?
                .max_pending(config.max_pending_requests),
        );
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

        // Ingest's counters are read at each scrape from the ingest itself, in the same registry.
        let mut metrics = metrics::Metrics::default();
        metrics
            .registry
            .register_collector(Box::new(nearby_ingest::IngestCollector(ingest.clone())));
        if let Some(jwks) = verifier.key_set() {
            metrics.register_jwks(&jwks.stats());
        }

        Ok(Arc::new(Self {
            verifier,
            ingest,
            changes,
            users,
            pager,
            history,
            upload_limiter: RateLimiter::new(config.upload_rate_limit()),
            api_limiter: RateLimiter::new(config.api_rate_limit()),
            sharing_limiter: RateLimiter::new(config.sharing_rate_limit()),
            friend_limiter: RateLimiter::new(config.friend_request_rate_limit()),
            connect_limiter: RateLimiter::new(config.connect_rate_limit()),
            registry: Arc::default(),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            user_sockets: Arc::default(),
            shutdown: CancellationToken::new(),
            drain: drain::Drain::new(config.drain_window, config.drain_grace),
            deliveries_ready: Arc::default(),
            metrics: Arc::new(metrics),
            config,
        }))
    }
}
