//! The bytes on the wire are what the Avro specification says: single-object encoding is
//! `C3 01`, the CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form
//! (little-endian), then the binary datum.

mod common;

use apache_avro::Schema;
use nearby_schemas::fingerprint::{apache_fingerprint, parsing_canonical_form, rabin};
use nearby_schemas::published::FILES;
use nearby_schemas::{Catalog, FriendshipEvent, FriendshipKind, Record};

/// The Parsing Canonical Form of `friendship_event.v1.avsc`, written out by hand from the
/// specification's rules (logical types reduce to their primitive, as in Java's
/// `SchemaNormalization`).
const FRIENDSHIP_V1_CANONICAL: &str = concat!(
    r#"{"name":"nearby.v1.FriendshipEvent","type":"record","fields":["#,
    r#"{"name":"user_id","type":"long"},"#,
    r#"{"name":"other_id","type":["null","long"]},"#,
    r#"{"name":"kind","type":{"name":"nearby.v1.FriendshipKind","type":"enum","#,
    r#""symbols":["REQUESTED","ACCEPTED","REMOVED","SHARING_ON","SHARING_OFF","PROFILE_UPDATED"]}},"#,
    r#"{"name":"actor","type":"boolean"},"#,
    r#"{"name":"at","type":"long"}]}"#
);

#[test]
fn a_friendship_event_is_byte_for_byte_single_object_encoding() {
    let event = FriendshipEvent {
        user_id: 1,
        other_id: Some(2),
        kind: FriendshipKind::Accepted,
        actor: true,
        at: 1000,
    };
    let bytes = nearby_schemas::to_vec(&event).unwrap();

    let fingerprint = rabin(FRIENDSHIP_V1_CANONICAL.as_bytes());
    // apache-avro agrees on the fingerprint of that canonical text.
    assert_eq!(fingerprint, apache_fingerprint(FRIENDSHIP_V1_CANONICAL));

    let mut expected = vec![0xC3, 0x01];
    expected.extend_from_slice(&fingerprint.to_le_bytes());
    expected.extend_from_slice(&[
        0x02, // user_id 1, zig-zag varint
        0x02, // other_id: union branch 1 (long)
        0x04, // ... 2
        0x02, // kind: enum symbol 1 (ACCEPTED)
        0x01, // actor: true
        0xD0, 0x0F, // at 1000: zig-zag 2000 as a varint
    ]);
    assert_eq!(bytes, expected);
    assert_eq!(
        FriendshipEvent::schema().canonical_form(),
        FRIENDSHIP_V1_CANONICAL
    );
}

#[test]
fn every_published_fingerprint_is_the_specification_s() {
    for file in FILES {
        let ours = parsing_canonical_form(file.avsc).unwrap();
        // apache-avro 0.22 writes a logical-type long as {"type":"long"} where the
        // specification writes "long"; apart from that the canonical forms agree.
        let theirs = Schema::parse_str(file.avsc)
            .unwrap()
            .canonical_form()
            .replace(r#"{"type":"long"}"#, r#""long""#);
        assert_eq!(ours, theirs, "{}", file.file);
        assert!(!ours.contains("logicalType") && !ours.contains("doc"));

        let version = Catalog::published()
            .by_fingerprint(rabin(ours.as_bytes()))
            .unwrap_or_else(|| panic!("{} is not in the catalog", file.file));
        assert_eq!(version.canonical_form(), ours);
        assert_eq!(version.fingerprint(), apache_fingerprint(&ours));
        let header = version.single_object_header();
        assert_eq!(&header[..2], &[0xC3, 0x01]);
        assert_eq!(header[2..], version.fingerprint().to_le_bytes());
    }
}

#[test]
fn encoded_records_start_with_their_writer_s_header() {
    for bytes in common::encoded_samples() {
        let writer = Catalog::published().writer_of(&bytes).unwrap();
        assert_eq!(bytes[..10], writer.single_object_header());
    }
}
