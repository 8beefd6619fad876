//! Great-circle distance and the product's radius.

/// Mean Earth radius in metres (IUGG R1), the radius the haversine distance uses.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// The default "nearby" radius: 5 miles.
pub const NEARBY_RADIUS_M: f64 = 8_046.72;

/// Great-circle distance in metres between two WGS84 points given in degrees (haversine).
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = (lat2 - lat1).to_radians();
    let dlambda = (lon2 - lon1).to_radians();
    let a = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    // min() guards asin against rounding a hair above 1 for antipodal points.
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// Whether a latitude/longitude pair is a valid WGS84 position (finite, in range).
pub fn is_valid_position(lat: f64, lon: f64) -> bool {
    lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        // One degree of latitude along a meridian: 2πR/360.
        let one_degree = 2.0 * std::f64::consts::PI * EARTH_RADIUS_M / 360.0;
        assert!((haversine_m(0.0, 0.0, 1.0, 0.0) - one_degree).abs() < 1e-6);
        // The same point, and symmetry.
        assert_eq!(haversine_m(37.77, -122.42, 37.77, -122.42), 0.0);
        let ab = haversine_m(37.7749, -122.4194, 34.0522, -118.2437);
        let ba = haversine_m(34.0522, -118.2437, 37.7749, -122.4194);
        assert!((ab - ba).abs() < 1e-6);
        // San Francisco to Los Angeles is about 559 km.
        assert!((ab - 559_000.0).abs() < 2_000.0, "{ab}");
        // Antipodes: half the circumference, no NaN.
        let half = std::f64::consts::PI * EARTH_RADIUS_M;
        assert!((haversine_m(0.0, 0.0, 0.0, 180.0) - half).abs() < 1e-3);
        // Across the antimeridian the short way round.
        assert!(haversine_m(0.0, 179.99, 0.0, -179.99) < 2_300.0);
    }

    #[test]
    fn position_validity() {
        assert!(is_valid_position(90.0, 180.0));
        assert!(is_valid_position(-90.0, -180.0));
        for (lat, lon) in [
            (91.0, 0.0),
            (0.0, 180.5),
            (f64::NAN, 0.0),
            (0.0, f64::INFINITY),
        ] {
            assert!(!is_valid_position(lat, lon), "{lat},{lon}");
        }
    }
}
