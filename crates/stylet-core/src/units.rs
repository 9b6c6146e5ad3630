//! Units. Lengths inside Stylet are millimetres; angles are radians inside, degrees in config and
//! user-facing text where the field name says so (`angle_deg`). Conversions happen once, at load.

/// Millimetres per metre (URDF lengths are metres; they are converted once at load).
pub const MM_PER_M: f64 = 1000.0;

/// Converts metres (URDF, SI) to the internal millimetres.
#[must_use]
pub fn mm_from_m(metres: f64) -> f64 {
    metres * MM_PER_M
}

/// Converts degrees (config, user text) to radians (internal).
#[must_use]
pub fn rad_from_deg(deg: f64) -> f64 {
    deg.to_radians()
}

/// Converts radians (internal) to degrees (config, user text).
#[must_use]
pub fn deg_from_rad(rad: f64) -> f64 {
    rad.to_degrees()
}
