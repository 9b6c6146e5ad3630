//! The heat sink (OAR-3, issue 18): blood flowing through a vessel of about 3 mm or more carries
//! the heat away, so the ablation zone stops short of the vessel instead of reaching the device
//! chart's ellipsoid. Ex vivo and in vivo studies measure the zone's radius toward a vessel
//! shrinking with the vessel's size and flow and with its closeness to the antenna (e.g. to about
//! 40 % at 10 mm from a 5 mm vessel at high flow: PLoS One 2015; Neizert et al., Sci Rep 2022).
//!
//! The model (`config/devices.toml` `[heat_sink]`): the zone is star-shaped about its centre; its
//! radius along a direction `u` is the chart ellipsoid's, `r0(u)`, times the smallest factor any
//! heat-sink vessel point gives that direction. A vessel point `v` of local radius `R` whose
//! wall lies `w = |v - c| - R` from the zone centre `c` (within `reach_mm`) shrinks the directions
//! toward it by `f(w) = clamp(1 - (1 - anchor_fraction) s (reach - w) / (reach - anchor), floor,
//! 1)`, `s = min(1, 2R / reference_diameter)`, fully within the vessel's own angular extent and
//! fading over `blend_mm` beyond it; and no direction that runs into the vessel reaches further
//! than `spared_rim_mm` short of its wall (vessels stay patent). Vessel points are the ridge of
//! the vessels' distance map (their centre lines) where the local diameter is at least
//! `min_vessel_diameter_mm`.

use nalgebra::Vector3;
use serde::Deserialize;
use stylet_core::frame::{Ct, Point};
use stylet_imaging::Volume;

use crate::edt::edt;
use stylet_core::config::{read_toml, Checker, ConfigError};

/// The heat sink's parameters.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatSink {
    /// Vessels at least this wide are heat sinks (OAR-3's threshold), mm.
    pub min_vessel_diameter_mm: f64,
    /// A vessel wall farther than this from the zone centre does not shrink the zone, mm.
    pub reach_mm: f64,
    /// At this wall distance ...
    pub anchor_distance_mm: f64,
    /// ... a vessel of `reference_diameter_mm` shrinks the radius toward it to this fraction.
    pub anchor_fraction: f64,
    /// Vessels this wide or wider act in full; narrower ones in proportion, mm.
    pub reference_diameter_mm: f64,
    /// The radius toward a vessel never shrinks below this fraction of the chart's.
    pub floor_fraction: f64,
    /// The zone stays this far from a vessel's wall, mm.
    pub spared_rim_mm: f64,
    /// The shrink fades over this much beyond the vessel's own extent, mm (at its distance).
    pub blend_mm: f64,
}

impl Default for HeatSink {
    fn default() -> Self {
        HeatSink {
            min_vessel_diameter_mm: 3.0,
            reach_mm: 15.0,
            anchor_distance_mm: 10.0,
            anchor_fraction: 0.4,
            reference_diameter_mm: 5.0,
            floor_fraction: 0.2,
            spared_rim_mm: 1.0,
            blend_mm: 4.0,
        }
    }
}

/// Loads `[heat_sink]` from `devices.toml`.
///
/// # Errors
/// A [`ConfigError`] naming the file, the key and the value.
pub fn load_heat_sink(path: &std::path::Path) -> Result<HeatSink, ConfigError> {
    let raw: crate::config::RawDevicesFile = read_toml(path)?;
    let mut c = Checker::new();
    let Some(hs) = raw.heat_sink else {
        c.problem("heat_sink", "(none)", "missing: the heat sink's parameters (OAR-3, docs/planning.md)");
        return c.finish(path, HeatSink::default());
    };
    c.range("heat_sink.min_vessel_diameter_mm", hs.min_vessel_diameter_mm, 0.5, 20.0);
    c.range("heat_sink.reference_diameter_mm", hs.reference_diameter_mm, hs.min_vessel_diameter_mm, 30.0);
    c.range("heat_sink.reach_mm", hs.reach_mm, 1.0, 50.0);
    c.range("heat_sink.anchor_distance_mm", hs.anchor_distance_mm, 0.0, hs.reach_mm - 0.1);
    c.range("heat_sink.anchor_fraction", hs.anchor_fraction, 0.0, 1.0);
    c.range("heat_sink.floor_fraction", hs.floor_fraction, 0.0, hs.anchor_fraction);
    c.range("heat_sink.spared_rim_mm", hs.spared_rim_mm, 0.0, 10.0);
    c.range("heat_sink.blend_mm", hs.blend_mm, 0.0, 20.0);
    c.finish(path, hs)
}

/// A point on a heat-sink vessel's centre line and the vessel's radius there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SinkPoint {
    /// Where (CT, LPS mm).
    pub centre: Point<Ct>,
    /// The vessel's local radius, mm.
    pub radius_mm: f64,
}

/// The heat-sink vessel points of `vessel` (a mask on `grid`'s voxels) within `within_mm` of
/// `around`: the ridge of the vessels' distance map where the local diameter is at least
/// `hs.min_vessel_diameter_mm`.
#[must_use]
pub fn sink_points(grid: &Volume, vessel: &[bool], around: Point<Ct>, within_mm: f64, hs: &HeatSink) -> Vec<SinkPoint> {
    let [nx, ny, nz] = grid.dims;
    if vessel.len() != nx * ny * nz || vessel.is_empty() {
        return Vec::new();
    }
    let Some(c) = grid.index_from_ct(around) else { return Vec::new() };
    // The box, with a margin for the distance map of a vessel cut by its edge.
    let mut lo = [0usize; 3];
    let mut n = [0usize; 3];
    for d in 0..3 {
        let half = (within_mm / grid.spacing_mm[d]).ceil() + 3.0;
        let a = (c[d] - half).floor().max(0.0) as usize;
        let b = ((c[d] + half).ceil().max(0.0) as usize).min(grid.dims[d] - 1);
        if b < a {
            return Vec::new();
        }
        (lo[d], n[d]) = (a, b - a + 1);
    }
    let at = |i: usize, j: usize, k: usize| ((lo[2] + k) * ny + lo[1] + j) * nx + lo[0] + i;
    let mut outside = Vec::with_capacity(n[0] * n[1] * n[2]);
    for k in 0..n[2] {
        for j in 0..n[1] {
            for i in 0..n[0] {
                outside.push(!vessel[at(i, j, k)]);
            }
        }
    }
    if outside.iter().all(|o| *o) {
        return Vec::new();
    }
    let depth = edt(&outside, n, grid.spacing_mm);
    let local = |i: usize, j: usize, k: usize| (k * n[1] + j) * n[0] + i;
    // The nearest voxel centre outside a round vessel lies about a quarter voxel beyond its wall.
    let quarter_voxel = 0.25 * grid.spacing_mm.iter().copied().fold(f64::INFINITY, f64::min);
    let r_min = hs.min_vessel_diameter_mm / 2.0;
    let mut points = Vec::new();
    for k in 1..n[2].saturating_sub(1) {
        for j in 1..n[1].saturating_sub(1) {
            for i in 1..n[0].saturating_sub(1) {
                let d = f64::from(depth[local(i, j, k)]);
                let radius = d - quarter_voxel;
                if !d.is_finite() || d <= 0.0 || radius < r_min {
                    continue;
                }
                let ridge = (0..27).all(|m| {
                    let (di, dj, dk) = (m % 3, (m / 3) % 3, m / 9);
                    f64::from(depth[local(i + di - 1, j + dj - 1, k + dk - 1)]) <= d
                });
                let p = grid.ct_from_index((lo[0] + i) as f64, (lo[1] + j) as f64, (lo[2] + k) as f64);
                if ridge && p.distance_mm(around) <= within_mm {
                    points.push(SinkPoint { centre: p, radius_mm: radius.max(r_min) });
                }
            }
        }
    }
    points
}

/// Directions of the table: polar angle (from +z) in `THETA` steps, azimuth in `PHI` steps.
const THETA: usize = 60;
const PHI: usize = 120;

/// An ablation zone: the device's ellipsoid, deformed by heat sinks where a vessel is near.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneShape {
    /// Centre (CT, LPS mm).
    pub centre: Point<Ct>,
    /// Unit axis (along the antenna).
    pub axis: Vector3<f64>,
    /// Semi-axes along and across the antenna, mm.
    pub semi_axes_mm: (f64, f64),
    /// The chart radius's factor along each table direction (`None`: 1 everywhere).
    radius: Option<Vec<f32>>,
}

fn direction(t: usize, f: usize) -> Vector3<f64> {
    let theta = std::f64::consts::PI * (t as f64 + 0.5) / THETA as f64;
    let phi = std::f64::consts::TAU * f as f64 / PHI as f64;
    Vector3::new(theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos())
}

fn bin(u: &Vector3<f64>) -> usize {
    let theta = u.z.clamp(-1.0, 1.0).acos();
    let t = ((theta / std::f64::consts::PI * THETA as f64) as usize).min(THETA - 1);
    let phi = u.y.atan2(u.x).rem_euclid(std::f64::consts::TAU);
    let f = ((phi / std::f64::consts::TAU * PHI as f64).round() as usize) % PHI;
    t * PHI + f
}

impl ZoneShape {
    /// The device's ellipsoid: `long_mm` along `axis`, `short_mm` across, centred at `centre`.
    #[must_use]
    pub fn ellipsoid(centre: Point<Ct>, axis: Vector3<f64>, long_mm: f64, short_mm: f64) -> Self {
        let axis = if axis.norm() > 0.0 { axis.normalize() } else { Vector3::z() };
        ZoneShape { centre, axis, semi_axes_mm: (long_mm / 2.0, short_mm / 2.0), radius: None }
    }

    /// The ellipsoid's radius along unit `u`, mm.
    #[must_use]
    pub fn chart_radius(&self, u: &Vector3<f64>) -> f64 {
        let (a, b) = self.semi_axes_mm;
        let c = u.dot(&self.axis);
        1.0 / ((c / a).powi(2) + (1.0 - c * c).max(0.0) / (b * b)).sqrt()
    }

    /// The zone with the heat sink of `sinks` (see the module's model).
    #[must_use]
    pub fn with_heat_sinks(mut self, sinks: &[SinkPoint], hs: &HeatSink) -> Self {
        let c = self.centre.to_nalgebra().coords;
        let near: Vec<(Vector3<f64>, f64, f64)> = sinks
            .iter()
            .filter_map(|s| {
                let w = s.centre.to_nalgebra().coords - c;
                let wall = w.norm() - s.radius_mm;
                (wall < hs.reach_mm && w.norm() > 1e-6).then_some((w, s.radius_mm, wall))
            })
            .collect();
        if near.is_empty() {
            return self;
        }
        let slope = (1.0 - hs.anchor_fraction) / (hs.reach_mm - hs.anchor_distance_mm);
        let mut table = Vec::with_capacity(THETA * PHI);
        for t in 0..THETA {
            for f in 0..PHI {
                let u = direction(t, f);
                let r0 = self.chart_radius(&u);
                let mut r = r0;
                for &(w, radius, wall) in &near {
                    let dist = w.norm();
                    let cos = (u.dot(&w) / dist).clamp(-1.0, 1.0);
                    let angle = cos.acos();
                    let own = (radius / dist).min(1.0).asin();
                    let fade = (hs.blend_mm / dist).atan();
                    let weight = if angle <= own {
                        1.0
                    } else if fade > 0.0 {
                        (1.0 - (angle - own) / fade).max(0.0)
                    } else {
                        0.0
                    };
                    if weight == 0.0 {
                        continue;
                    }
                    let strength = (2.0 * radius / hs.reference_diameter_mm).min(1.0);
                    let factor = (1.0 - slope * strength * (hs.reach_mm - wall)).clamp(hs.floor_fraction, 1.0);
                    r = r.min(r0 * (1.0 - (1.0 - factor) * weight));
                    // A ray into the vessel stops short of its wall.
                    let across = dist * angle.sin();
                    if angle <= own && cos > 0.0 && across <= radius {
                        let hit = dist * cos - (radius * radius - across * across).max(0.0).sqrt();
                        r = r.min((hit - hs.spared_rim_mm).max(0.0));
                    }
                }
                table.push((r / r0) as f32);
            }
        }
        self.radius = Some(table);
        self
    }

    /// The zone's radius along unit `u`, mm.
    #[must_use]
    pub fn radius(&self, u: &Vector3<f64>) -> f64 {
        match &self.radius {
            Some(t) => self.chart_radius(u) * f64::from(t[bin(u)]),
            None => self.chart_radius(u),
        }
    }

    /// Whether `p` is in the zone.
    #[must_use]
    pub fn contains(&self, p: Point<Ct>) -> bool {
        let d = p.to_nalgebra().coords - self.centre.to_nalgebra().coords;
        let n = d.norm();
        n < 1e-9 || n <= self.radius(&(d / n))
    }

    /// Whether any direction is shrunk by a heat sink.
    #[must_use]
    pub fn heat_sunk(&self) -> bool {
        self.radius.is_some()
    }

    /// The zone's voxels on `grid` (`i` fastest, then `j`, then `k`).
    #[must_use]
    pub fn mask(&self, grid: &Volume) -> Vec<bool> {
        let [nx, ny, nz] = grid.dims;
        let mut mask = vec![false; nx * ny * nz];
        self.mark(grid, &mut mask);
        mask
    }

    /// Sets the zone's voxels in `mask` (on `grid`; one of another length is left alone).
    pub fn mark(&self, grid: &Volume, mask: &mut [bool]) {
        let [nx, ny, nz] = grid.dims;
        if mask.len() != nx * ny * nz {
            return;
        }
        let reach = self.semi_axes_mm.0.max(self.semi_axes_mm.1);
        let c = self.centre.to_nalgebra().coords;
        let corners: Vec<Vector3<f64>> = (0..8)
            .filter_map(|m| {
                let s = |bit: usize| if m & bit == 0 { -reach } else { reach };
                grid.index_from_ct(Point::from_coords(c + Vector3::new(s(1), s(2), s(4))))
            })
            .collect();
        if corners.len() < 8 {
            return;
        }
        let range = |d: usize, n: usize| {
            let lo = corners.iter().map(|v| v[d]).fold(f64::INFINITY, f64::min).floor().max(0.0) as usize;
            let hi = corners.iter().map(|v| v[d]).fold(f64::NEG_INFINITY, f64::max).ceil();
            lo..(hi + 1.0).clamp(0.0, n as f64) as usize
        };
        for k in range(2, nz) {
            for j in range(1, ny) {
                for i in range(0, nx) {
                    if self.contains(grid.ct_from_index(i as f64, j as f64, k as f64)) {
                        mask[(k * ny + j) * nx + i] = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A grid of 0.5 mm voxels around the origin, and a vessel of `radius` along z through
    /// (`x`, 0) on it.
    fn vessel_along_z(x: f64, radius: f64) -> (Volume, Vec<bool>) {
        let n = 161;
        let grid = Volume {
            dims: [n, n, 121],
            spacing_mm: [0.5, 0.5, 0.5],
            origin: Point::new(-40.0, -40.0, -30.0),
            direction: nalgebra::Matrix3::identity(),
            voxels: vec![0.0; n * n * 121],
        };
        let mut mask = vec![false; grid.voxels.len()];
        for k in 0..121 {
            for j in 0..n {
                for i in 0..n {
                    let p = grid.ct_from_index(i as f64, j as f64, k as f64).to_array();
                    mask[(k * n + j) * n + i] = (p[0] - x).hypot(p[1]) <= radius;
                }
            }
        }
        (grid, mask)
    }

    fn zone_beside(x: f64, radius: f64) -> (ZoneShape, ZoneShape, Vec<SinkPoint>) {
        let (grid, mask) = vessel_along_z(x, radius);
        let hs = HeatSink::default();
        let sinks = sink_points(&grid, &mask, Point::new(0.0, 0.0, 0.0), 35.0, &hs);
        let chart = ZoneShape::ellipsoid(Point::new(0.0, 0.0, 0.0), Vector3::z(), 52.2, 33.3);
        (chart.clone(), chart.with_heat_sinks(&sinks, &hs), sinks)
    }

    #[test]
    fn a_5_mm_vessel_10_mm_from_the_antenna_shrinks_the_radius_toward_it_to_40_percent() {
        let (chart, zone, sinks) = zone_beside(12.5, 2.5);
        assert!(!sinks.is_empty());
        // The centre line found, with the vessel's radius.
        for s in &sinks {
            let p = s.centre.to_array();
            assert!((p[0] - 12.5).hypot(p[1]) < 0.8, "{s:?}");
            assert!((s.radius_mm - 2.5).abs() < 0.6, "{s:?}");
        }
        let toward = Vector3::x();
        let r0 = chart.radius(&toward);
        assert!((r0 - 16.65).abs() < 1e-9);
        let r = zone.radius(&toward);
        assert!((r / r0 - 0.4).abs() < 0.05, "{r} of {r0}: {sinks:?}");
        // Away from the vessel and along the antenna: the chart's.
        for u in [-Vector3::x(), Vector3::y(), Vector3::z()] {
            assert!((zone.radius(&u) - chart.radius(&u)).abs() < 0.3, "{u:?}");
        }
        assert!(zone.heat_sunk());
        assert!(zone.contains(Point::new(6.0, 0.0, 0.0)) && !zone.contains(Point::new(7.5, 0.0, 0.0)));
        assert!(zone.contains(Point::new(-16.0, 0.0, 0.0)));
    }

    #[test]
    fn a_vessel_beyond_the_reach_or_too_narrow_changes_nothing() {
        // Wall 20 mm from the centre: beyond the 15 mm reach.
        let (chart, zone, _) = zone_beside(22.5, 2.5);
        assert!(!zone.heat_sunk());
        assert_eq!(zone, chart);
        // A 2 mm vessel is no heat sink (OAR-3 counts 3 mm and more).
        let (_, zone, sinks) = zone_beside(8.0, 1.0);
        assert!(sinks.is_empty(), "{sinks:?}");
        assert!(!zone.heat_sunk());
    }

    #[test]
    fn the_zone_stops_short_of_a_close_vessel_and_a_narrower_one_shrinks_it_less() {
        // Wall 3 mm from the centre: the radius toward it is cut at the wall less the rim.
        let (_, close, _) = zone_beside(5.5, 2.5);
        let r = close.radius(&Vector3::x());
        assert!(r <= 3.0 - 1.0 + 0.3, "{r}");
        // A 3.5 mm vessel at 10 mm from the centre: shrinks less than a 5 mm one.
        let (_, narrow, _) = zone_beside(11.75, 1.75);
        let (_, wide, _) = zone_beside(12.5, 2.5);
        assert!(narrow.radius(&Vector3::x()) > wide.radius(&Vector3::x()) + 1.0);
    }

    #[test]
    fn the_mask_is_the_shape_on_a_grid() {
        let (grid, _) = vessel_along_z(12.5, 2.5);
        let (chart, zone, _) = zone_beside(12.5, 2.5);
        let (m0, m) = (chart.mask(&grid), zone.mask(&grid));
        let (n0, n) = (m0.iter().filter(|x| **x).count(), m.iter().filter(|x| **x).count());
        // The chart's volume (4/3 pi a b^2) on 0.125 mm^3 voxels, and less with the heat sink.
        let volume = 4.0 / 3.0 * std::f64::consts::PI * 26.1 * 16.65 * 16.65 / 0.125;
        assert!((n0 as f64 / volume - 1.0).abs() < 0.02, "{n0} vs {volume}");
        assert!(n < n0 && n as f64 > 0.7 * n0 as f64, "{n} of {n0}");
        assert!(m.iter().zip(&m0).all(|(a, b)| !*a || *b), "the heat sink only takes away");
    }

    proptest::proptest! {
        /// Whatever the vessels, the heat sink only takes away: the radius along any direction
        /// is at most the chart's and never negative, and a point inside the shrunk zone is
        /// inside the chart's.
        #[test]
        fn the_heat_sink_only_takes_away(
            sinks in proptest::collection::vec(((-30.0f64..30.0, -30.0f64..30.0, -30.0f64..30.0), 1.0f64..5.0), 0..12),
            axis in (-1.0f64..1.0, -1.0f64..1.0, 0.1f64..1.0),
            u in (-1.0f64..1.0, -1.0f64..1.0, -1.0f64..1.0),
            scale in 0.0f64..1.2,
        ) {
            let points: Vec<SinkPoint> = sinks
                .iter()
                .map(|((x, y, z), r)| SinkPoint { centre: Point::new(*x, *y, *z), radius_mm: *r })
                .collect();
            let chart = ZoneShape::ellipsoid(Point::new(0.0, 0.0, 0.0), Vector3::new(axis.0, axis.1, axis.2), 52.2, 33.3);
            let zone = chart.clone().with_heat_sinks(&points, &HeatSink::default());
            let u = Vector3::new(u.0, u.1, u.2);
            proptest::prop_assume!(u.norm() > 1e-3);
            let u = u.normalize();
            let (r, r0) = (zone.radius(&u), chart.radius(&u));
            proptest::prop_assert!(r >= 0.0 && r <= r0 + 1e-9, "{} vs {}", r, r0);
            let p = Point::from_coords(u * (scale * r0));
            proptest::prop_assert!(!zone.contains(p) || chart.contains(p));
        }
    }

    #[test]
    fn the_config_has_the_heat_sink_and_bad_values_are_named() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/devices.toml");
        assert_eq!(load_heat_sink(&path).unwrap(), HeatSink::default());
        let dir = std::env::temp_dir().join(format!("stylet-heat-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("devices.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace("anchor_fraction = 0.4", "anchor_fraction = 1.4");
        std::fs::write(&bad, text).unwrap();
        let e = load_heat_sink(&bad).unwrap_err().to_string();
        assert!(e.contains("heat_sink.anchor_fraction") && e.contains("1.4"), "{e}");
        // The device loader still reads the file.
        assert!(crate::load_zone(&path, "mwa-generic", "100W-8min").is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
