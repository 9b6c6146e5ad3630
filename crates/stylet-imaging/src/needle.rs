//! Finding the needle in a checkpoint CT: its tip and axis from the metal in the volume.
//!
//! Voxels at or above `threshold_hu` (metal: the shaft and its blooming; streaks and cortical
//! bone stay below) are grouped into 26-connected components; the needle is the longest thin
//! line (voxels within about a millimetre of their axis, so no rib or vertebra) near the
//! expected path when one is given (the planned entry and target). The axis is the principal direction of the component's voxels weighted by their HU
//! above the threshold; the tip is found along that axis at sub-voxel precision where the HU
//! profile falls to half-way between the shaft's and the tissue's beyond the deepest voxel.

use nalgebra::{Matrix3, Vector3};
use stylet_core::frame::{Ct, Point, Vector};

use crate::volume::Volume;

/// Detection settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NeedleSettings {
    /// Metal threshold, HU.
    pub threshold_hu: f32,
    /// Shortest accepted needle segment, mm.
    pub min_length_mm: f64,
    /// A component farther than this from the expected line is not the needle, mm.
    pub max_offset_mm: f64,
    /// A needle is thin: the RMS distance of its voxels from their axis is at most this, mm
    /// (ribs and the spine are not).
    pub max_rms_off_axis_mm: f64,
}

impl Default for NeedleSettings {
    fn default() -> Self {
        Self { threshold_hu: 2200.0, min_length_mm: 10.0, max_offset_mm: 15.0, max_rms_off_axis_mm: 1.2 }
    }
}

/// The needle found.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct NeedleFound {
    /// Tip (the CT's LPS frame, mm).
    #[serde(rename = "tip_lps_mm")]
    pub tip: Point<Ct>,
    /// Unit axis pointing towards the tip.
    pub axis: Vector<Ct>,
    /// The visible shaft's other end.
    #[serde(rename = "shaft_end_lps_mm")]
    pub shaft_end: Point<Ct>,
    /// Visible length, mm.
    pub length_mm: f64,
    /// RMS distance of the metal voxels from the fitted axis, mm (straightness).
    pub rms_off_axis_mm: f64,
    /// Metal voxels.
    pub voxels: usize,
}

/// Why no needle was found. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum NeedleError {
    /// no metal line of at least {min_length_mm} mm near the expected path ({components} metal components seen)
    NotFound {
        /// Shortest accepted.
        min_length_mm: f64,
        /// Components above the threshold.
        components: usize,
    },
}

/// Finds the needle. `expected` is (entry, target) in LPS mm: it picks the component and orients
/// the axis (the tip is the end nearer the target); without it, the longest line is taken and
/// the tip is its end nearer the middle of the scan.
///
/// # Errors
/// [`NeedleError::NotFound`].
pub fn detect_needle(
    v: &Volume,
    expected: Option<(Point<Ct>, Point<Ct>)>,
    settings: &NeedleSettings,
) -> Result<NeedleFound, NeedleError> {
    let [nx, ny, nz] = v.dims;
    let mask: Vec<bool> = v.voxels.iter().map(|h| *h >= settings.threshold_hu).collect();
    let mut seen = vec![false; mask.len()];
    let mut best: Option<(f64, NeedleFound)> = None;
    let mut components = 0;
    let mut stack = Vec::new();
    let exp = expected.map(|(e, t)| (e.to_nalgebra().coords, t.to_nalgebra().coords));
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        components += 1;
        seen[start] = true;
        stack.push(start);
        let mut members = Vec::new();
        while let Some(i) = stack.pop() {
            members.push(i);
            // 26-connected: an oblique shaft touches its next voxel only at an edge or corner.
            let (a, b, c) = ((i % nx) as i64, ((i / nx) % ny) as i64, (i / (nx * ny)) as i64);
            for dc in -1..=1i64 {
                for db in -1..=1i64 {
                    for da in -1..=1i64 {
                        let (x, y, z) = (a + da, b + db, c + dc);
                        if x < 0 || y < 0 || z < 0 || x >= nx as i64 || y >= ny as i64 || z >= nz as i64 {
                            continue;
                        }
                        let w = ((z as usize) * ny + y as usize) * nx + x as usize;
                        if mask[w] && !seen[w] {
                            seen[w] = true;
                            stack.push(w);
                        }
                    }
                }
            }
        }
        let Some(found) = fit_line(v, &members, settings) else { continue };
        if found.length_mm < settings.min_length_mm || found.rms_off_axis_mm > settings.max_rms_off_axis_mm {
            continue;
        }
        let mut found = found;
        let score = match exp {
            Some((e, t)) => {
                // Distance of the component's ends from the expected line.
                let dir = (t - e).normalize();
                let off = |p: Vector3<f64>| (p - e - dir * (p - e).dot(&dir)).norm();
                let (p, q) = (found.tip.to_nalgebra().coords, found.shaft_end.to_nalgebra().coords);
                if off(p).max(off(q)) > settings.max_offset_mm {
                    continue;
                }
                // Orient: the tip is the end nearer the target.
                if (q - t).norm() < (p - t).norm() {
                    std::mem::swap(&mut found.tip, &mut found.shaft_end);
                    found.axis = found.axis * -1.0;
                }
                found.length_mm
            }
            None => {
                // Without a plan: the tip is the end nearer the middle of the scan (inside the
                // patient); the shaft comes in from the skin.
                let (lo, hi) = v.bounds();
                let mid = (lo.to_nalgebra().coords + hi.to_nalgebra().coords) / 2.0;
                let (p, q) = (found.tip.to_nalgebra().coords, found.shaft_end.to_nalgebra().coords);
                if (q - mid).norm() < (p - mid).norm() {
                    std::mem::swap(&mut found.tip, &mut found.shaft_end);
                    found.axis = found.axis * -1.0;
                }
                found.length_mm
            }
        };
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, found));
        }
    }
    let (_, mut found) = best.ok_or(NeedleError::NotFound { min_length_mm: settings.min_length_mm, components })?;
    refine_axis(v, &mut found);
    extend_tip(v, &mut found);
    refine_tip(v, &mut found, settings);
    Ok(found)
}

fn fit_line(v: &Volume, members: &[usize], s: &NeedleSettings) -> Option<NeedleFound> {
    let [nx, ny, _] = v.dims;
    let pos = |i: usize| {
        v.ct_from_index((i % nx) as f64, ((i / nx) % ny) as f64, (i / (nx * ny)) as f64).to_nalgebra().coords
    };
    let mut wsum = 0.0;
    let mut c = Vector3::zeros();
    for &i in members {
        let w = f64::from(v.voxels[i] - s.threshold_hu) + 1.0;
        wsum += w;
        c += pos(i) * w;
    }
    c /= wsum;
    let mut cov = Matrix3::zeros();
    for &i in members {
        let w = f64::from(v.voxels[i] - s.threshold_hu) + 1.0;
        let d = pos(i) - c;
        cov += d * d.transpose() * w;
    }
    let eig = (cov / wsum).symmetric_eigen();
    let k = eig.eigenvalues.imax();
    let axis: Vector3<f64> = eig.eigenvectors.column(k).into_owned();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut off2 = 0.0;
    for &i in members {
        let d = pos(i) - c;
        let t = d.dot(&axis);
        lo = lo.min(t);
        hi = hi.max(t);
        off2 += (d - axis * t).norm_squared();
    }
    let tip = c + axis * hi;
    let end = c + axis * lo;
    Some(NeedleFound {
        tip: Point::new(tip.x, tip.y, tip.z),
        axis: Vector::new(axis.x, axis.y, axis.z),
        shaft_end: Point::new(end.x, end.y, end.z),
        length_mm: hi - lo,
        rms_off_axis_mm: (off2 / members.len() as f64).sqrt(),
        voxels: members.len(),
    })
}

/// Refits the axis with every voxel within 2 mm of it, weighted by its HU above soft tissue, so
/// the partial-volume voxels place the line between voxel centres (sub-voxel).
fn refine_axis(v: &Volume, f: &mut NeedleFound) {
    let (a, b) = (f.shaft_end.to_nalgebra().coords, f.tip.to_nalgebra().coords);
    let axis = f.axis.to_nalgebra();
    let len = (b - a).norm();
    let lo = a.inf(&b) - Vector3::repeat(2.5);
    let hi = a.sup(&b) + Vector3::repeat(2.5);
    let (Some(i0), Some(i1)) = (
        v.index_from_ct(stylet_core::frame::Point::new(lo.x, lo.y, lo.z)),
        v.index_from_ct(stylet_core::frame::Point::new(hi.x, hi.y, hi.z)),
    ) else {
        return;
    };
    let [nx, ny, nz] = v.dims;
    let range = |x0: f64, x1: f64, n: usize| {
        let (l, h) =
            (x0.min(x1).floor().max(0.0) as usize, (x0.max(x1).ceil().max(0.0) as usize).min(n.saturating_sub(1)));
        l..=h
    };
    let (mut wsum, mut c) = (0.0, Vector3::zeros());
    let mut pts = Vec::new();
    for k in range(i0.z, i1.z, nz) {
        for j in range(i0.y, i1.y, ny) {
            for i in range(i0.x, i1.x, nx) {
                let p = v.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords;
                let t = (p - a).dot(&axis);
                if t < 1.0 || t > len - 1.0 || (p - a - axis * t).norm() > 2.0 {
                    continue;
                }
                let w = f64::from(v.voxels[(k * ny + j) * nx + i] - 200.0).max(0.0);
                if w > 0.0 {
                    wsum += w;
                    c += p * w;
                    pts.push((p, w));
                }
            }
        }
    }
    if wsum <= 0.0 || pts.len() < 6 {
        return;
    }
    c /= wsum;
    let mut cov = Matrix3::zeros();
    for (p, w) in &pts {
        let d = p - c;
        cov += d * d.transpose() * *w;
    }
    let eig = (cov / wsum).symmetric_eigen();
    let mut n: Vector3<f64> = eig.eigenvectors.column(eig.eigenvalues.imax()).into_owned();
    if n.dot(&axis) < 0.0 {
        n = -n;
    }
    let project = |p: Vector3<f64>| c + n * (p - c).dot(&n);
    let (na, nb) = (project(a), project(b));
    f.axis = Vector::new(n.x, n.y, n.z);
    f.tip = Point::new(nb.x, nb.y, nb.z);
    f.shaft_end = Point::new(na.x, na.y, na.z);
}

/// Follows the axis beyond the thresholded piece while metal continues (partial volume can drop
/// an oblique thin shaft below the threshold between voxel centres, breaking it into pieces): the
/// brightest of the axis point and a 0.5 mm ring around it must stay above 1200 HU (soft tissue,
/// contrast and streaks stay below).
fn extend_tip(v: &Volume, f: &mut NeedleFound) {
    let axis = f.axis.to_nalgebra();
    let (e1, e2) = {
        let any = if axis.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
        let e1 = axis.cross(&any).normalize();
        (e1, axis.cross(&e1))
    };
    let bright = |p: Vector3<f64>| {
        (0..8)
            .map(|k| {
                let th = std::f64::consts::TAU * f64::from(k) / 8.0;
                p + (e1 * th.cos() + e2 * th.sin()) * 0.5
            })
            .chain(std::iter::once(p))
            .filter_map(|q| sample(v, &q))
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let tip = f.tip.to_nalgebra().coords;
    let mut t = 0.0;
    while t < 300.0 && bright(tip + axis * (t + 0.25)) > 1200.0 {
        t += 0.25;
    }
    if t > 0.0 {
        let p = tip + axis * t;
        f.tip = Point::new(p.x, p.y, p.z);
        f.length_mm += t;
    }
}

/// Trilinear sample (HU), None outside.
fn sample(v: &Volume, p: &Vector3<f64>) -> Option<f64> {
    v.sample_linear(stylet_core::frame::Point::new(p.x, p.y, p.z))
}

/// Moves the tip along the axis to where the HU falls half-way between the shaft (the profile's
/// maximum over the last 5 mm) and the tissue beyond (the median 3-6 mm past the tip).
fn refine_tip(v: &Volume, f: &mut NeedleFound, _s: &NeedleSettings) {
    let axis = f.axis.to_nalgebra();
    let tip = f.tip.to_nalgebra().coords;
    let step = 0.05;
    let profile: Vec<(f64, f64)> = (-100..=120)
        .filter_map(|k| {
            let t = f64::from(k) * step;
            sample(v, &(tip + axis * t)).map(|h| (t, h))
        })
        .collect();
    let shaft = profile.iter().filter(|(t, _)| *t <= 0.0).map(|(_, h)| *h).fold(f64::NEG_INFINITY, f64::max);
    let mut tissue: Vec<f64> = (60..=120).filter_map(|k| sample(v, &(tip + axis * (f64::from(k) * step)))).collect();
    if tissue.is_empty() || !shaft.is_finite() {
        return;
    }
    tissue.sort_by(f64::total_cmp);
    let half = 0.5 * (shaft + tissue[tissue.len() / 2]);
    // The last crossing of the half level going outwards.
    let mut cross = None;
    for w in profile.windows(2) {
        let ((t0, h0), (t1, h1)) = (w[0], w[1]);
        if h0 >= half && h1 < half {
            cross = Some(t0 + (h0 - half) / (h0 - h1) * (t1 - t0));
        }
    }
    if let Some(t) = cross {
        let p = tip + axis * t;
        f.tip = Point::new(p.x, p.y, p.z);
        f.length_mm += t;
    }
}
