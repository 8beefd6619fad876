//! A position as fanout stores it: a point of the unit sphere in fixed point (three `i32`).
//!
//! Why not `f32` latitude/longitude (8 bytes): an `f32` degree has a step of up to 0.85 m at
//! longitude ±180°, and the haversine on it still costs five trigonometric calls per friend.
//! Why not `f64` (16 bytes): exact, but as slow, and 8 bytes more per user. A unit vector scaled
//! to `i32::MAX` (12 bytes) has a step of 3 mm anywhere on Earth, poles and antimeridian
//! included, and the range test is then a chord length: three subtractions, three
//! multiplications, one comparison, no trigonometry. The great-circle distance that a delivery
//! carries is `2R·asin(chord/2)`, the same sphere and the same value as
//! [`nearby_common::geo::haversine_m`] (the haversine `a` is `(chord/2)²`), within the few
//! millimetres of the quantization.

use nearby_common::geo::EARTH_RADIUS_M;

/// One unit of a coordinate: the unit sphere is scaled to `i32::MAX`.
const SCALE: f64 = i32::MAX as f64;

/// A WGS84 position as a fixed-point unit vector (x towards 0°N 0°E, z towards the north pole).
///
/// Copy it around freely: it is 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    x: i32,
    y: i32,
    z: i32,
}

impl Point {
    /// No position: a value no real point quantizes to (|coordinate| <= `i32::MAX`).
    pub(crate) const NOWHERE: Point = Point {
        x: i32::MIN,
        y: 0,
        z: 0,
    };

    /// The point of a latitude and longitude in degrees (callers check validity first:
    /// [`nearby_common::geo::is_valid_position`]).
    pub fn from_degrees(lat: f64, lon: f64) -> Point {
        let (sin_lat, cos_lat) = lat.to_radians().sin_cos();
        let (sin_lon, cos_lon) = lon.to_radians().sin_cos();
        Point {
            x: quantize(cos_lat * cos_lon),
            y: quantize(cos_lat * sin_lon),
            z: quantize(sin_lat),
        }
    }

    /// Latitude and longitude in degrees, within 3 mm of what was stored.
    pub fn to_degrees(self) -> (f64, f64) {
        let (x, y, z) = (f64::from(self.x), f64::from(self.y), f64::from(self.z));
        // atan2 rather than asin(z): asin loses precision near the poles, atan2 does not.
        let lat = z.atan2(x.hypot(y)).to_degrees();
        let lon = y.atan2(x).to_degrees();
        (lat, lon)
    }

    /// The squared chord between two points, in fixed-point units squared: compare it with a
    /// [`Radius`] rather than computing a distance.
    #[inline]
    pub fn chord_sq(self, other: Point) -> f64 {
        // i64 differences cannot overflow; their f64 conversion is exact (|d| < 2^33).
        let dx = (i64::from(self.x) - i64::from(other.x)) as f64;
        let dy = (i64::from(self.y) - i64::from(other.y)) as f64;
        let dz = (i64::from(self.z) - i64::from(other.z)) as f64;
        dx * dx + dy * dy + dz * dz
    }

    /// Great-circle distance in metres (the haversine distance of the stored points).
    #[inline]
    pub fn distance_m(self, other: Point) -> f64 {
        chord_sq_to_m(self.chord_sq(other))
    }
}

/// A radius as a squared chord, so "within the radius" needs no trigonometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Radius {
    metres: f64,
    chord_sq: f64,
}

impl Radius {
    /// A great-circle radius in metres (at most half the Earth's circumference).
    pub fn from_m(metres: f64) -> Radius {
        let half_angle = (metres / EARTH_RADIUS_M / 2.0).min(std::f64::consts::FRAC_PI_2);
        let chord = 2.0 * half_angle.sin() * SCALE;
        Radius {
            metres,
            chord_sq: chord * chord,
        }
    }

    /// The radius in metres.
    pub fn metres(self) -> f64 {
        self.metres
    }

    /// Whether two points are at most this radius apart.
    #[inline]
    pub fn contains(self, a: Point, b: Point) -> bool {
        a.chord_sq(b) <= self.chord_sq
    }
}

/// The great-circle distance of a squared chord in fixed-point units.
#[inline]
fn chord_sq_to_m(chord_sq: f64) -> f64 {
    let half_chord = chord_sq.sqrt() / SCALE / 2.0;
    // min() guards asin against rounding a hair above 1 for antipodal points.
    2.0 * EARTH_RADIUS_M * half_chord.min(1.0).asin()
}

fn quantize(unit: f64) -> i32 {
    // |unit| <= 1, so the product is within i32's range; `as` saturates anyway.
    (unit * SCALE).round() as i32
}

/// A distance as deliveries carry it: metres, two decimals (the client contract).
pub(crate) fn round_cm(metres: f64) -> f64 {
    (metres * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use nearby_common::geo::{NEARBY_RADIUS_M, haversine_m};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn distances_match_haversine() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100_000 {
            let lat1: f64 = rng.random_range(-90.0..=90.0);
            let lon1 = rng.random_range(-180.0..=180.0);
            // Mostly short distances (what fanout measures), some across the globe.
            let spread = if rng.random_bool(0.9) { 0.2 } else { 180.0 };
            let lat2: f64 = (lat1 + rng.random_range(-spread..=spread)).clamp(-90.0, 90.0);
            let mut lon2 = lon1 + rng.random_range(-spread..=spread);
            if lon2 > 180.0 {
                lon2 -= 360.0;
            } else if lon2 < -180.0 {
                lon2 += 360.0;
            }
            let exact = haversine_m(lat1, lon1, lat2, lon2);
            let ours = Point::from_degrees(lat1, lon1).distance_m(Point::from_degrees(lat2, lon2));
            // Quantization costs millimetres: 0.3 % from 3 m up, 1 cm below.
            let allowed = (exact * 0.003).max(0.01);
            assert!(
                (ours - exact).abs() <= allowed,
                "{lat1},{lon1} -> {lat2},{lon2}: {ours} vs {exact}"
            );
            // Far below the budget, in fact: under a centimetre at the distances fanout sends.
            if exact < 50_000.0 {
                assert!((ours - exact).abs() < 0.01, "{ours} vs {exact}");
            }
        }
    }

    #[test]
    fn radius_agrees_with_haversine_at_the_edge() {
        let radius = Radius::from_m(NEARBY_RADIUS_M);
        let here = (37.7749, -122.4194);
        let a = Point::from_degrees(here.0, here.1);
        // Walk north across the edge in 1 cm steps around 8,046.72 m.
        let metres_per_degree = haversine_m(0.0, 0.0, 1.0, 0.0);
        for step in -100..=100 {
            let d = NEARBY_RADIUS_M + f64::from(step) * 0.01;
            let lat = here.0 + d / metres_per_degree;
            let exact = haversine_m(here.0, here.1, lat, here.1);
            let inside = radius.contains(a, Point::from_degrees(lat, here.1));
            if (exact - NEARBY_RADIUS_M).abs() > 0.01 {
                assert_eq!(inside, exact <= NEARBY_RADIUS_M, "{exact}");
            }
        }
    }

    #[test]
    fn round_trips_degrees_within_millimetres() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..10_000 {
            let lat = rng.random_range(-90.0..=90.0);
            let lon = rng.random_range(-180.0..=180.0);
            let (lat2, lon2) = Point::from_degrees(lat, lon).to_degrees();
            assert!(haversine_m(lat, lon, lat2, lon2) < 0.005, "{lat},{lon}");
        }
        // The poles and the antimeridian have no special case.
        assert!(Point::from_degrees(90.0, 0.0).distance_m(Point::from_degrees(90.0, 123.0)) < 0.01);
        let across = Point::from_degrees(0.0, 179.99).distance_m(Point::from_degrees(0.0, -179.99));
        assert!((across - haversine_m(0.0, 179.99, 0.0, -179.99)).abs() < 0.01);
    }

    #[test]
    fn distances_round_to_centimetres() {
        assert_eq!(round_cm(812.456), 812.46);
        assert_eq!(round_cm(0.004), 0.0);
    }

    proptest::proptest! {
        /// Distances are symmetric, zero from a point to itself, and the radius filter says
        /// "inside" exactly when the haversine distance is within the radius (away from the edge
        /// by more than the quantization's millimetres).
        #[test]
        fn the_radius_filter_is_the_haversine_one(
            lat1 in -90.0..=90.0f64,
            lon1 in -180.0..=180.0f64,
            dlat in -0.2..=0.2f64,
            dlon in -0.2..=0.2f64,
            radius_m in 1.0..=50_000.0f64,
        ) {
            let lat2 = (lat1 + dlat).clamp(-90.0, 90.0);
            let lon2 = (lon1 + dlon + 540.0).rem_euclid(360.0) - 180.0;
            let (a, b) = (Point::from_degrees(lat1, lon1), Point::from_degrees(lat2, lon2));
            proptest::prop_assert_eq!(a.distance_m(b), b.distance_m(a));
            proptest::prop_assert!(a.distance_m(a) < 0.01);
            let exact = haversine_m(lat1, lon1, lat2, lon2);
            proptest::prop_assert!((haversine_m(lat2, lon2, lat1, lon1) - exact).abs() < 1e-6);
            if (exact - radius_m).abs() > 0.05 {
                proptest::prop_assert_eq!(
                    Radius::from_m(radius_m).contains(a, b),
                    exact <= radius_m,
                    "{} m against a radius of {} m", exact, radius_m
                );
            }
        }
    }
}
