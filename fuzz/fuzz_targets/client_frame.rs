//! A socket's text frame, down the session's parse and checks (`nearby_gateway::fuzzing`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nearby_gateway::fuzzing::client_frame(data));
