//! Schema evolution: a newer reader reads older records (added fields take their defaults), an
//! older reader reads newer records when the catalog knows the newer writer schema, and enum
//! symbols a reader does not know fall back to the enum's default or fail.
//!
//! The v2 schemas live in `tests/avro/` and are never published.

mod common;

use std::sync::LazyLock;

use nearby_schemas::{
    Catalog, Connected, Delivery, DeliveryPayload, Disconnected, Error, FriendLeft,
    FriendshipEvent, LeftReason, LocationBody, LocationEvent, Record, SchemaVersion,
};
use serde::{Deserialize, Serialize};

const LOCATION_V2: &str = include_str!("avro/location_event.v2.avsc");
const DELIVERY_V2: &str = include_str!("avro/delivery.v2.avsc");
const FRIENDSHIP_V2: &str = include_str!("avro/friendship_event.v2.avsc");

/// `LocationEvent` as a v2 reader would have it. Type names must be the Avro record names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "LocationEvent")]
struct LocationEventV2 {
    user_id: i64,
    gateway_id: Option<String>,
    ts: i64,
    received_at: i64,
    client: String,
    body: LocationBodyV2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum LocationBodyV2 {
    Position(PositionReportV2),
    Connected(Connected),
    Disconnected(Disconnected),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "PositionReport")]
struct PositionReportV2 {
    lat: f64,
    lon: f64,
    accuracy_m: Option<f64>,
    speed_mps: Option<f64>,
}

static LOCATION_V2_SCHEMA: LazyLock<SchemaVersion> =
    LazyLock::new(|| SchemaVersion::parse(LOCATION_V2).unwrap());

impl Record for LocationEventV2 {
    fn schema() -> &'static SchemaVersion {
        &LOCATION_V2_SCHEMA
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Delivery")]
struct DeliveryV2 {
    recipient_id: i64,
    payload: PayloadV2,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum PayloadV2 {
    FriendLocation(nearby_schemas::FriendLocation),
    FriendLeft(FriendLeftV2),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "FriendLeft")]
struct FriendLeftV2 {
    friend_id: i64,
    reason: LeftReasonV2,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "LeftReason", rename_all = "SCREAMING_SNAKE_CASE")]
enum LeftReasonV2 {
    OutOfRange,
    Inactive,
    SharingOff,
    Unfriended,
    Blocked,
}

static DELIVERY_V2_SCHEMA: LazyLock<SchemaVersion> =
    LazyLock::new(|| SchemaVersion::parse(DELIVERY_V2).unwrap());

impl Record for DeliveryV2 {
    fn schema() -> &'static SchemaVersion {
        &DELIVERY_V2_SCHEMA
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "FriendshipEvent")]
struct FriendshipEventV2 {
    user_id: i64,
    other_id: Option<i64>,
    kind: FriendshipKindV2,
    actor: bool,
    at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "FriendshipKind", rename_all = "SCREAMING_SNAKE_CASE")]
enum FriendshipKindV2 {
    Requested,
    Accepted,
    Removed,
    SharingOn,
    SharingOff,
    ProfileUpdated,
    Blocked,
}

static FRIENDSHIP_V2_SCHEMA: LazyLock<SchemaVersion> =
    LazyLock::new(|| SchemaVersion::parse(FRIENDSHIP_V2).unwrap());

impl Record for FriendshipEventV2 {
    fn schema() -> &'static SchemaVersion {
        &FRIENDSHIP_V2_SCHEMA
    }
}

/// The published schemas plus the test-only v2 versions.
fn catalog_with_v2() -> Catalog {
    let mut catalog = Catalog::with_published();
    for avsc in [LOCATION_V2, DELIVERY_V2, FRIENDSHIP_V2] {
        catalog.add_avsc(avsc).unwrap();
    }
    catalog
}

#[test]
fn v2_is_a_new_version_of_the_same_record() {
    assert_eq!(
        LocationEventV2::schema().name(),
        LocationEvent::schema().name()
    );
    assert_ne!(
        LocationEventV2::schema().fingerprint(),
        LocationEvent::schema().fingerprint()
    );
}

#[test]
fn a_v2_reader_reads_v1_records_with_the_defaults() {
    let catalog = Catalog::published();
    for v1 in common::location_events() {
        let bytes = nearby_schemas::to_vec(&v1).unwrap();
        let v2: LocationEventV2 = catalog.decode(&bytes).unwrap();
        assert_eq!(v2.client, "unknown", "the default of the added field");
        assert_eq!(
            (v2.user_id, &v2.gateway_id, v2.ts, v2.received_at),
            (v1.user_id, &v1.gateway_id, v1.ts, v1.received_at)
        );
        match (&v1.body, &v2.body) {
            (LocationBody::Position(p1), LocationBodyV2::Position(p2)) => {
                assert_eq!(
                    (p1.lat, p1.lon, p1.accuracy_m),
                    (p2.lat, p2.lon, p2.accuracy_m)
                );
                assert_eq!(p2.speed_mps, None, "the default of the added field");
            }
            (LocationBody::Connected(c1), LocationBodyV2::Connected(c2)) => assert_eq!(c1, c2),
            (LocationBody::Disconnected(d1), LocationBodyV2::Disconnected(d2)) => {
                assert_eq!(d1, d2);
            }
            other => panic!("the variant changed: {other:?}"),
        }
    }
}

fn v2_position() -> LocationEventV2 {
    LocationEventV2 {
        user_id: 9,
        gateway_id: Some("gw-2".into()),
        ts: common::T0,
        received_at: common::T0 + 5,
        client: "ios/5.1".into(),
        body: LocationBodyV2::Position(PositionReportV2 {
            lat: 48.85,
            lon: 2.35,
            accuracy_m: Some(4.0),
            speed_mps: Some(1.4),
        }),
    }
}

#[test]
fn a_v1_reader_reads_v2_records_when_the_catalog_knows_v2() {
    let v2 = v2_position();
    let bytes = nearby_schemas::to_vec(&v2).unwrap();
    assert_eq!(
        catalog_with_v2().decode::<LocationEventV2>(&bytes).unwrap(),
        v2
    );

    let v1: LocationEvent = catalog_with_v2().decode(&bytes).unwrap();
    assert_eq!(v1.user_id, 9);
    assert_eq!(v1.gateway_id.as_deref(), Some("gw-2"));
    let LocationBody::Position(position) = v1.body else {
        panic!("not a position: {v1:?}");
    };
    assert_eq!(
        (position.lat, position.lon, position.accuracy_m),
        (48.85, 2.35, Some(4.0))
    );

    // The published catalog has never heard of v2.
    let err = nearby_schemas::decode::<LocationEvent>(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::UnknownFingerprint { fingerprint } if fingerprint == LocationEventV2::schema().fingerprint()),
        "{err}"
    );
}

#[test]
fn a_v2_schema_found_only_in_the_registry_is_read() {
    let mut catalog = Catalog::with_published();
    catalog.register_id(40, LOCATION_V2).unwrap();
    let v2 = v2_position();
    let mut bytes = Vec::new();
    catalog.encode_for_registry(&v2, &mut bytes).unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 40]);
    let v1: LocationEvent = catalog.decode(&bytes).unwrap();
    assert_eq!(v1.user_id, 9);
    // And it is known by fingerprint from then on.
    let single_object = nearby_schemas::to_vec(&v2).unwrap();
    assert!(catalog.decode::<LocationEvent>(&single_object).is_ok());
}

#[test]
fn an_unknown_left_reason_falls_back_to_the_enum_default() {
    let blocked = DeliveryV2 {
        recipient_id: 3,
        payload: PayloadV2::FriendLeft(FriendLeftV2 {
            friend_id: 4,
            reason: LeftReasonV2::Blocked,
        }),
    };
    let bytes = nearby_schemas::to_vec(&blocked).unwrap();
    let v1: Delivery = catalog_with_v2().decode(&bytes).unwrap();
    assert_eq!(
        v1.payload,
        DeliveryPayload::FriendLeft(FriendLeft {
            friend_id: 4,
            reason: LeftReason::Inactive,
        })
    );
}

#[test]
fn an_unknown_friendship_kind_is_refused_not_guessed() {
    let blocked = FriendshipEventV2 {
        user_id: 1,
        other_id: Some(2),
        kind: FriendshipKindV2::Blocked,
        actor: true,
        at: common::T0,
    };
    let bytes = nearby_schemas::to_vec(&blocked).unwrap();
    let err = catalog_with_v2()
        .decode::<FriendshipEvent>(&bytes)
        .unwrap_err();
    assert!(matches!(err, Error::Incompatible { .. }), "{err}");
    // A kind v1 knows still reads.
    let accepted = FriendshipEventV2 {
        kind: FriendshipKindV2::Accepted,
        ..blocked
    };
    let bytes = nearby_schemas::to_vec(&accepted).unwrap();
    let v1: FriendshipEvent = catalog_with_v2().decode(&bytes).unwrap();
    assert_eq!(v1.kind, nearby_schemas::FriendshipKind::Accepted);
}

#[test]
fn every_v2_variant_reads_as_the_same_v1_variant() {
    let catalog = catalog_with_v2();
    let bodies = [
        LocationBodyV2::Connected(Connected {
            session_id: "a".into(),
        }),
        LocationBodyV2::Disconnected(Disconnected {
            session_id: "a".into(),
        }),
    ];
    for body in bodies {
        let v2 = LocationEventV2 {
            body: body.clone(),
            ..v2_position()
        };
        let v1: LocationEvent = catalog
            .decode(&nearby_schemas::to_vec(&v2).unwrap())
            .unwrap();
        match (body, v1.body) {
            (LocationBodyV2::Connected(a), LocationBody::Connected(b)) => assert_eq!(a, b),
            (LocationBodyV2::Disconnected(a), LocationBody::Disconnected(b)) => assert_eq!(a, b),
            other => panic!("the variant changed: {other:?}"),
        }
    }
}

#[test]
fn mutated_records_of_another_version_never_panic() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    let catalog = catalog_with_v2();
    let mut samples: Vec<Vec<u8>> = common::location_events()
        .iter()
        .map(|e| nearby_schemas::to_vec(e).unwrap())
        .collect();
    samples.push(nearby_schemas::to_vec(&v2_position()).unwrap());
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..20_000 {
        let mut bytes = samples[rng.random_range(0..samples.len())].clone();
        let at = rng.random_range(10..bytes.len());
        match rng.random_range(0..3) {
            0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 => bytes[at] = rng.random(),
            _ => bytes.truncate(at),
        }
        // Each sample is read with the other version's type, so resolution runs.
        let _ = catalog.decode::<LocationEvent>(&bytes);
        let _ = catalog.decode::<LocationEventV2>(&bytes);
    }
}
