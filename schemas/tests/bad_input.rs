//! Bad bytes get the right error, never a panic.

mod common;

use nearby_schemas::{Catalog, Delivery, Error, FriendshipEvent, LocationEvent, Record, decode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn garbage_is_bad_magic() {
    for garbage in [
        &b"{\"lat\": 1}"[..],
        b"\x01\x02\x03",
        b"\xC3\x00whatever..",
        b"\xFF",
    ] {
        let err = decode::<LocationEvent>(garbage).unwrap_err();
        assert!(matches!(err, Error::BadMagic { .. }), "{garbage:?}: {err}");
    }
}

#[test]
fn empty_and_short_headers_are_truncated() {
    let bytes = nearby_schemas::to_vec(&common::position(None, None)).unwrap();
    for len in 0..10 {
        let err = decode::<LocationEvent>(&bytes[..len]).unwrap_err();
        assert!(matches!(err, Error::TruncatedHeader { .. }), "{len}: {err}");
    }
}

#[test]
fn a_cut_datum_is_truncated() {
    for bytes in common::encoded_samples() {
        for len in 10..bytes.len() {
            let cut = &bytes[..len];
            let err = match Catalog::published().writer_of(cut).unwrap().name() {
                "nearby.v1.LocationEvent" => decode::<LocationEvent>(cut).map(drop),
                "nearby.v1.Delivery" => decode::<Delivery>(cut).map(drop),
                _ => decode::<FriendshipEvent>(cut).map(drop),
            }
            .unwrap_err();
            assert!(
                matches!(err, Error::TruncatedDatum { .. }),
                "{len} of {}: {err}",
                bytes.len()
            );
        }
    }
}

#[test]
fn an_unknown_fingerprint_is_reported_with_its_value() {
    let mut bytes = nearby_schemas::to_vec(&common::position(None, None)).unwrap();
    bytes[2..10].copy_from_slice(&0xDEAD_BEEF_u64.to_le_bytes());
    let err = decode::<LocationEvent>(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnknownFingerprint {
                fingerprint: 0xDEAD_BEEF
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("0x00000000deadbeef"), "{err}");
}

#[test]
fn an_unregistered_registry_id_is_reported() {
    let mut bytes = vec![0, 0, 0, 1, 0];
    bytes.extend_from_slice(&[2, 4, 6]);
    let err = decode::<LocationEvent>(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::UnregisteredSchemaId { id: 256 }),
        "{err}"
    );
}

#[test]
fn writing_registry_framing_needs_a_registered_id() {
    let mut buf = vec![9];
    let err = Catalog::with_published()
        .encode_for_registry(&common::position(None, None), &mut buf)
        .unwrap_err();
    assert!(matches!(err, Error::NoRegistryId { .. }), "{err}");
    assert_eq!(buf, [9], "a failed encode leaves the buffer as it was");
}

#[test]
fn another_record_type_is_a_wrong_record_type() {
    let delivery = nearby_schemas::to_vec(&common::deliveries()[0]).unwrap();
    let err = decode::<LocationEvent>(&delivery).unwrap_err();
    match err {
        Error::WrongRecordType { expected, found } => {
            assert_eq!(expected, "nearby.v1.LocationEvent");
            assert_eq!(found, "nearby.v1.Delivery");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn bytes_after_the_datum_are_refused() {
    let mut bytes = nearby_schemas::to_vec(&common::friendship_events()[0]).unwrap();
    bytes.push(0);
    let err = decode::<FriendshipEvent>(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::TrailingBytes { count: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_bad_union_or_enum_index_is_malformed() {
    // FriendshipEvent: user_id 1, other_id branch 5 (there are two).
    let mut bytes = FriendshipEvent::schema().single_object_header().to_vec();
    bytes.extend_from_slice(&[0x02, 0x0A, 0x04, 0x02, 0xD0, 0x0F]);
    let err = decode::<FriendshipEvent>(&bytes).unwrap_err();
    assert!(matches!(err, Error::MalformedDatum { .. }), "{err}");
    // kind symbol 9 (there are five).
    let mut bytes = FriendshipEvent::schema().single_object_header().to_vec();
    bytes.extend_from_slice(&[0x02, 0x00, 0x12, 0xD0, 0x0F]);
    let err = decode::<FriendshipEvent>(&bytes).unwrap_err();
    assert!(matches!(err, Error::MalformedDatum { .. }), "{err}");
}

#[test]
fn a_huge_string_length_is_refused_without_allocating_it() {
    // LocationEvent: user_id 1, gateway_id branch 1, a string of 128 MiB: over the 1 MiB
    // limit this crate sets (apache-avro alone would allocate it, then find the input short).
    let mut bytes = LocationEvent::schema().single_object_header().to_vec();
    bytes.extend_from_slice(&[0x02, 0x02]);
    let mut len = 2u64 << 27; // zig-zag of 2^27
    while len >= 0x80 {
        bytes.push((len as u8) | 0x80);
        len >>= 7;
    }
    bytes.push(len as u8);
    let err = decode::<LocationEvent>(&bytes).unwrap_err();
    assert!(matches!(err, Error::MalformedDatum { .. }), "{err}");
}

/// Decodes `bytes` as each record type; only the absence of a panic matters.
fn decode_all_ways(catalog: &Catalog, bytes: &[u8]) -> usize {
    usize::from(catalog.decode::<LocationEvent>(bytes).is_ok())
        + usize::from(catalog.decode::<Delivery>(bytes).is_ok())
        + usize::from(catalog.decode::<FriendshipEvent>(bytes).is_ok())
        + usize::from(catalog.decode_value(bytes).is_ok())
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5EED);
    let mut catalog = Catalog::with_published();
    catalog
        .register_id(1, nearby_schemas::published::FILES[0].avsc)
        .unwrap();
    let headers: Vec<Vec<u8>> = Catalog::published()
        .versions()
        .map(|v| v.single_object_header().to_vec())
        .chain([vec![0, 0, 0, 0, 1]])
        .collect();
    let mut buf = Vec::new();
    for round in 0..60_000 {
        buf.clear();
        // Most rounds start with a valid header, so the datum decoder sees the garbage.
        if round % 4 != 0 {
            buf.extend_from_slice(&headers[rng.random_range(0..headers.len())]);
        }
        let len = rng.random_range(0..48);
        buf.extend((0..len).map(|_| rng.random::<u8>()));
        decode_all_ways(&catalog, &buf);
    }
}

#[test]
fn mutated_records_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    let samples = common::encoded_samples();
    let catalog = Catalog::published();
    for _ in 0..40_000 {
        let mut bytes = samples[rng.random_range(0..samples.len())].clone();
        for _ in 0..rng.random_range(1..4) {
            // Flip, overwrite, drop or insert a byte after the header.
            let at = rng.random_range(10..bytes.len());
            match rng.random_range(0..4) {
                0 => bytes[at] ^= 1 << rng.random_range(0..8),
                1 => bytes[at] = rng.random(),
                2 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, rng.random()),
            }
            if bytes.len() <= 10 {
                break;
            }
        }
        decode_all_ways(catalog, &bytes);
    }
}
