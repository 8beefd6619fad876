//! Events and look-ups shared by fanout's tests.

#![allow(dead_code)] // each test file uses its own share of these

use nearby_common::geo::EARTH_RADIUS_M;
use nearby_fanout::{Effects, RoutedDelivery};
use nearby_schemas::{
    Connected, DeliveryPayload, Disconnected, FriendLeft, FriendLocation, LocationBody,
    LocationEvent, PositionReport,
};

/// A start time: 2025-11-25T08:00:00Z.
pub const T0: i64 = 1_764_057_600_000;

/// Central Paris.
pub const PARIS: (f64, f64) = (48.8566, 2.3522);

/// The point `metres` north of `from` along its meridian.
pub fn north_of(from: (f64, f64), metres: f64) -> (f64, f64) {
    let metres_per_degree = 2.0 * std::f64::consts::PI * EARTH_RADIUS_M / 360.0;
    (from.0 + metres / metres_per_degree, from.1)
}

/// A position report over no socket (as a background upload sends it).
pub fn position(user: i64, ts: i64, at: (f64, f64)) -> LocationEvent {
    LocationEvent {
        user_id: user,
        gateway_id: None,
        ts,
        received_at: ts,
        body: LocationBody::Position(PositionReport {
            lat: at.0,
            lon: at.1,
            accuracy_m: None,
        }),
    }
}

/// `user`'s socket opened on `gateway` as `session`.
pub fn connected(user: i64, ts: i64, gateway: &str, session: &str) -> LocationEvent {
    LocationEvent {
        user_id: user,
        gateway_id: Some(gateway.into()),
        ts,
        received_at: ts,
        body: LocationBody::Connected(Connected {
            session_id: session.into(),
        }),
    }
}

/// `user`'s socket `session` on `gateway` closed.
pub fn disconnected(user: i64, ts: i64, gateway: &str, session: &str) -> LocationEvent {
    LocationEvent {
        user_id: user,
        gateway_id: Some(gateway.into()),
        ts,
        received_at: ts,
        body: LocationBody::Disconnected(Disconnected {
            session_id: session.into(),
        }),
    }
}

/// The deliveries `recipient` gets, with their gateway.
pub fn to(out: &Effects, recipient: i64) -> Vec<&RoutedDelivery> {
    out.deliveries
        .iter()
        .filter(|d| d.delivery.recipient_id == recipient)
        .collect()
}

/// The friend entries `recipient` gets.
pub fn locations_to(out: &Effects, recipient: i64) -> Vec<FriendLocation> {
    to(out, recipient)
        .into_iter()
        .filter_map(|d| match d.delivery.payload {
            DeliveryPayload::FriendLocation(location) => Some(location),
            DeliveryPayload::FriendLeft(_) => None,
        })
        .collect()
}

/// The `friend_left` messages `recipient` gets.
pub fn lefts_to(out: &Effects, recipient: i64) -> Vec<FriendLeft> {
    to(out, recipient)
        .into_iter()
        .filter_map(|d| match d.delivery.payload {
            DeliveryPayload::FriendLeft(left) => Some(left),
            DeliveryPayload::FriendLocation(_) => None,
        })
        .collect()
}

/// Whether `got` is within 0.3 % (or a centimetre, for tiny distances) of `exact`.
pub fn close(got: f64, exact: f64) -> bool {
    (got - exact).abs() <= (exact * 0.003).max(0.01)
}
