//! `nearby-admin token`: the printed token verifies as the asked user with the same secret.

use std::process::Command;

use nearby_common::auth::{AuthError, Verifier};

fn token(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nearby-admin"))
        .env_remove("NEARBY_JWT_SECRET")
        .arg("token")
        .args(args)
        .output()
        .expect("runs")
}

#[tokio::test]
async fn minted_token_verifies_as_the_user() {
    let out = token(&["--user", "42", "--jwt-secret", "s3cret"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwt = String::from_utf8(out.stdout).expect("utf-8");
    let right = Verifier::hs256(b"s3cret").expect("secret");
    assert_eq!(right.verify(jwt.trim()).await, Ok(42));
    let other = Verifier::hs256(b"other").expect("secret");
    assert_eq!(other.verify(jwt.trim()).await, Err(AuthError::Invalid));
}

#[tokio::test]
async fn rs256_token_from_a_private_key_file() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../common/tests/fixtures");
    let out = token(&[
        "--user",
        "7",
        "--private-key-file",
        &format!("{fixtures}/rs256-test-private.pem"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read(format!("{fixtures}/rs256-test-public.pem")).expect("public key");
    let v = Verifier::rs256_pem(&public).expect("key");
    let jwt = String::from_utf8_lossy(&out.stdout);
    assert_eq!(v.verify(jwt.trim()).await, Ok(7));
}

#[test]
fn a_bad_user_id_is_refused() {
    let out = token(&["--user=-3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a user id"));
}
