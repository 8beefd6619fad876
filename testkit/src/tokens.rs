//! Tokens for tests: HS256, signed with the secret the test kit's gateways are started with.

use std::time::Duration;

/// The HS256 secret of every gateway the test kit starts (in-process or as a process).
pub const SECRET: &str = "gateway-test-secret-of-at-least-32-bytes";

/// The admin token of every gateway the test kit starts (`POST /drain` needs it).
pub const ADMIN_TOKEN: &str = "gateway-test-admin-token";

/// A token for `user`, valid for ten minutes.
pub fn token(user: i64) -> String {
    nearby_common::auth::mint_hs256(SECRET.as_bytes(), user, Duration::from_secs(600))
}
