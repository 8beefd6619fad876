//! Sample records shared by the integration tests: every record type and every union variant.

#![allow(dead_code)]

use nearby_schemas::{
    Connected, Delivery, DeliveryPayload, Disconnected, FriendLeft, FriendLocation,
    FriendshipEvent, FriendshipKind, LeftReason, LocationBody, LocationEvent, PositionReport,
};

pub const T0: i64 = 1_764_057_600_000;

pub fn position(accuracy_m: Option<f64>, gateway_id: Option<&str>) -> LocationEvent {
    LocationEvent {
        user_id: 42,
        gateway_id: gateway_id.map(str::to_owned),
        ts: T0,
        received_at: T0 + 37,
        body: LocationBody::Position(PositionReport {
            lat: 37.774_929,
            lon: -122.419_416,
            accuracy_m,
        }),
    }
}

pub fn location_events() -> Vec<LocationEvent> {
    vec![
        position(Some(12.5), Some("gw-1")),
        position(None, Some("gw-1")),
        position(None, None),
        LocationEvent {
            user_id: i64::MAX,
            gateway_id: Some("gateway-ü-7".into()),
            ts: T0,
            received_at: T0,
            body: LocationBody::Connected(Connected {
                session_id: "5f0c6a1e-9f0e-4c1b-a7d3-3b9e2f1d0c11".into(),
            }),
        },
        LocationEvent {
            user_id: 0,
            gateway_id: Some(String::new()),
            ts: -1,
            received_at: 0,
            body: LocationBody::Disconnected(Disconnected {
                session_id: "s".into(),
            }),
        },
    ]
}

pub fn deliveries() -> Vec<Delivery> {
    let mut all = vec![Delivery {
        recipient_id: 7,
        payload: DeliveryPayload::FriendLocation(FriendLocation {
            friend_id: 42,
            lat: -33.868_82,
            lon: 151.209_29,
            distance_m: 812.5,
            updated_at: T0,
        }),
    }];
    for reason in [
        LeftReason::OutOfRange,
        LeftReason::Inactive,
        LeftReason::SharingOff,
        LeftReason::Unfriended,
    ] {
        all.push(Delivery {
            recipient_id: 7,
            payload: DeliveryPayload::FriendLeft(FriendLeft {
                friend_id: 42,
                reason,
            }),
        });
    }
    all
}

pub fn friendship_events() -> Vec<FriendshipEvent> {
    [
        (FriendshipKind::Requested, Some(2)),
        (FriendshipKind::Accepted, Some(3)),
        (FriendshipKind::Removed, Some(i64::MAX)),
        (FriendshipKind::SharingOn, None),
        (FriendshipKind::SharingOff, None),
        (FriendshipKind::ProfileUpdated, None),
    ]
    .into_iter()
    .map(|(kind, other_id)| FriendshipEvent {
        user_id: 1,
        other_id,
        kind,
        actor: other_id.is_none_or(|o| o % 2 == 0),
        at: T0,
    })
    .collect()
}

/// Every sample, encoded.
pub fn encoded_samples() -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for e in location_events() {
        all.push(nearby_schemas::to_vec(&e).unwrap());
    }
    for d in deliveries() {
        all.push(nearby_schemas::to_vec(&d).unwrap());
    }
    for f in friendship_events() {
        all.push(nearby_schemas::to_vec(&f).unwrap());
    }
    all
}
