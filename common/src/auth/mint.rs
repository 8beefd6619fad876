//! Minting tokens: development and load tests sign HS256 with the shared secret; tests sign
//! RS256, ES256 and EdDSA with their fixture keys.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::Claims;
use crate::UserId;
use crate::clock::now_s;

/// Mints an HS256 token for `user`, valid for `ttl` (development and load tests). An empty
/// secret signs nothing: the token is empty.
pub fn mint_hs256(secret: &[u8], user: UserId, ttl: Duration) -> String {
    mint_claims_hs256(secret, &claims_for(user, ttl))
}

/// Mints an RS256 token for `user` with a PEM private key.
pub fn mint_rs256_pem(
    pem: &[u8],
    user: UserId,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims_for(user, ttl),
        &EncodingKey::from_rsa_pem(pem)?,
    )
}

/// Claims for `user`, issued now, valid for `ttl`.
pub fn claims_for(user: UserId, ttl: Duration) -> Claims {
    let iat = now_s();
    Claims {
        sub: user.to_string(),
        exp: iat + ttl.as_secs(),
        iat,
    }
}

/// Mints a token with any claims (tests use it for `nbf`, `aud`, other user claims).
pub fn mint_json_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    hs256(secret, claims)
}

/// Mints a token with the given raw claims (tests use it for expired or odd tokens).
pub fn mint_claims_hs256(secret: &[u8], claims: &Claims) -> String {
    hs256(secret, claims)
}

fn hs256(secret: &[u8], claims: &impl serde::Serialize) -> String {
    // Only an empty secret is refused, and serialising our claims cannot fail.
    EncodingKey::from_secret(secret)
        .and_then(|key| jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key))
        .unwrap_or_default()
}
