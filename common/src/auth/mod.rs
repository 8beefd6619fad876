//! Identity: JWTs signed with HS256 (a shared secret), RS256 (a public key file), or RS256,
//! ES256 and EdDSA with keys from an identity provider's JWKS URL ([`jwks`]). The user id is a
//! claim (`sub` unless configured), a decimal string or an integer; `exp` and `nbf` are
//! enforced, a lifetime longer than the configured maximum is refused, and `iss` and `aud` are
//! checked when configured. Outside development mode (`NEARBY_DEV`), the public development
//! secret and HS256 secrets shorter than 32 bytes are refused at start. The gateway verifies; the
//! admin tool mints development tokens ([`mint`]).

pub mod jwks;
mod mint;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::UserId;
use crate::clock::now_s;
use crate::ids::parse_user_id;
pub use jwks::Jwks;
pub use mint::{claims_for, mint_claims_hs256, mint_hs256, mint_json_hs256, mint_rs256_pem};

/// The secret used when none is configured: public, so accepted in development mode only.
pub const DEV_SECRET: &str = "nearby-dev-secret-change-me";

/// The shortest HS256 secret accepted outside development mode, bytes (the hash's output size:
/// RFC 7518 §3.2 asks for at least that much key).
pub const MIN_SECRET_BYTES: usize = 32;

/// Allowed clock difference between the token issuer and us when checking `exp`.
const LEEWAY_S: u64 = 5;

/// How tokens are checked: with a JWKS URL, by its keys; with a public key file, RS256 with it;
/// otherwise HS256 with the secret.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// HS256 shared secret for tokens (ignored when a JWKS URL or a public key is given), at
    /// least 32 bytes.
    /// The default is public: accepted in development mode (`NEARBY_DEV`) only.
    #[arg(long, env = "NEARBY_JWT_SECRET", default_value = DEV_SECRET, hide_env_values = true)]
    pub jwt_secret: String,

    /// PEM file of the RS256 public key that verifies tokens (an identity provider's key).
    #[arg(long, env = "NEARBY_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,

    /// An identity provider's JWKS URL: tokens signed RS256, ES256 or EdDSA by one of its keys
    /// (chosen by `kid`) are accepted, and no other. https, unless on loopback or in
    /// development mode: whoever can alter the fetch could sign any token.
    #[arg(long, env = "NEARBY_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// How often the JWKS is fetched again.
    #[arg(long, env = "NEARBY_JWT_JWKS_REFRESH", default_value = "10m", value_parser = humantime::parse_duration)]
    pub jwt_jwks_refresh: Duration,

    /// The shortest gap between two fetches of the JWKS asked for by tokens naming an unknown
    /// `kid` (and between retries after a failed fetch).
    #[arg(long, env = "NEARBY_JWT_JWKS_MIN_REFETCH", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_jwks_min_refetch: Duration,

    /// Development mode: the public development secret and short secrets are accepted.
    /// `scripts/run.sh` and the tests set it; a deployment must not.
    #[arg(long = "dev", env = "NEARBY_DEV", value_parser = clap::builder::BoolishValueParser::new())]
    pub dev: bool,

    /// The longest token lifetime accepted: a token whose `exp` is further ahead is refused.
    #[arg(long, env = "NEARBY_JWT_MAX_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration)]
    pub jwt_max_lifetime: Duration,

    /// The `iss` every token must carry (not checked when unset).
    #[arg(long, env = "NEARBY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The `aud` every token must carry (one of its audiences); when unset, a token's `aud` is
    /// accepted whatever it is.
    #[arg(long, env = "NEARBY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The claim that carries the user id (a decimal string or an integer).
    #[arg(long, env = "NEARBY_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,
}

/// The claims we read and write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, a decimal string.
    pub sub: String,
    /// Expiry, epoch seconds.
    pub exp: u64,
    /// Issued at, epoch seconds.
    #[serde(default)]
    pub iat: u64,
}

/// Why a token was refused. Each maps to HTTP 401; the text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the request.
    #[error("missing bearer token")]
    Missing,
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Bad signature, wrong algorithm, or not a JWT at all.
    #[error("invalid token")]
    Invalid,
    /// The user claim is missing or not a user id.
    #[error("token subject is not a user id")]
    BadSubject,
    /// The token's `nbf` is still ahead.
    #[error("token not valid yet")]
    NotYetValid,
    /// The token's `exp` is further ahead than the longest lifetime accepted.
    #[error("token lifetime over the maximum of {0} s")]
    TooLong(u64),
    /// `iss` or `aud` is not the one configured.
    #[error("token not issued for this service")]
    WrongAudience,
    /// The token's `kid` is not in the identity provider's key set.
    #[error("token signed with an unknown key")]
    UnknownKey,
}

/// Where the verification key comes from.
#[derive(Clone)]
enum Keys {
    /// One key and its algorithm: the HS256 secret or the RS256 public key file.
    Fixed(DecodingKey, Algorithm),
    /// The key the token's `kid` names in a JWKS.
    Jwks(Arc<Jwks>),
}

/// Checks tokens with the configured key.
#[derive(Clone)]
pub struct Verifier {
    keys: Keys,
    /// Every check but the algorithm, which is the key's.
    validation: Validation,
    max_lifetime_s: u64,
    user_claim: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "keys",
                &match &self.keys {
                    Keys::Fixed(_, algorithm) => format!("{algorithm:?}"),
                    Keys::Jwks(jwks) => format!("{jwks:?}"),
                },
            )
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for HS256 tokens signed with `secret` (not empty).
    pub fn hs256(secret: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self::new(Keys::Fixed(
            DecodingKey::from_secret(secret)?,
            Algorithm::HS256,
        )))
    }

    /// A verifier for RS256 tokens, from a PEM public key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self::new(Keys::Fixed(
            DecodingKey::from_rsa_pem(pem)?,
            Algorithm::RS256,
        )))
    }

    /// A verifier for tokens signed by the keys of a JWKS (which the caller fetches: see
    /// [`Jwks::run`]).
    pub fn jwks(jwks: Arc<Jwks>) -> Self {
        Self::new(Keys::Jwks(jwks))
    }

    /// The JWKS this verifier reads, if it reads one (its owner runs its refresh).
    pub fn key_set(&self) -> Option<Arc<Jwks>> {
        match &self.keys {
            Keys::Jwks(jwks) => Some(jwks.clone()),
            Keys::Fixed(..) => None,
        }
    }

    /// The verifier the configuration asks for; refuses, outside development mode, the public
    /// development secret and HS256 secrets shorter than [`MIN_SECRET_BYTES`].
    pub fn from_args(args: &AuthArgs) -> Result<Self, String> {
        let verifier = match (&args.jwt_jwks_url, &args.jwt_public_key_file) {
            (Some(url), _) => {
                jwks::check_https(url, args.dev)?;
                Ok(Self::jwks(Arc::new(Jwks::new(
                    url,
                    args.jwt_jwks_refresh,
                    args.jwt_jwks_min_refetch,
                )?)))
            }
            (None, Some(path)) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("reading JWT public key {}: {e}", path.display()))?;
                Self::rs256_pem(&pem).map_err(|e| {
                    format!(
                        "JWT public key {} is not an RSA PEM key: {e}",
                        path.display()
                    )
                })
            }
            (None, None) => {
                check_secret(&args.jwt_secret, args.dev)?;
                Self::hs256(args.jwt_secret.as_bytes())
                    .map_err(|e| format!("NEARBY_JWT_SECRET: {e}"))
            }
        }?;
        Ok(verifier
            .max_lifetime(args.jwt_max_lifetime)
            .issuer(args.jwt_issuer.as_deref())
            .audience(args.jwt_audience.as_deref())
            .user_claim(&args.jwt_user_claim))
    }

    fn new(keys: Keys) -> Self {
        // The algorithm is set per key at each check (see `check`).
        let mut validation = Validation {
            leeway: LEEWAY_S,
            validate_exp: true,
            validate_nbf: true,
            // An `aud` is accepted whatever it is until an audience is configured: most
            // identity providers put one in every token.
            validate_aud: false,
            ..Validation::default()
        };
        validation.set_required_spec_claims(&["exp"]);
        Self {
            keys,
            validation,
            max_lifetime_s: 24 * 60 * 60,
            user_claim: "sub".to_owned(),
        }
    }

    /// Refuses tokens whose `exp` is more than `max` ahead.
    #[must_use]
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime_s = max.as_secs();
        self
    }

    /// Requires `iss` to be `issuer` (when given).
    #[must_use]
    pub fn issuer(mut self, issuer: Option<&str>) -> Self {
        if let Some(issuer) = issuer {
            self.validation.set_issuer(&[issuer]);
            self.require("iss");
        }
        self
    }

    /// Requires `aud` to be (or contain) `audience` (when given).
    #[must_use]
    pub fn audience(mut self, audience: Option<&str>) -> Self {
        if let Some(audience) = audience {
            self.validation.set_audience(&[audience]);
            self.validation.validate_aud = true;
            self.require("aud");
        }
        self
    }

    /// Reads the user id from `claim` instead of `sub`.
    #[must_use]
    pub fn user_claim(mut self, claim: &str) -> Self {
        claim.clone_into(&mut self.user_claim);
        self
    }

    fn require(&mut self, claim: &str) {
        self.validation
            .required_spec_claims
            .insert(claim.to_owned());
    }

    /// The user a token speaks for. With a JWKS, a token naming an unknown `kid` may wait for
    /// one fetch of the set.
    pub async fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        match &self.keys {
            Keys::Fixed(key, algorithm) => self.check(token, key, *algorithm),
            Keys::Jwks(jwks) => {
                let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
                let key = jwks.key(header.kid.as_deref()).await?;
                self.check(token, &key.key, key.algorithm)
            }
        }
    }

    fn check(
        &self,
        token: &str,
        key: &DecodingKey,
        algorithm: Algorithm,
    ) -> Result<UserId, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        // One algorithm only, the key's: a token cannot pick a weaker one (or "none", or HS256
        // keyed with a public key's bytes) for itself.
        let mut validation = self.validation.clone();
        validation.algorithms = vec![algorithm];
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) if c == "iss" || c == "aud" => {
                AuthError::WrongAudience
            }
            _ => AuthError::Invalid,
        })?;
        let claims = data.claims;
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .ok_or(AuthError::Invalid)?;
        if exp > now_s() + self.max_lifetime_s + LEEWAY_S {
            return Err(AuthError::TooLong(self.max_lifetime_s));
        }
        match claims.get(&self.user_claim) {
            Some(serde_json::Value::String(s)) => parse_user_id(s),
            Some(serde_json::Value::Number(n)) => n.as_i64().filter(|id| *id >= 0),
            _ => None,
        }
        .ok_or(AuthError::BadSubject)
    }
}

/// Refuses the public development secret and short secrets outside development mode; the
/// message says what to set.
fn check_secret(secret: &str, dev: bool) -> Result<(), String> {
    if dev {
        return Ok(());
    }
    if secret == DEV_SECRET {
        return Err(format!(
            "NEARBY_JWT_SECRET is unset or the public development secret: set it to a secret of \
             at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -base64 48`), give an \
             identity provider's keys with NEARBY_JWT_JWKS_URL, or set NEARBY_DEV=1 for development"
        ));
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "NEARBY_JWT_SECRET is {} bytes: at least {MIN_SECRET_BYTES} are needed outside \
             development (NEARBY_DEV=1)",
            secret.len()
        ));
    }
    Ok(())
}

/// Reads the token from an `Authorization: Bearer <jwt>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    const SECRET: &[u8] = b"test-secret";
    const PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/rs256-test-private.pem");
    const PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/rs256-test-public.pem");
    const OTHER_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/rs256-other-private.pem");

    #[test]
    fn hs256_round_trip() {
        let token = mint_hs256(SECRET, 42, Duration::from_secs(60));
        assert_eq!(
            block_on(Verifier::hs256(SECRET).expect("secret").verify(&token)),
            Ok(42)
        );
    }

    #[test]
    fn forged_expired_and_odd_tokens_are_refused() {
        let v = Verifier::hs256(SECRET).expect("secret");
        let forged = mint_hs256(b"another-secret", 42, Duration::from_secs(60));
        assert_eq!(block_on(v.verify(&forged)), Err(AuthError::Invalid));
        let expired = mint_claims_hs256(
            SECRET,
            &Claims {
                sub: "42".into(),
                exp: now_s() - 60,
                iat: now_s() - 120,
            },
        );
        assert_eq!(block_on(v.verify(&expired)), Err(AuthError::Expired));
        let not_a_user = mint_claims_hs256(
            SECRET,
            &Claims {
                sub: "alice".into(),
                exp: now_s() + 60,
                iat: now_s(),
            },
        );
        assert_eq!(block_on(v.verify(&not_a_user)), Err(AuthError::BadSubject));
        assert_eq!(block_on(v.verify("not.a.jwt")), Err(AuthError::Invalid));
        assert_eq!(block_on(v.verify("")), Err(AuthError::Invalid));
    }

    #[test]
    fn rs256_verifies_with_the_public_key_only() {
        let v = Verifier::rs256_pem(PUBLIC).expect("public key");
        let token = mint_rs256_pem(PRIVATE, 7, Duration::from_secs(60)).expect("mint");
        assert_eq!(block_on(v.verify(&token)), Ok(7));
        let other = mint_rs256_pem(OTHER_PRIVATE, 7, Duration::from_secs(60)).expect("mint");
        assert_eq!(block_on(v.verify(&other)), Err(AuthError::Invalid));
        // An HS256 token signed with the public key's bytes (the classic confusion) is refused.
        let confused = mint_hs256(PUBLIC, 7, Duration::from_secs(60));
        assert_eq!(block_on(v.verify(&confused)), Err(AuthError::Invalid));
    }

    fn args(secret: &str, dev: bool) -> AuthArgs {
        AuthArgs {
            jwt_secret: secret.to_owned(),
            jwt_public_key_file: None,
            jwt_jwks_url: None,
            jwt_jwks_refresh: Duration::from_secs(600),
            jwt_jwks_min_refetch: Duration::from_secs(30),
            dev,
            jwt_max_lifetime: Duration::from_secs(24 * 3600),
            jwt_issuer: None,
            jwt_audience: None,
            jwt_user_claim: "sub".to_owned(),
        }
    }

    #[test]
    fn the_development_secret_and_short_secrets_need_development_mode() {
        let refused = Verifier::from_args(&args(DEV_SECRET, false)).expect_err("dev secret");
        assert!(refused.contains("NEARBY_JWT_SECRET") && refused.contains("NEARBY_DEV=1"));
        assert!(Verifier::from_args(&args(DEV_SECRET, true)).is_ok());
        let short = "x".repeat(MIN_SECRET_BYTES - 1);
        let refused = Verifier::from_args(&args(&short, false)).expect_err("short secret");
        assert!(refused.contains("31 bytes"), "{refused}");
        assert!(Verifier::from_args(&args(&short, true)).is_ok());
        let long = "x".repeat(MIN_SECRET_BYTES);
        let v = Verifier::from_args(&args(&long, false)).expect("a long secret");
        let token = mint_hs256(long.as_bytes(), 5, Duration::from_secs(60));
        assert_eq!(block_on(v.verify(&token)), Ok(5));
    }

    fn json(claims: serde_json::Value) -> String {
        mint_json_hs256(SECRET, &claims)
    }

    #[test]
    fn nbf_and_the_longest_lifetime_are_enforced() {
        let v = Verifier::hs256(SECRET)
            .expect("secret")
            .max_lifetime(Duration::from_secs(3600));
        let now = now_s();
        let later = json(serde_json::json!({"sub": "1", "exp": now + 600, "nbf": now + 300}));
        assert_eq!(block_on(v.verify(&later)), Err(AuthError::NotYetValid));
        let begun = json(serde_json::json!({"sub": "1", "exp": now + 600, "nbf": now - 10}));
        assert_eq!(block_on(v.verify(&begun)), Ok(1));
        let century = json(serde_json::json!({"sub": "1", "exp": now + 100 * 365 * 86_400}));
        assert_eq!(block_on(v.verify(&century)), Err(AuthError::TooLong(3600)));
        let hour = json(serde_json::json!({"sub": "1", "exp": now + 3600}));
        assert_eq!(block_on(v.verify(&hour)), Ok(1));
        let no_exp = json(serde_json::json!({"sub": "1"}));
        assert_eq!(block_on(v.verify(&no_exp)), Err(AuthError::Invalid));
    }

    #[test]
    fn aud_is_accepted_unless_configured_then_checked_as_iss_is() {
        let exp = now_s() + 600;
        let with_aud = json(serde_json::json!({"sub": "3", "exp": exp, "aud": "some-api"}));
        assert_eq!(
            block_on(Verifier::hs256(SECRET).expect("secret").verify(&with_aud)),
            Ok(3)
        );
        let v = Verifier::hs256(SECRET)
            .expect("secret")
            .audience(Some("nearby"))
            .issuer(Some("https://id.example"));
        let right = json(serde_json::json!({
            "sub": "3", "exp": exp, "aud": ["x", "nearby"], "iss": "https://id.example"
        }));
        assert_eq!(block_on(v.verify(&right)), Ok(3));
        let wrong_aud = json(serde_json::json!({
            "sub": "3", "exp": exp, "aud": "some-api", "iss": "https://id.example"
        }));
        assert_eq!(
            block_on(v.verify(&wrong_aud)),
            Err(AuthError::WrongAudience)
        );
        let no_aud = json(serde_json::json!({"sub": "3", "exp": exp, "iss": "https://id.example"}));
        assert_eq!(block_on(v.verify(&no_aud)), Err(AuthError::WrongAudience));
        let wrong_iss = json(serde_json::json!({
            "sub": "3", "exp": exp, "aud": "nearby", "iss": "https://evil.example"
        }));
        assert_eq!(
            block_on(v.verify(&wrong_iss)),
            Err(AuthError::WrongAudience)
        );
    }

    #[test]
    fn the_user_id_claim_can_be_another_one() {
        let exp = now_s() + 600;
        let v = Verifier::hs256(SECRET).expect("secret").user_claim("uid");
        let numeric = json(serde_json::json!({"sub": "auth0|abc", "exp": exp, "uid": 77}));
        assert_eq!(block_on(v.verify(&numeric)), Ok(77));
        let text = json(serde_json::json!({"sub": "auth0|abc", "exp": exp, "uid": "78"}));
        assert_eq!(block_on(v.verify(&text)), Ok(78));
        let missing = json(serde_json::json!({"sub": "79", "exp": exp}));
        assert_eq!(block_on(v.verify(&missing)), Err(AuthError::BadSubject));
        let negative = json(serde_json::json!({"sub": "1", "exp": exp, "uid": -4}));
        assert_eq!(block_on(v.verify(&negative)), Err(AuthError::BadSubject));
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
