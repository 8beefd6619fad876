//! The gateway's configuration: flags or `NEARBY_*` variables, a default on every field, and
//! the cross-field rules checked at start-up.

use std::net::SocketAddr;
use std::time::Duration;

use nearby_common::StackArgs;
use nearby_common::auth::AuthArgs;
use nearby_ingest::{IngestConfig, RateLimit, ReportOptions, ValidationLimits};

/// Everything a gateway needs to run.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "nearby-gateway",
    version,
    about = "WebSocket and REST gateway of Nearby Friends",
    // A setting given twice takes the last value (tests add to a default command line).
    args_override_self = true
)]
pub struct GatewayConfig {
    /// This gateway's id: names its delivery topic `<prefix>.deliveries.<id>`.
    #[arg(long, env = "NEARBY_GATEWAY_ID", default_value = "gw-1")]
    pub gateway_id: String,

    /// Address of the client port (WebSocket and HTTP).
    #[arg(long, env = "NEARBY_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the operators' port (health, readiness).
    #[arg(
        long,
        env = "NEARBY_GATEWAY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9080"
    )]
    pub admin_listen: SocketAddr,

    /// Who may read `/metrics` on the admin port.
    #[command(flatten)]
    pub admin_auth: nearby_common::admin::AdminAuth,

    /// Most sockets held at once; further upgrades get 503.
    #[arg(long, env = "NEARBY_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// An HTTP connection that has not sent a whole request head this long after it opened
    /// (or after its last answer) is closed: half-sent requests, slowloris, idle keep-alives.
    #[arg(long, env = "NEARBY_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,

    /// A request whose body has not been read and answered this long after its head arrived
    /// gets 408 and its connection is closed (a body sent a byte at a time, say).
    #[arg(long, env = "NEARBY_HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http_request_timeout: Duration,

    /// New connections one source address (an IPv6 /64) may open at once; beyond, the
    /// connection gets 429 `too_many_connections` and is closed. Behind a load balancer every
    /// client shares its address: raise it there, and let the balancer limit per client.
    #[arg(long, env = "NEARBY_CONNECT_RATE_BURST", default_value_t = 200)]
    pub connect_rate_burst: u32,

    /// New connections per second per source address, sustained.
    #[arg(long, env = "NEARBY_CONNECT_RATE_PER_SEC", default_value_t = 50.0)]
    pub connect_rate_per_sec: f64,

    /// Most sockets one user may hold on this gateway at once; the upgrade beyond gets 429
    /// `too_many_sockets`.
    #[arg(long, env = "NEARBY_MAX_SOCKETS_PER_USER", default_value_t = 5)]
    pub max_sockets_per_user: u32,

    /// Largest text frame accepted, bytes; a larger one (up to the hard limit) gets an
    /// `error` `frame_too_large` and is dropped.
    #[arg(long, env = "NEARBY_MAX_FRAME_BYTES", default_value_t = 4096)]
    pub max_frame_bytes: usize,

    /// Hard frame limit, bytes: a larger frame closes the socket with 1009.
    #[arg(long, env = "NEARBY_HARD_FRAME_BYTES", default_value_t = 65_536)]
    pub hard_frame_bytes: usize,

    /// Frames a client may queue for sending before the oldest are dropped (latest wins).
    #[arg(long, env = "NEARBY_OUTBOX_CAPACITY", default_value_t = 64)]
    pub outbox_capacity: usize,

    /// Socket read buffer, bytes: how much one read takes in. Every socket's buffer is written
    /// in full at its first read, so it counts whole in each idle socket's memory (tungstenite's
    /// default is 128 KiB); client frames are about 100 bytes (a `location` frame with all
    /// its fields, 90 bytes of JSON and a 6-byte header), and a larger one still arrives (the
    /// buffer grows for it).
    #[arg(long, env = "NEARBY_WS_READ_BUFFER", default_value_t = 256)]
    pub ws_read_buffer: usize,

    /// How often the server pings each socket (a slice of the sockets about every second).
    #[arg(long, env = "NEARBY_PING_INTERVAL", default_value = "20s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A socket silent this long (no frame, no pong) is closed.
    #[arg(long, env = "NEARBY_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// A socket that cannot take a write for this long is closed.
    #[arg(long, env = "NEARBY_SEND_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub send_timeout: Duration,

    /// A draining gateway sends each client `reconnect` at a random moment within this window,
    /// so its clients arrive at the other gateways spread out rather than all at once.
    #[arg(long, env = "NEARBY_DRAIN_WINDOW", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_window: Duration,

    /// After its `reconnect`, how long a session keeps reading its client (whose reports are
    /// still taken) before it closes the socket with 1001.
    #[arg(long, env = "NEARBY_DRAIN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_grace: Duration,

    /// The bearer token the admin port's calls that change something (`POST /drain`) require.
    /// Unset, those calls answer 403: nobody can drain this gateway through its port.
    #[arg(long, env = "NEARBY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Frames per second a connection may send, sustained (all frame types).
    #[arg(long, env = "NEARBY_FRAME_RATE", default_value_t = 10.0)]
    pub frame_rate: f64,

    /// Frames a connection may send in a burst above the sustained rate.
    #[arg(long, env = "NEARBY_FRAME_BURST", default_value_t = 30.0)]
    pub frame_burst: f64,

    /// Frames over the frame rate a connection may send before it is closed (1008); each one
    /// gets an `error` `rate_limited` first.
    #[arg(long, env = "NEARBY_FLOOD_TOLERANCE", default_value_t = 10)]
    pub flood_tolerance: u32,

    /// The product rules (radius, TTL).
    #[command(flatten)]
    pub rules: nearby_common::RulesArgs,

    /// Friends per `nearby` page.
    #[arg(long, env = "NEARBY_PAGE_SIZE", default_value_t = 20)]
    pub page_size: usize,

    /// How long a friend list or profile read from the user store is reused at most. Friendship
    /// events drop an entry as soon as it changes; this bounds the staleness if one is missed.
    #[arg(long, env = "NEARBY_USER_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub user_cache_ttl: Duration,

    /// Most users whose friend lists and profiles are cached.
    #[arg(long, env = "NEARBY_USER_CACHE_CAPACITY", default_value_t = 100_000)]
    pub user_cache_capacity: u64,

    /// Largest HTTP request body, bytes (413 beyond).
    #[arg(long, env = "NEARBY_MAX_BODY_BYTES", default_value_t = 65_536)]
    pub max_body_bytes: usize,

    /// Most positions in one `POST /v1/me/locations` batch; a larger batch is refused whole
    /// (413 `too_many`) and nothing of it is produced.
    #[arg(long, env = "NEARBY_UPLOAD_MAX_ITEMS", default_value_t = 100)]
    pub upload_max_items: usize,

    /// How old an uploaded position may be (a phone that was offline); live reports keep
    /// `NEARBY_INGEST_MAX_AGE`. The future skew is `NEARBY_INGEST_MAX_FUTURE_SKEW` for both.
    #[arg(long, env = "NEARBY_UPLOAD_MAX_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub upload_max_age: Duration,

    /// Authenticated HTTP calls (the WebSocket upgrade included) a user may make at once: the
    /// per-user token bucket's size. Over it: 429 `rate_limited` with `Retry-After`.
    #[arg(long, env = "NEARBY_API_RATE_BURST", default_value_t = 100)]
    pub api_rate_burst: u32,

    /// Authenticated HTTP calls per second per user, sustained.
    #[arg(long, env = "NEARBY_API_RATE_PER_SEC", default_value_t = 20.0)]
    pub api_rate_per_sec: f64,

    /// Times a user may turn sharing on at once (each turn costs fanout a pass over the
    /// user's friends). Turning it off is never limited: a privacy choice always goes through.
    #[arg(long, env = "NEARBY_SHARING_RATE_BURST", default_value_t = 5)]
    pub sharing_rate_burst: u32,

    /// Times per second a user may turn sharing on, sustained (0.1: one every 10 s).
    #[arg(long, env = "NEARBY_SHARING_RATE_PER_SEC", default_value_t = 0.1)]
    pub sharing_rate_per_sec: f64,

    /// Friend calls (`PUT /v1/me/friends/{id}`: asking or accepting) a user may make at once;
    /// each change costs fanout a look at both friend lists.
    #[arg(long, env = "NEARBY_FRIEND_REQUEST_RATE_BURST", default_value_t = 30)]
    pub friend_request_rate_burst: u32,

    /// Friend calls per second per user, sustained (0.1: one every 10 s).
    #[arg(
        long,
        env = "NEARBY_FRIEND_REQUEST_RATE_PER_SEC",
        default_value_t = 0.1
    )]
    pub friend_request_rate_per_sec: f64,

    /// Pending incoming friend requests one user may hold; a request beyond gets 409
    /// `too_many_pending`, so many accounts cannot fill someone's list.
    #[arg(long, env = "NEARBY_MAX_PENDING_REQUESTS", default_value_t = nearby_common::users::DEFAULT_MAX_PENDING)]
    pub max_pending_requests: usize,

    /// Upload requests a user may send at once (the per-user token bucket's size); every
    /// request counts, whatever its answer.
    #[arg(long, env = "NEARBY_UPLOAD_RATE_BURST", default_value_t = 10)]
    pub upload_rate_burst: u32,

    /// Upload requests per second per user, sustained (the bucket's refill rate): 0.2 is one
    /// every 5 s, up to 20 positions a second with full batches.
    #[arg(long, env = "NEARBY_UPLOAD_RATE_PER_SEC", default_value_t = 0.2)]
    pub upload_rate_per_sec: f64,

    /// Replication factor of the delivery topic when the gateway creates it.
    #[arg(long, env = "NEARBY_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: i32,

    /// Where the stack is.
    #[command(flatten)]
    pub stack: StackArgs,

    /// How tokens are checked.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Report validation and rate limits.
    #[command(flatten)]
    pub ingest: IngestConfig,
}

impl GatewayConfig {
    /// Checks the rules between fields; the message names the settings to fix.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.ping_interval >= self.idle_timeout {
            problems.push("NEARBY_PING_INTERVAL must be shorter than NEARBY_IDLE_TIMEOUT");
        }
        if self.drain_window > crate::drain::MAX_WINDOW
            || self.drain_grace > Duration::from_secs(600)
        {
            problems
                .push("NEARBY_DRAIN_WINDOW must be at most 1h and NEARBY_DRAIN_GRACE at most 10m");
        }
        if self.max_frame_bytes == 0 || self.max_frame_bytes > self.hard_frame_bytes {
            problems.push("NEARBY_MAX_FRAME_BYTES must be between 1 and NEARBY_HARD_FRAME_BYTES");
        }
        if self.outbox_capacity == 0
            || self.max_connections == 0
            || self.max_sockets_per_user == 0
            || self.page_size == 0
        {
            problems.push("NEARBY_OUTBOX_CAPACITY, NEARBY_MAX_CONNECTIONS, NEARBY_MAX_SOCKETS_PER_USER and NEARBY_PAGE_SIZE must be positive");
        }
        let positive = |burst: u32, rate: f64| burst > 0 && rate > 0.0 && rate.is_finite();
        if !positive(self.api_rate_burst, self.api_rate_per_sec) {
            problems.push("NEARBY_API_RATE_BURST and NEARBY_API_RATE_PER_SEC must be positive");
        }
        if !positive(self.sharing_rate_burst, self.sharing_rate_per_sec) {
            problems
                .push("NEARBY_SHARING_RATE_BURST and NEARBY_SHARING_RATE_PER_SEC must be positive");
        }
        if !positive(
            self.friend_request_rate_burst,
            self.friend_request_rate_per_sec,
        ) {
            problems.push(
                "NEARBY_FRIEND_REQUEST_RATE_BURST and NEARBY_FRIEND_REQUEST_RATE_PER_SEC must be positive",
            );
        }
        if !positive(self.connect_rate_burst, self.connect_rate_per_sec) {
            problems
                .push("NEARBY_CONNECT_RATE_BURST and NEARBY_CONNECT_RATE_PER_SEC must be positive");
        }
        if self.max_pending_requests == 0 {
            problems.push("NEARBY_MAX_PENDING_REQUESTS must be positive");
        }
        if self.http_header_timeout.is_zero() || self.http_request_timeout.is_zero() {
            problems.push(
                "NEARBY_HTTP_HEADER_TIMEOUT and NEARBY_HTTP_REQUEST_TIMEOUT must be positive",
            );
        }
        if !(self.frame_rate > 0.0 && self.frame_burst >= 1.0) {
            problems.push("NEARBY_FRAME_RATE must be positive and NEARBY_FRAME_BURST at least 1");
        }
        if !(1..=10_000).contains(&self.upload_max_items) {
            problems.push("NEARBY_UPLOAD_MAX_ITEMS must be between 1 and 10000");
        }
        if self.upload_max_age.is_zero() {
            problems.push("NEARBY_UPLOAD_MAX_AGE must be positive");
        }
        if !(self.upload_rate_per_sec.is_finite()
            && self.upload_rate_per_sec > 0.0
            && self.upload_rate_burst >= 1)
        {
            problems.push(
                "NEARBY_UPLOAD_RATE_PER_SEC must be a positive number and NEARBY_UPLOAD_RATE_BURST at least 1",
            );
        }
        if let Err(e) = self
            .stack
            .topics()
            .and_then(|t| t.deliveries(&self.gateway_id))
        {
            return Err(format!("NEARBY_GATEWAY_ID / NEARBY_TOPIC_PREFIX: {e}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// How `POST /v1/me/locations` checks each position: the live future skew, the upload
    /// age, and no per-report rate limit (the upload limiter bounds requests instead).
    pub fn upload_options(&self) -> ReportOptions {
        ReportOptions {
            limits: ValidationLimits {
                max_future_skew: self.ingest.ingest_max_future_skew,
                max_age: self.upload_max_age,
            },
            rate_limited: false,
        }
    }

    /// The per-user limit of authenticated HTTP calls.
    pub fn api_rate_limit(&self) -> RateLimit {
        RateLimit {
            burst: self.api_rate_burst,
            per_second: self.api_rate_per_sec,
            max_users: self.ingest.ingest_rate_max_users,
        }
    }

    /// The per-user limit of turning sharing on.
    pub fn sharing_rate_limit(&self) -> RateLimit {
        RateLimit {
            burst: self.sharing_rate_burst,
            per_second: self.sharing_rate_per_sec,
            max_users: self.ingest.ingest_rate_max_users,
        }
    }

    /// The per-user limit of friend calls.
    pub fn friend_request_rate_limit(&self) -> RateLimit {
        RateLimit {
            burst: self.friend_request_rate_burst,
            per_second: self.friend_request_rate_per_sec,
            max_users: self.ingest.ingest_rate_max_users,
        }
    }

    /// The per-source-address limit of new connections (as many addresses tracked as users).
    pub fn connect_rate_limit(&self) -> RateLimit {
        RateLimit {
            burst: self.connect_rate_burst,
            per_second: self.connect_rate_per_sec,
            max_users: self.ingest.ingest_rate_max_users,
        }
    }

    /// The per-user limit of uploads.
    pub fn upload_rate_limit(&self) -> RateLimit {
        RateLimit {
            burst: self.upload_rate_burst,
            per_second: self.upload_rate_per_sec,
            max_users: self.ingest.ingest_rate_max_users,
        }
    }
}
