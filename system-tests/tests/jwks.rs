//! Tokens checked against an identity provider's JWKS, served by the test: RS256, ES256 and
//! EdDSA keys chosen by `kid`; a rotation (new key in, old key out) takes effect without a
//! restart; random `kid`s cannot make the verifier hammer the provider; a failed or oversized
//! fetch keeps the keys held; a token cannot pick another algorithm than its key's.

use std::sync::Arc;
use std::time::Duration;

use nearby_common::auth::{AuthError, Jwks, Verifier};
use nearby_testkit::jwks::{JwksServer, TestKey};
use tokio_util::sync::CancellationToken;

/// A verifier on `server`'s set, refreshed every `refresh`, refetched for an unknown `kid` at
/// most every `min_refetch`; the refresh runs until the returned token is cancelled.
async fn verifier(
    server: &JwksServer,
    refresh: Duration,
    min_refetch: Duration,
) -> (Verifier, Arc<Jwks>, CancellationToken) {
    let jwks = Arc::new(Jwks::new(&server.url(), refresh, min_refetch).expect("a JWKS URL"));
    let stop = CancellationToken::new();
    tokio::spawn(jwks.clone().run(stop.clone()));
    // The first fetch is done once the set holds keys.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while jwks.stats().fetches.get() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never fetched");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (Verifier::jwks(jwks.clone()), jwks, stop)
}

#[tokio::test]
async fn rs256_es256_and_eddsa_keys_are_chosen_by_kid_and_rotate_without_a_restart() {
    let (rsa, ec, ed) = (
        TestKey::rs256("rsa-1"),
        TestKey::es256("ec-1"),
        TestKey::eddsa("ed-1"),
    );
    let server = JwksServer::start(&[rsa.clone(), ec.clone()]).await;
    let (v, jwks, stop) = verifier(
        &server,
        Duration::from_secs(600),
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(v.verify(&rsa.token(11)).await, Ok(11));
    assert_eq!(v.verify(&ec.token(12)).await, Ok(12));
    // Not published yet: unknown, after one more fetch.
    assert_eq!(v.verify(&ed.token(13)).await, Err(AuthError::UnknownKey));

    // The provider rotates: the Ed25519 key in, the RSA key out.
    server.set_keys(&[ec.clone(), ed.clone()]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(v.verify(&ed.token(13)).await, Ok(13), "the new key");
    assert_eq!(v.verify(&ec.token(12)).await, Ok(12), "the key kept");
    // The RSA key is gone from the set fetched: its tokens are refused from now on.
    assert_eq!(v.verify(&rsa.token(11)).await, Err(AuthError::UnknownKey));
    assert_eq!(jwks.stats().keys.get(), 2);
    stop.cancel();
}

#[tokio::test]
async fn tokens_with_random_kids_cause_one_fetch_not_one_each() {
    let server = JwksServer::start(&[TestKey::es256("ec-1")]).await;
    let (v, _jwks, stop) =
        verifier(&server, Duration::from_secs(600), Duration::from_secs(60)).await;
    let before = server.fetches();
    let forger = TestKey::es256("whatever");
    let tries = (0..50).map(|i| {
        let (v, forger) = (v.clone(), forger.clone());
        async move {
            let claims =
                serde_json::to_value(nearby_common::auth::claims_for(1, Duration::from_secs(60)))
                    .expect("claims");
            v.verify(&forger.sign(Some(&format!("kid-{i}")), &claims))
                .await
        }
    });
    for refused in futures::future::join_all(tries).await {
        assert_eq!(refused, Err(AuthError::UnknownKey));
    }
    assert!(
        server.fetches() - before <= 1,
        "{} fetches for 50 unknown kids",
        server.fetches() - before
    );
    stop.cancel();
}

#[tokio::test]
async fn a_token_cannot_choose_another_algorithm_or_key_than_its_kid_names() {
    let rsa = TestKey::rs256("rsa-1");
    let server = JwksServer::start(&[rsa.clone(), TestKey::es256("ec-1")]).await;
    let (v, _jwks, stop) =
        verifier(&server, Duration::from_secs(600), Duration::from_secs(60)).await;
    let claims = serde_json::to_value(nearby_common::auth::claims_for(5, Duration::from_secs(60)))
        .expect("claims");
    // Signed by another RSA key, under the published key's kid.
    let forged = TestKey::rs256_other("rsa-1").sign(Some("rsa-1"), &claims);
    assert_eq!(v.verify(&forged).await, Err(AuthError::Invalid));
    // An ES256 signature under the RSA key's kid.
    let crossed = TestKey::es256("ec-1").sign(Some("rsa-1"), &claims);
    assert_eq!(v.verify(&crossed).await, Err(AuthError::Invalid));
    // HS256 keyed with the public key's JWK text, under its kid: the classic confusion.
    let public = serde_json::to_string(&rsa.jwk()).expect("jwk");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let secret = jsonwebtoken::EncodingKey::from_secret(public.as_bytes()).expect("a secret");
    let confused = jsonwebtoken::encode(&header, &claims, &secret).expect("signs");
    assert_eq!(v.verify(&confused).await, Err(AuthError::Invalid));
    // Without a kid, with two keys in the set: no key is guessed.
    assert_eq!(
        v.verify(&rsa.sign(None, &claims)).await,
        Err(AuthError::UnknownKey)
    );
    stop.cancel();
}

#[tokio::test]
async fn a_failed_or_oversized_fetch_keeps_the_keys_held() {
    let ec = TestKey::es256("ec-1");
    let server = JwksServer::start(std::slice::from_ref(&ec)).await;
    let (v, jwks, stop) = verifier(
        &server,
        Duration::from_millis(100),
        Duration::from_millis(100),
    )
    .await;
    // Without a kid, the set's only key is used.
    let claims = serde_json::to_value(nearby_common::auth::claims_for(8, Duration::from_secs(60)))
        .expect("claims");
    assert_eq!(v.verify(&ec.sign(None, &claims)).await, Ok(8));

    server.fail_with(503);
    let failures = jwks.stats().failures.get();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(jwks.stats().failures.get() > failures, "refreshes failed");
    assert_eq!(v.verify(&ec.token(8)).await, Ok(8), "503: the key is kept");

    let failures = jwks.stats().failures.get();
    server.serve_body(format!(
        "{{\"keys\":[],\"pad\":\"{}\"}}",
        "x".repeat(nearby_common::auth::jwks::MAX_JWKS_BYTES)
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(jwks.stats().failures.get() > failures, "oversized refused");
    assert_eq!(
        v.verify(&ec.token(8)).await,
        Ok(8),
        "too big: the key is kept"
    );

    // A set of symmetric keys only is no set of ours: tokens keyed with it are refused.
    server.serve_body(r#"{"keys":[{"kty":"oct","kid":"h","alg":"HS256","k":"c2VjcmV0"}]}"#.into());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let hs = nearby_common::auth::mint_json_hs256(b"secret", &claims);
    assert_eq!(v.verify(&hs).await, Err(AuthError::UnknownKey));
    stop.cancel();
}

#[test]
fn a_jwks_url_is_https_outside_development_unless_on_loopback() {
    use nearby_common::auth::jwks::check_https;
    let refused = check_https("http://id.example/jwks.json", false).expect_err("plain http");
    assert!(refused.contains("https"), "{refused}");
    assert!(check_https("http://id.example/jwks.json", true).is_ok());
    assert!(check_https("http://127.0.0.1:8000/jwks.json", false).is_ok());
    assert!(check_https("http://localhost/jwks.json", false).is_ok());
    assert!(check_https("https://id.example/jwks.json", false).is_ok());
}

#[test]
fn a_jwks_url_must_be_http() {
    let d = Duration::from_secs(1);
    assert!(Jwks::new("file:///etc/passwd", d, d).is_err());
    assert!(Jwks::new("not a url", d, d).is_err());
    assert!(Jwks::new("https://id.example/.well-known/jwks.json", d, d).is_ok());
}
