//! Bytes read off each topic, decoded as that topic's record (any published schema version,
//! single-object framing). A record that decodes encodes again, and that encoding is stable:
//! decoding and encoding it once more gives the same bytes.
#![no_main]

use nearby_schemas::{DeliveryBatch, FriendshipEvent, LocationEvent, Record};

fn stable<T: Record>(data: &[u8]) {
    let Ok(value) = nearby_schemas::decode::<T>(data) else {
        return;
    };
    let Ok(once) = nearby_schemas::to_vec(&value) else {
        return;
    };
    let again = nearby_schemas::decode::<T>(&once).expect("our own encoding decodes");
    let twice = nearby_schemas::to_vec(&again).expect("and encodes");
    assert_eq!(once, twice, "the encoding moved");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stable::<LocationEvent>(data);
    stable::<DeliveryBatch>(data);
    stable::<FriendshipEvent>(data);
});
