//! Identity: JWTs signed with HS256 (a shared secret) or RS256 (verified with a public key).
//! `sub` is the user id as a decimal string; `exp` is enforced. The gateway verifies; the admin
//! tool mints development tokens.

use std::time::Duration;

use crate::clock::now_s;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::UserId;
use crate::ids::parse_user_id;

/// The secret used when none is configured: fine on a laptop, refused nowhere, warned about.
pub const DEV_SECRET: &str = "nearby-dev-secret-change-me";

/// Allowed clock difference between the token issuer and us when checking `exp`.
const LEEWAY_S: u64 = 5;

/// How tokens are checked. With a public key file, RS256 only; otherwise HS256 with the secret.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// HS256 shared secret for tokens (ignored when a public key is given). Change it outside
    /// development: the default is public.
    #[arg(long, env = "NEARBY_JWT_SECRET", default_value = DEV_SECRET, hide_env_values = true)]
    pub jwt_secret: String,

    /// PEM file of the RS256 public key that verifies tokens (an identity provider's key).
    #[arg(long, env = "NEARBY_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,
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
    /// `sub` is not a user id.
    #[error("token subject is not a user id")]
    BadSubject,
}

/// Checks tokens with the configured key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// A verifier for RS256 tokens, from a PEM public key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self::new(DecodingKey::from_rsa_pem(pem)?, Algorithm::RS256))
    }

    /// The verifier the configuration asks for.
    pub fn from_args(args: &AuthArgs) -> Result<Self, String> {
        match &args.jwt_public_key_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("reading JWT public key {}: {e}", path.display()))?;
                Self::rs256_pem(&pem).map_err(|e| {
                    format!(
                        "JWT public key {} is not an RSA PEM key: {e}",
                        path.display()
                    )
                })
            }
            None => Ok(Self::hs256(args.jwt_secret.as_bytes())),
        }
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        // One algorithm only: a token cannot pick a weaker one (or "none") for itself.
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_S;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self { key, validation }
    }

    /// The user a token speaks for.
    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            },
        )?;
        parse_user_id(&data.claims.sub).ok_or(AuthError::BadSubject)
    }
}

/// Reads the token from an `Authorization: Bearer <jwt>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Mints an HS256 token for `user`, valid for `ttl` (development and load tests).
pub fn mint_hs256(secret: &[u8], user: UserId, ttl: Duration) -> String {
    mint(
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
        user,
        ttl,
    )
}

/// Mints an RS256 token for `user` with a PEM private key.
pub fn mint_rs256_pem(
    pem: &[u8],
    user: UserId,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    Ok(mint(
        &EncodingKey::from_rsa_pem(pem)?,
        Algorithm::RS256,
        user,
        ttl,
    ))
}

fn mint(key: &EncodingKey, algorithm: Algorithm, user: UserId, ttl: Duration) -> String {
    let iat = now_s();
    let claims = Claims {
        sub: user.to_string(),
        exp: iat + ttl.as_secs(),
        iat,
    };
    // Encoding our own well-formed claims with a valid key cannot fail.
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).unwrap_or_default()
}

/// Mints a token with the given raw claims (tests use it for expired or odd tokens).
pub fn mint_claims_hs256(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";
    const PRIVATE: &[u8] = include_bytes!("../tests/fixtures/rs256-test-private.pem");
    const PUBLIC: &[u8] = include_bytes!("../tests/fixtures/rs256-test-public.pem");
    const OTHER_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/rs256-other-private.pem");

    #[test]
    fn hs256_round_trip() {
        let token = mint_hs256(SECRET, 42, Duration::from_secs(60));
        assert_eq!(Verifier::hs256(SECRET).verify(&token), Ok(42));
    }

    #[test]
    fn forged_expired_and_odd_tokens_are_refused() {
        let v = Verifier::hs256(SECRET);
        let forged = mint_hs256(b"another-secret", 42, Duration::from_secs(60));
        assert_eq!(v.verify(&forged), Err(AuthError::Invalid));
        let expired = mint_claims_hs256(
            SECRET,
            &Claims {
                sub: "42".into(),
                exp: now_s() - 60,
                iat: now_s() - 120,
            },
        );
        assert_eq!(v.verify(&expired), Err(AuthError::Expired));
        let not_a_user = mint_claims_hs256(
            SECRET,
            &Claims {
                sub: "alice".into(),
                exp: now_s() + 60,
                iat: now_s(),
            },
        );
        assert_eq!(v.verify(&not_a_user), Err(AuthError::BadSubject));
        assert_eq!(v.verify("not.a.jwt"), Err(AuthError::Invalid));
        assert_eq!(v.verify(""), Err(AuthError::Invalid));
    }

    #[test]
    fn rs256_verifies_with_the_public_key_only() {
        let v = Verifier::rs256_pem(PUBLIC).expect("public key");
        let token = mint_rs256_pem(PRIVATE, 7, Duration::from_secs(60)).expect("mint");
        assert_eq!(v.verify(&token), Ok(7));
        let other = mint_rs256_pem(OTHER_PRIVATE, 7, Duration::from_secs(60)).expect("mint");
        assert_eq!(v.verify(&other), Err(AuthError::Invalid));
        // An HS256 token signed with the public key's bytes (the classic confusion) is refused.
        let confused = mint_hs256(PUBLIC, 7, Duration::from_secs(60));
        assert_eq!(v.verify(&confused), Err(AuthError::Invalid));
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
