//! A bearer token through the header parser and the verifier (HS256, as the development setup
//! runs): nothing panics, whatever the bytes. The seeds are signed with the target's secret
//! (expired, not yet valid, odd subjects, audiences), so the claim checks are reached too.
#![no_main]

use std::sync::LazyLock;

use nearby_common::auth::Verifier;

const SECRET: &[u8] = b"fuzz-secret-of-at-least-32-bytes!!";

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| Verifier::hs256(SECRET).expect("a secret"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = nearby_common::auth::bearer(token);
    let _ = futures::executor::block_on(VERIFIER.verify(token));
});
