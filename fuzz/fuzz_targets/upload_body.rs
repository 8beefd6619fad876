//! A `POST /v1/me/locations` body, down the upload's parse and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nearby_gateway::fuzzing::upload_body(data));
