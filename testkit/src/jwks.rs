//! An identity provider's key set served by the test itself: [`JwksServer`] serves
//! `/jwks.json` on loopback port 0 with the keys a test sets (and can change, to rotate them),
//! and counts the fetches; [`TestKey`]s are the fixture keys (RS256, ES256, EdDSA) that sign
//! tokens and appear in the set under a `kid`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

const RS256: &[u8] = include_bytes!("../../common/tests/fixtures/rs256-test-private.pem");
const RS256_OTHER: &[u8] = include_bytes!("../../common/tests/fixtures/rs256-other-private.pem");
const ES256: &[u8] = include_bytes!("../../common/tests/fixtures/es256-test-private.pem");
const ED25519: &[u8] = include_bytes!("../../common/tests/fixtures/ed25519-test-private.pem");

/// A fixture private key, its algorithm and the `kid` it is published under.
#[derive(Clone)]
pub struct TestKey {
    /// The `kid` in the set and in the tokens it signs.
    pub kid: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    key: EncodingKey,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({}, {:?})", self.kid, self.algorithm)
    }
}

impl TestKey {
    /// The RS256 fixture key under `kid`.
    pub fn rs256(kid: &str) -> Self {
        Self::new(kid, Algorithm::RS256, EncodingKey::from_rsa_pem(RS256))
    }

    /// Another RS256 key (not the one [`TestKey::rs256`] has) under `kid`.
    pub fn rs256_other(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RS256_OTHER),
        )
    }

    /// The ES256 (P-256) fixture key under `kid`.
    pub fn es256(kid: &str) -> Self {
        Self::new(kid, Algorithm::ES256, EncodingKey::from_ec_pem(ES256))
    }

    /// The Ed25519 fixture key under `kid`.
    pub fn eddsa(kid: &str) -> Self {
        Self::new(kid, Algorithm::EdDSA, EncodingKey::from_ed_pem(ED25519))
    }

    fn new(
        kid: &str,
        algorithm: Algorithm,
        key: jsonwebtoken::errors::Result<EncodingKey>,
    ) -> Self {
        Self {
            kid: kid.to_owned(),
            algorithm,
            key: key.expect("a fixture key"),
        }
    }

    /// The public half as a JWK, with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).expect("a JWK");
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        jwk
    }

    /// A token for `user`, valid ten minutes, naming this key's `kid`.
    pub fn token(&self, user: i64) -> String {
        let claims = nearby_common::auth::claims_for(user, Duration::from_secs(600));
        self.sign(
            Some(&self.kid),
            &serde_json::to_value(claims).expect("claims"),
        )
    }

    /// `claims` signed with this key, with `kid` in the header (or none).
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.key).expect("signs")
    }
}

/// What the server answers with.
#[derive(Debug, Clone)]
enum Answer {
    Keys(Value),
    Status(u16),
    Body(String),
}

/// A JWKS endpoint on loopback: `http://127.0.0.1:port/jwks.json`.
#[derive(Debug)]
pub struct JwksServer {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves the set of `keys` (public halves).
    pub async fn start(keys: &[TestKey]) -> Self {
        let answer = Arc::new(Mutex::new(Answer::Keys(set(keys))));
        let fetches = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("an address");
        let (a, f) = (answer.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (a, f) = (a.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let answer = a.lock().expect("lock").clone();
                    respond(answer)
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            answer,
            fetches,
            task,
        }
    }

    /// The set's URL.
    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// Serves the set of `keys` from now on (a rotation).
    pub fn set_keys(&self, keys: &[TestKey]) {
        *self.answer.lock().expect("lock") = Answer::Keys(set(keys));
    }

    /// Answers every fetch with `status` and no set from now on.
    pub fn fail_with(&self, status: u16) {
        *self.answer.lock().expect("lock") = Answer::Status(status);
    }

    /// Answers every fetch with `body` (200) from now on.
    pub fn serve_body(&self, body: String) {
        *self.answer.lock().expect("lock") = Answer::Body(body);
    }

    /// How many times the set was fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn set(keys: &[TestKey]) -> Value {
    let set = JwkSet {
        keys: keys.iter().map(TestKey::jwk).collect(),
    };
    serde_json::to_value(set).expect("a JWKS")
}

fn respond(answer: Answer) -> axum::response::Response {
    use axum::response::IntoResponse;
    match answer {
        Answer::Keys(set) => axum::Json(set).into_response(),
        Answer::Status(code) => axum::http::StatusCode::from_u16(code)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Answer::Body(body) => body.into_response(),
    }
}
