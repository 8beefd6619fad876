//! Location events built by hand, as the gateway would write them, for tests that feed a stage
//! its topic directly (fanout's core, the sink, the admin's replays): a position, a socket
//! opened or closed; and the points they are placed at.

use nearby_common::geo::EARTH_RADIUS_M;
use nearby_schemas::{Connected, Disconnected, LocationBody, LocationEvent, PositionReport};

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

/// A position report of `user` at `ts` over a socket of gateway `gw-a`, received 40 ms later,
/// with an accuracy: every field of the record set.
pub fn gateway_position(user: i64, ts: i64, lat: f64, lon: f64) -> LocationEvent {
    LocationEvent {
        user_id: user,
        gateway_id: Some("gw-a".into()),
        ts,
        received_at: ts + 40,
        body: LocationBody::Position(PositionReport {
            lat,
            lon,
            accuracy_m: Some(12.5),
        }),
    }
}

/// `user`'s socket opened on `gateway` as `session`.
pub fn connected(user: i64, ts: i64, gateway: &str, session: &str) -> LocationEvent {
    let session_id = session.into();
    let body = LocationBody::Connected(Connected { session_id });
    on_socket(user, ts, gateway, body)
}

/// `user`'s socket `session` on `gateway` closed.
pub fn disconnected(user: i64, ts: i64, gateway: &str, session: &str) -> LocationEvent {
    let session_id = session.into();
    let body = LocationBody::Disconnected(Disconnected { session_id });
    on_socket(user, ts, gateway, body)
}

/// An event of `user`'s socket on `gateway` at `ts`, received at once.
fn on_socket(user: i64, ts: i64, gateway: &str, body: LocationBody) -> LocationEvent {
    LocationEvent {
        user_id: user,
        gateway_id: Some(gateway.into()),
        ts,
        received_at: ts,
        body,
    }
}
