//! How far an organ has moved between two CTs of the same patient: the liver in a checkpoint CT
//! against the planning CT. Breathing and drift carry the liver (and the target in it) while the
//! marker frame on the skin, and so the CT-to-robot registration, stay put; a needle aimed at
//! where the planning CT saw the target misses by that motion.
//!
//! The method is block matching on the organ's own voxels: the planning CT's voxels of the
//! organ within `radius_mm` of a point (the target) are compared with the new CT shifted by whole
//! voxels, coarse to fine, then refined below a voxel by a parabola through the cost along each
//! axis. Both images are smoothed first (noise differs between a full-dose and a low-dose CT),
//! and each voxel's squared difference is capped at `outlier_hu` squared, so the needle, its
//! blooming and its streaks (which the planning CT does not have) weigh no more than any other
//! mismatch, whatever the shift.

use nalgebra::Vector3;
use stylet_core::frame::{Ct, Point, Vector};

use crate::Volume;

/// How the organ is matched.
#[derive(Clone, Debug, PartialEq)]
pub struct OrganSettings {
    /// Voxels of the organ within this of the point are matched, mm.
    pub radius_mm: f64,
    /// The organ moved at most this along each axis, mm.
    pub search_mm: f64,
    /// A voxel's difference counts up to this, HU (after smoothing).
    pub outlier_hu: f64,
    /// Fewer organ voxels than this near the point: no answer.
    pub min_voxels: usize,
    /// Voxels closer than this to the point are left out (what changed there, e.g. an ablation
    /// zone, does not steer the match), mm.
    pub exclude_within_mm: f64,
    /// Compare each image less its mean over the matched voxels, leaving out voxels beyond
    /// either CT's end: a CT with contrast against one without (the organ brighter as a
    /// whole), of another length.
    pub normalise: bool,
}

impl Default for OrganSettings {
    fn default() -> Self {
        OrganSettings {
            radius_mm: 25.0,
            search_mm: 12.0,
            outlier_hu: 60.0,
            min_voxels: 2000,
            exclude_within_mm: 0.0,
            normalise: false,
        }
    }
}

/// How far the organ moved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrganShift {
    /// Where a point of the organ in the reference CT is in the new CT, less where it was, LPS mm.
    pub shift: Vector<Ct>,
    /// Organ voxels matched.
    pub voxels: usize,
    /// RMS of the capped differences at the best shift, HU.
    pub rms_hu: f64,
    /// The same with no shift, HU (how much the match explains).
    pub rms_unshifted_hu: f64,
}

/// Why the organ's motion was not measured. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum OrganError {
    /// only {found} voxels of the organ within the matching radius (at least {needed} needed)
    TooFewVoxels {
        /// Organ voxels found.
        found: usize,
        /// Needed.
        needed: usize,
    },
    /// the best match is at the edge of the search ({search_mm} mm): the organ moved further, or the CTs do not match
    AtSearchEdge {
        /// The search range.
        search_mm: f64,
    },
}

/// A box of the reference grid: voxel `lo` to `lo + n - 1`.
struct Boxed {
    n: [usize; 3],
    reference: Vec<f64>,
    moved: Vec<f64>,
}

impl Boxed {
    fn at(&self, i: usize, j: usize, k: usize) -> usize {
        (k * self.n[1] + j) * self.n[0] + i
    }
}

/// How far the organ labelled `in_organ` in `labels` (on `reference`'s grid) moved from
/// `reference` to `moved` near `around`. `moved` may lie on another grid (it is resampled onto
/// the reference's).
///
/// # Errors
/// Too little of the organ near the point, or the best match at the edge of the search.
pub fn organ_shift(
    reference: &Volume,
    labels: &Volume,
    in_organ: &dyn Fn(f32) -> bool,
    moved: &Volume,
    around: Point<Ct>,
    s: &OrganSettings,
) -> Result<OrganShift, OrganError> {
    let sp = reference.spacing_mm;
    let search = sp.map(|d| (s.search_mm / d).ceil() as i64);
    let none = || OrganError::TooFewVoxels { found: 0, needed: s.min_voxels };
    let c = reference.index_from_ct(around).ok_or_else(none)?;
    // The box: the matched sphere, the search around it, and the smoothing's reach.
    let mut lo = [0usize; 3];
    let mut n = [0usize; 3];
    for d in 0..3 {
        let half = (s.radius_mm / sp[d]).ceil() as i64 + search[d] + 2;
        let centre = c[d].round() as i64;
        let a = (centre - half).max(0);
        let b = (centre + half).min(reference.dims[d] as i64 - 1);
        if b < a {
            return Err(none());
        }
        lo[d] = a as usize;
        n[d] = (b - a + 1) as usize;
    }
    let same_grid = reference.check_same_grid(moved, 1e-3).is_ok();
    let len = n[0] * n[1] * n[2];
    let mut b = Boxed { n, reference: Vec::with_capacity(len), moved: Vec::with_capacity(len) };
    for k in 0..n[2] {
        for j in 0..n[1] {
            for i in 0..n[0] {
                let (gi, gj, gk) = (lo[0] + i, lo[1] + j, lo[2] + k);
                b.reference.push(reference.get(gi, gj, gk).map_or(f64::NAN, f64::from));
                let m = if same_grid {
                    moved.get(gi, gj, gk).map(f64::from)
                } else {
                    moved.sample_linear(reference.ct_from_index(gi as f64, gj as f64, gk as f64))
                };
                b.moved.push(m.unwrap_or(f64::NAN));
            }
        }
    }
    smooth_box(&mut b.reference, n, 2);
    smooth_box(&mut b.moved, n, 2);
    // The organ's voxels in the sphere, far enough from the box's edge for every shift.
    let mut mask = Vec::new();
    let reach = |d: usize, x: usize| x as i64 > search[d] && (x as i64) < n[d] as i64 - search[d] - 1;
    for k in 0..n[2] {
        for j in 0..n[1] {
            for i in 0..n[0] {
                if !(reach(0, i) && reach(1, j) && reach(2, k)) {
                    continue;
                }
                let (gi, gj, gk) = (lo[0] + i, lo[1] + j, lo[2] + k);
                let p = reference.ct_from_index(gi as f64, gj as f64, gk as f64);
                let inside = labels.get(gi, gj, gk).is_some_and(in_organ);
                let r = p.distance_mm(around);
                if inside && r <= s.radius_mm && r >= s.exclude_within_mm && b.reference[b.at(i, j, k)].is_finite() {
                    mask.push([i, j, k]);
                }
            }
        }
    }
    if mask.len() < s.min_voxels {
        return Err(OrganError::TooFewVoxels { found: mask.len(), needed: s.min_voxels });
    }
    let cap = s.outlier_hu * s.outlier_hu;
    let cost = |shift: [i64; 3], every: usize| -> f64 {
        let pairs = mask.iter().step_by(every).map(|m| {
            let q = [0, 1, 2].map(|d| (m[d] as i64 + shift[d]) as usize);
            (b.moved[b.at(q[0], q[1], q[2])], b.reference[b.at(m[0], m[1], m[2])])
        });
        if s.normalise {
            // Each side less its mean over the pairs that have both values, the squared
            // difference capped; pairs without both values (beyond a CT's end) left out.
            let finite = |(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
            let (n, sx, sy) =
                pairs.clone().filter(finite).fold((0.0f64, 0.0, 0.0), |(n, a, b), (x, y)| (n + 1.0, a + x, b + y));
            let n = n.max(1.0);
            let (mx, my) = (sx / n, sy / n);
            return pairs.filter(finite).map(|(x, y)| ((x - mx) - (y - my)).powi(2).min(cap)).sum::<f64>() / n;
        }
        let mut sum = 0.0;
        let mut count = 0usize;
        for (moved, reference) in pairs {
            let diff = moved - reference;
            sum += if diff.is_finite() { (diff * diff).min(cap) } else { cap };
            count += 1;
        }
        sum / count.max(1) as f64
    };
    // Coarse: every second voxel of shift over the whole range, on an eighth of the voxels (on
    // about 20,000 of them when there are more: a large matched region, as verification's).
    // In the contrast mode (a large region, a search of 10 mm and more) every fourth voxel
    // first, then every second near the best, then every voxel within one of that.
    let sparse = (mask.len() / 20_000).max(8);
    let range = |d: usize, step: i64| (-search[d]..=search[d]).filter(move |x| x % step == 0);
    let mut best = ([0i64; 3], f64::INFINITY);
    let first = if s.normalise { 4 } else { 2 };
    for x in range(0, first) {
        for y in range(1, first) {
            for z in range(2, first) {
                let v = cost([x, y, z], sparse);
                if v < best.1 {
                    best = ([x, y, z], v);
                }
            }
        }
    }
    let around = |best: &mut ([i64; 3], f64), step: i64, reach: i64, every: usize| {
        let centre = best.0;
        *best = (centre, f64::INFINITY);
        for x in -reach..=reach {
            for y in -reach..=reach {
                for z in -reach..=reach {
                    let t = [centre[0] + x * step, centre[1] + y * step, centre[2] + z * step];
                    if (0..3).any(|d| t[d].abs() > search[d]) {
                        continue;
                    }
                    let v = cost(t, every);
                    if v < best.1 {
                        *best = (t, v);
                    }
                }
            }
        }
    };
    if s.normalise {
        around(&mut best, 2, 1, sparse);
        around(&mut best, 1, 1, 1);
    } else {
        // Fine: every voxel of shift near the coarse best, on all voxels.
        around(&mut best, 1, 2, 1);
    }
    let (at, c0) = best;
    if (0..3).any(|d| at[d].abs() >= search[d]) {
        return Err(OrganError::AtSearchEdge { search_mm: s.search_mm });
    }
    // Below a voxel: the parabola through the cost either side along each axis.
    let mut frac = [0.0f64; 3];
    for d in 0..3 {
        let mut minus = at;
        minus[d] -= 1;
        let mut plus = at;
        plus[d] += 1;
        let (cm, cp) = (cost(minus, 1), cost(plus, 1));
        let curvature = cm - 2.0 * c0 + cp;
        if curvature > 0.0 {
            frac[d] = (0.5 * (cm - cp) / curvature).clamp(-0.5, 0.5);
        }
    }
    let step = Vector3::from_fn(|d, _| (at[d] as f64 + frac[d]) * sp[d]);
    let shift = reference.direction * step;
    Ok(OrganShift {
        shift: Vector::new(shift.x, shift.y, shift.z),
        voxels: mask.len(),
        rms_hu: c0.sqrt(),
        rms_unshifted_hu: cost([0, 0, 0], 1).sqrt(),
    })
}

/// Smooths a box of `n` voxels (`i` fastest) in place: [1 2 1] / 4 along each axis, `passes`
/// times (twice: about a Gaussian of one voxel); missing values stay missing and do not spread.
pub fn smooth_box(v: &mut [f64], n: [usize; 3], passes: usize) {
    let stride = [1, n[0], n[0] * n[1]];
    for d in 0..3 {
        for _ in 0..passes {
            let src = v.to_vec();
            for (idx, out) in v.iter_mut().enumerate() {
                let x = (idx / stride[d]) % n[d];
                if !src[idx].is_finite() {
                    continue;
                }
                let get = |o: Option<usize>| o.map(|i| src[i]).filter(|x| x.is_finite()).unwrap_or(src[idx]);
                let prev = get((x > 0).then(|| idx - stride[d]));
                let next = get((x + 1 < n[d]).then(|| idx + stride[d]));
                *out = 0.25 * prev + 0.5 * src[idx] + 0.25 * next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nalgebra::Matrix3;

    use super::*;

    /// A textured block "organ" in a body, with a round "tumour" and a "vessel" in it.
    fn organ_ct(shift: Vector3<f64>, noise: f64, seed: u64) -> (Volume, Volume) {
        let dims = [90, 90, 70];
        let spacing_mm = [0.8, 0.8, 1.0];
        let origin = Point::new(-36.0, -36.0, -35.0);
        let mut ct =
            Volume { dims, spacing_mm, origin, direction: Matrix3::identity(), voxels: vec![0.0; 90 * 90 * 70] };
        let mut labels = ct.clone();
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut rnd = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let p = ct.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords;
                    let q = p - shift;
                    let (mut hu, mut label) = (20.0, 1.0);
                    if q.norm() < 30.0 {
                        (hu, label) = (60.0, 2.0);
                    }
                    if (q - Vector3::new(4.0, -3.0, 2.0)).norm() < 10.0 {
                        hu = 30.0;
                    }
                    if (q.x - 12.0).hypot(q.y + 8.0) < 3.0 {
                        hu = 180.0;
                    }
                    let idx = (k * dims[1] + j) * dims[0] + i;
                    ct.voxels[idx] = (hu + noise * 3.4 * (rnd() + rnd() + rnd())) as f32;
                    labels.voxels[idx] = label;
                }
            }
        }
        (ct, labels)
    }

    #[test]
    fn the_organ_shift_is_found_below_a_voxel_despite_noise_and_a_needle() {
        let (planning, labels) = organ_ct(Vector3::zeros(), 15.0, 1);
        let truth = Vector3::new(1.3, -0.7, 3.4);
        let (mut moved, _) = organ_ct(truth, 30.0, 2);
        // A needle across the organ (metal) in the new CT only.
        for k in 0..moved.dims[2] {
            let idx = (k * 90 + 40) * 90 + 47;
            moved.voxels[idx] = 3000.0;
        }
        let organ = |v: f32| v == 2.0;
        let s = OrganSettings::default();
        let got = organ_shift(&planning, &labels, &organ, &moved, Point::new(0.0, 0.0, 0.0), &s).unwrap();
        let err = (got.shift.to_nalgebra() - truth).norm();
        assert!(err < 0.3, "{:?} against {truth}: {err:.2} mm", got.shift);
        assert!(got.rms_hu < got.rms_unshifted_hu);
        let still = organ_shift(&planning, &labels, &organ, &planning, Point::new(0.0, 0.0, 0.0), &s).unwrap();
        assert!(still.shift.norm_mm() < 0.05, "{:?}", still.shift);
    }

    #[test]
    fn too_little_organ_or_too_far_a_move_is_refused() {
        let (planning, labels) = organ_ct(Vector3::zeros(), 15.0, 1);
        let organ = |v: f32| v == 2.0;
        let s = OrganSettings::default();
        let far = organ_shift(&planning, &labels, &|v| v == 9.0, &planning, Point::origin(), &s);
        assert_eq!(far, Err(OrganError::TooFewVoxels { found: 0, needed: 2000 }));
        let (moved, _) = organ_ct(Vector3::new(0.0, 0.0, 20.0), 15.0, 3);
        let s = OrganSettings { search_mm: 6.0, ..s };
        assert_eq!(
            organ_shift(&planning, &labels, &organ, &moved, Point::origin(), &s),
            Err(OrganError::AtSearchEdge { search_mm: 6.0 })
        );
    }
}
