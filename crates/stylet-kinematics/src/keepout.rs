//! Keep-out volumes in the robot base frame (mm) and the arm's clearance to them.
//!
//! The arm is modelled as capsules: the segments between successive joint origins and the tip,
//! each with the same radius, sampled every [`SAMPLE_MM`]. Signed distances are positive outside a
//! volume.

use nalgebra::{Vector2, Vector3};
use stylet_core::frame::{Point, Robot, Vector};

/// Spacing of the points sampled along each arm segment, mm.
pub const SAMPLE_MM: f64 = 10.0;

/// A volume the arm must stay out of.
#[derive(Clone, Debug, PartialEq)]
pub enum KeepOut {
    /// A cylinder or a ring (the CT gantry: `inner_radius_mm` is the bore).
    Cylinder {
        /// Name for messages.
        name: String,
        /// Centre of the cylinder's axis segment.
        center: Point<Robot>,
        /// Axis direction (unit).
        axis: Vector<Robot>,
        /// Inner radius (0: solid).
        inner_radius_mm: f64,
        /// Outer radius.
        outer_radius_mm: f64,
        /// Half the length along the axis.
        half_length_mm: f64,
    },
    /// An axis-aligned box (the table).
    Box {
        /// Name for messages.
        name: String,
        /// Lower corner.
        min: Point<Robot>,
        /// Upper corner.
        max: Point<Robot>,
    },
    /// Everything below a height field (the patient's skin), over its grid.
    HeightField {
        /// Name for messages.
        name: String,
        /// Corner of the grid (x, y), mm.
        origin_xy: Vector2<f64>,
        /// Grid spacing, mm.
        spacing_mm: f64,
        /// Samples along x.
        nx: usize,
        /// Heights (z, mm), row-major in y then x (`heights[iy * nx + ix]`).
        heights: Vec<f64>,
    },
}

fn box_sdf(q: Vector2<f64>) -> f64 {
    let outside = Vector2::new(q.x.max(0.0), q.y.max(0.0)).norm();
    outside + q.x.max(q.y).min(0.0)
}

impl KeepOut {
    /// The volume's name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            KeepOut::Cylinder { name, .. } | KeepOut::Box { name, .. } | KeepOut::HeightField { name, .. } => name,
        }
    }

    /// Signed distance from `p` to the volume (negative inside), mm.
    #[must_use]
    pub fn signed_distance(&self, p: Point<Robot>) -> f64 {
        self.distance_at(&p.to_nalgebra().coords)
    }

    /// [`KeepOut::signed_distance`] on the coordinates of a base-frame point.
    fn distance_at(&self, p: &Vector3<f64>) -> f64 {
        match self {
            KeepOut::Cylinder { center, axis, inner_radius_mm, outer_radius_mm, half_length_mm, .. } => {
                let (center, axis) = (center.to_nalgebra().coords, axis.to_nalgebra());
                let d = p - center;
                let t = d.dot(&axis);
                let r = (d - axis * t).norm();
                let rc = 0.5 * (inner_radius_mm + outer_radius_mm);
                let hr = 0.5 * (outer_radius_mm - inner_radius_mm);
                box_sdf(Vector2::new((r - rc).abs() - hr, t.abs() - half_length_mm))
            }
            KeepOut::Box { min, max, .. } => {
                let (min, max) = (min.to_nalgebra().coords, max.to_nalgebra().coords);
                let c = (min + max) * 0.5;
                let h = (max - min) * 0.5;
                let q = (p - c).abs() - h;
                let outside = Vector3::new(q.x.max(0.0), q.y.max(0.0), q.z.max(0.0)).norm();
                outside + q.x.max(q.y).max(q.z).min(0.0)
            }
            KeepOut::HeightField { origin_xy, spacing_mm, nx, heights, .. } => {
                let ny = heights.len().checked_div(*nx).unwrap_or(0);
                let fx = (p.x - origin_xy.x) / spacing_mm;
                let fy = (p.y - origin_xy.y) / spacing_mm;
                if *nx < 2 || ny < 2 || !(fx >= 0.0 && fy >= 0.0) || fx > (*nx - 1) as f64 || fy > (ny - 1) as f64 {
                    return f64::INFINITY;
                }
                let (ix, iy) = ((fx as usize).min(nx - 2), (fy as usize).min(ny - 2));
                let (tx, ty) = (fx - ix as f64, fy - iy as f64);
                let h = |x: usize, y: usize| heights[y * nx + x];
                let z = (1.0 - ty) * ((1.0 - tx) * h(ix, iy) + tx * h(ix + 1, iy))
                    + ty * ((1.0 - tx) * h(ix, iy + 1) + tx * h(ix + 1, iy + 1));
                // Vertical distance: exact for a flat surface, conservative enough for skin.
                p.z - z
            }
        }
    }
}

/// The set of volumes and the arm's radius.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct KeepOuts {
    /// The volumes.
    pub volumes: Vec<KeepOut>,
    /// Radius of every arm segment, mm.
    pub link_radius_mm: f64,
}

impl KeepOuts {
    /// Smallest clearance of the arm (polyline through `points`, base frame) to any volume, and
    /// that volume's name; `(INFINITY, "")` without volumes.
    #[must_use]
    pub fn clearance(&self, points: &[Point<Robot>]) -> (f64, String) {
        let coords: Vec<Vector3<f64>> = points.iter().map(|p| p.to_nalgebra().coords).collect();
        self.clearance_coords(&coords)
    }

    /// [`KeepOuts::clearance`] on the coordinates of base-frame points (the IK's scratch buffer).
    pub(crate) fn clearance_coords(&self, points: &[Vector3<f64>]) -> (f64, String) {
        let mut best = (f64::INFINITY, String::new());
        for v in &self.volumes {
            for w in points.windows(2) {
                let (a, b) = (w[0], w[1]);
                let n = ((b - a).norm() / SAMPLE_MM).ceil().max(1.0) as usize;
                for k in 0..=n {
                    let p = a + (b - a) * (k as f64 / n as f64);
                    let d = v.distance_at(&p) - self.link_radius_mm;
                    if d < best.0 {
                        best = (d, v.name().to_string());
                    }
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_signed_distance() {
        let ring = KeepOut::Cylinder {
            name: "gantry".into(),
            center: Point::origin(),
            axis: Vector::new(0.0, 1.0, 0.0),
            inner_radius_mm: 350.0,
            outer_radius_mm: 900.0,
            half_length_mm: 300.0,
        };
        assert!((ring.signed_distance(Point::origin()) - 350.0).abs() < 1e-9, "bore centre is outside the ring");
        assert!(ring.signed_distance(Point::new(600.0, 0.0, 0.0)) < 0.0);
        assert!((ring.signed_distance(Point::new(600.0, 400.0, 0.0)) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn box_and_height_field() {
        let table = KeepOut::Box {
            name: "table".into(),
            min: Point::new(-100.0, -100.0, -50.0),
            max: Point::new(100.0, 100.0, 0.0),
        };
        assert!((table.signed_distance(Point::new(0.0, 0.0, 10.0)) - 10.0).abs() < 1e-9);
        assert!(table.signed_distance(Point::new(0.0, 0.0, -10.0)) < 0.0);
        let skin = KeepOut::HeightField {
            name: "skin".into(),
            origin_xy: Vector2::new(0.0, 0.0),
            spacing_mm: 10.0,
            nx: 3,
            heights: vec![100.0; 9],
        };
        assert!((skin.signed_distance(Point::new(5.0, 5.0, 130.0)) - 30.0).abs() < 1e-9);
        assert!(skin.signed_distance(Point::new(5.0, 5.0, 90.0)) < 0.0);
        assert!(skin.signed_distance(Point::new(50.0, 5.0, 0.0)).is_infinite(), "off the grid");
    }
}
