//! Verification keys from an identity provider's JWKS URL: RS256, ES256 and EdDSA keys chosen
//! by a token's `kid`, fetched at start, refreshed on a period and when a token names a `kid` not
//! seen yet (at most once per `min_refetch`, so random `kid`s cannot make us hammer the
//! provider). A failed fetch keeps the keys we had; a key gone from the set is dropped at the
//! next fetch, so keys rotate (and are revoked) without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::AuthError;

/// The largest JWKS document read, bytes: providers serve a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The most keys kept from one document; the rest are ignored.
pub const MAX_KEYS: usize = 64;
/// How long one fetch may take, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Refuses a plain-http JWKS URL outside development mode unless it is on loopback: whoever
/// can alter the fetch could publish a key and sign any token.
pub fn check_https(url: &str, dev: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("NEARBY_JWT_JWKS_URL: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    if parsed.scheme() == "http" && !dev && !loopback {
        return Err(format!(
            "NEARBY_JWT_JWKS_URL {url} is plain http: use https (http is accepted on loopback \
             or with NEARBY_DEV=1)"
        ));
    }
    Ok(())
}

/// One verification key and the only algorithm it verifies.
#[derive(Clone)]
pub struct Key {
    /// The public key.
    pub key: DecodingKey,
    /// Its algorithm: a token must name this one.
    pub algorithm: Algorithm,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// What the key set has done: metrics its owner registers (each is shared when cloned).
#[derive(Debug, Default, Clone)]
pub struct JwksStats {
    /// Fetches that replaced the key set.
    pub fetches: Counter,
    /// Fetches that failed (unreachable, not 2xx, too big, not a JWKS): the old keys stay.
    pub failures: Counter,
    /// Keys in the set now.
    pub keys: Gauge,
}

/// The keys of one JWKS URL, shared by every request.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    /// Replaced whole on each fetch: readers take the map's `Arc` and never wait on a fetch.
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// The last fetch's start, held across the fetch: concurrent requests with an unknown `kid`
    /// wait for that one fetch rather than each starting one.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    refresh: Duration,
    min_refetch: Duration,
    stats: JwksStats,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .field("keys", &self.stats.keys.get())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A key set for `url` (http or https), empty until the first fetch.
    pub fn new(url: &str, refresh: Duration, min_refetch: Duration) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("NEARBY_JWT_JWKS_URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("NEARBY_JWT_JWKS_URL must be http(s), not {url}"));
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("an HTTP client for the JWKS: {e}"))?;
        Ok(Self {
            url: url.to_owned(),
            client,
            keys: RwLock::new(Arc::default()),
            last_fetch: tokio::sync::Mutex::new(None),
            refresh,
            min_refetch,
            stats: JwksStats::default(),
        })
    }

    /// The counters a metrics endpoint reads.
    pub fn stats(&self) -> JwksStats {
        self.stats.clone()
    }

    /// The key a token's `kid` names. Without a `kid`, the set's only key (if it has one key).
    /// An unknown `kid` fetches the set again first, unless a fetch started less than
    /// `min_refetch` ago.
    pub async fn key(&self, kid: Option<&str>) -> Result<Key, AuthError> {
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        self.fetch(false).await;
        self.lookup(kid).ok_or(AuthError::UnknownKey)
    }

    fn lookup(&self, kid: Option<&str>) -> Option<Key> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    /// Fetches the set at once, then every `refresh` (sooner, every `min_refetch`, after a
    /// failure) until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let ok = self.fetch(true).await;
            let wait = if ok { self.refresh } else { self.min_refetch };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Fetches and replaces the set; unless `forced`, only when the last fetch started at
    /// least `min_refetch` ago. True when the set was replaced.
    async fn fetch(&self, forced: bool) -> bool {
        let mut last = self.last_fetch.lock().await;
        if !forced && last.is_some_and(|at| at.elapsed() < self.min_refetch) {
            return false;
        }
        *last = Some(Instant::now());
        match self.download().await.and_then(|body| parse(&body)) {
            Ok(keys) => {
                let n = keys.len();
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                self.stats.fetches.inc();
                self.stats.keys.set(i64::try_from(n).unwrap_or(i64::MAX));
                info!(url = %self.url, keys = n, "JWKS fetched");
                true
            }
            Err(e) => {
                self.stats.failures.inc();
                warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping the keys we had");
                false
            }
        }
    }

    async fn download(&self) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(&self.url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("over {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The usable keys of a JWKS document by `kid` (a key without one is kept under ""): signing
/// keys of RSA, P-256/P-384 or Ed25519; symmetric keys and encryption keys are skipped.
fn parse(body: &[u8]) -> Result<HashMap<String, Key>, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in set.keys.iter().take(MAX_KEYS) {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let named = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok());
        let Some(algorithm) = named.or_else(|| default_algorithm(&jwk.algorithm)) else {
            continue;
        };
        // A set may only hold public-key algorithms: an HMAC "key" would be public.
        if matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        keys.insert(kid, Key { key, algorithm });
    }
    Ok(keys)
}

/// The algorithm a key without `alg` is for: RS256 for RSA, ES256/ES384 by curve, EdDSA.
fn default_algorithm(params: &AlgorithmParameters) -> Option<Algorithm> {
    match params {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => {
            matches!(okp.curve, EllipticCurve::Ed25519).then_some(Algorithm::EdDSA)
        }
        _ => None,
    }
}
