//! Every paging cursor a client sends back (nearby, history, friend list).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nearby_gateway::fuzzing::cursors(data));
