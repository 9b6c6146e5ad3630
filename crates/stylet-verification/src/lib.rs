//! Verification from the post-ablation CT (issue 18, VER-1): what the ablation really covered.
//!
//! The consensus judges an ablation by the contrast CT after it: the ablation zone (coagulated,
//! non-enhancing tissue) must cover the tumour with a margin (MAR-1's threshold, 5 mm); where it
//! does not, a supplementary ablation follows. [`verify`] finds the zone in the post-ablation CT
//! and measures the margin in the planning CT's frame, where the tumour was drawn:
//!
//! 1. **Body**: the marker frame's beads in both CTs give the patient's rigid motion on the table
//!    ([`body_motion`]; identity when the caller has no markers).
//! 2. **Liver**: breathing and drift carry the liver between the two breath-holds; its shift is
//!    measured by block matching on the liver around the zone (a shell that leaves the zone
//!    out, each image less its mean: the post CT has contrast, the planning CT may not), so
//!    that motion does not count as margin.
//! 3. **Zone**: in the post CT brought into the planning frame, the zone is the region darker
//!    than halfway between the enhanced liver and the zone's own level at the seed (the ablated
//!    position), within the liver, connected to the seed after an opening that cuts the needle
//!    tract, with its holes (gas bubbles) filled; the hyperaemic rim, brighter than the liver,
//!    stays out.
//! 4. **Margin**: at every tumour surface voxel, the signed distance to the zone's surface
//!    (positive inside): the minimum, where it is, and the fraction of the surface under VER-1's
//!    margin, with those points for a supplementary plan.
//!
//! Pure: volumes in, figures out; no I/O.

use nalgebra::Vector3;
use stylet_core::frame::{Ct, Point, Transform, Vector};
use stylet_imaging::{organ_shift, OrganError, OrganSettings, Volume};
use stylet_planning::edt::edt;

/// How verification looks.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifySettings {
    /// The zone is looked for within this of the seed (and the tumour's box), mm.
    pub roi_radius_mm: f64,
    /// The liver's shift between the CTs: the matched shell, the search, the contrast.
    pub liver: OrganSettings,
    /// The zone's own level is read within this of the seed, mm.
    pub seed_radius_mm: f64,
    /// Connections thinner than about twice this (the needle tract) are cut, mm.
    pub opening_mm: f64,
    /// The zone must be at least this much darker than the liver, HU.
    pub min_contrast_hu: f64,
    /// VER-1: the minimal margin, mm (MAR-1's threshold).
    pub min_margin_mm: f64,
    /// A bead of the post CT is paired with the planning CT's nearest within this, mm (how far
    /// the patient may have moved on the table), for [`body_motion`].
    pub marker_pairing_mm: f64,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            roi_radius_mm: 45.0,
            liver: OrganSettings {
                radius_mm: 42.0,
                search_mm: 10.0,
                outlier_hu: 80.0,
                min_voxels: 3000,
                exclude_within_mm: 32.0,
                normalise: true,
            },
            seed_radius_mm: 5.0,
            opening_mm: 1.2,
            min_contrast_hu: 45.0,
            min_margin_mm: 5.0,
            marker_pairing_mm: 10.0,
        }
    }
}

/// What verification works on. Masks are on the planning CT's grid.
#[derive(Clone, Copy)]
pub struct VerifyInput<'a> {
    /// The planning CT (the frame the result is in).
    pub pre: &'a Volume,
    /// The post-ablation contrast CT (any grid).
    pub post: &'a Volume,
    /// The planning CT's label map.
    pub labels: &'a Volume,
    /// Which labels are the liver or lie in it (tumour, vessels).
    pub is_liver: &'a dyn Fn(f32) -> bool,
    /// The tumour's voxels (indices into the planning CT).
    pub tumour: &'a [usize],
    /// Where the zone is expected, planning frame (the ablated position, or the tumour centre).
    pub seed: Point<Ct>,
    /// The patient's rigid motion: a point of the post CT in the planning CT's frame (from the
    /// markers; identity without them).
    pub pre_from_post: Transform<Ct, Ct>,
}

impl std::fmt::Debug for VerifyInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyInput").field("seed", &self.seed).field("tumour_voxels", &self.tumour.len()).finish()
    }
}

/// A mask over a box of the planning CT's grid.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxMask {
    /// The box's first voxel.
    pub lo: [usize; 3],
    /// Its size.
    pub dims: [usize; 3],
    /// The voxels set (`i` fastest).
    pub mask: Vec<bool>,
}

impl BoxMask {
    /// The mask on the whole grid of `dims`.
    #[must_use]
    pub fn to_full(&self, dims: [usize; 3]) -> Vec<bool> {
        let mut full = vec![false; dims[0] * dims[1] * dims[2]];
        for (l, _) in self.mask.iter().enumerate().filter(|(_, m)| **m) {
            let [i, j, k] = self.ijk(l);
            if i < dims[0] && j < dims[1] && k < dims[2] {
                full[(k * dims[1] + j) * dims[0] + i] = true;
            }
        }
        full
    }

    /// The full-grid voxel of box voxel `l`.
    fn ijk(&self, l: usize) -> [usize; 3] {
        let n = self.dims;
        [self.lo[0] + l % n[0], self.lo[1] + (l / n[0]) % n[1], self.lo[2] + l / (n[0] * n[1])]
    }

    /// Whether full-grid voxel (`i`, `j`, `k`) is set (outside the box: not).
    #[must_use]
    pub fn contains(&self, ijk: [i64; 3]) -> bool {
        let local = [0, 1, 2].map(|d| ijk[d] - self.lo[d] as i64);
        (0..3).all(|d| local[d] >= 0 && local[d] < self.dims[d] as i64)
            && self.mask[(local[2] as usize * self.dims[1] + local[1] as usize) * self.dims[0] + local[0] as usize]
    }

    /// Voxels set.
    #[must_use]
    pub fn count(&self) -> usize {
        self.mask.iter().filter(|m| **m).count()
    }
}

/// The margin at one point of the tumour's surface.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SurfaceMargin {
    /// The surface voxel's centre, planning frame (LPS mm).
    pub at: Point<Ct>,
    /// Signed distance to the zone's surface, mm (negative: outside the zone).
    pub margin_mm: f64,
}

/// What verification found.
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    /// The liver's shift from the planning CT to the post CT (after the body's motion), mm.
    pub liver_shift: Vector<Ct>,
    /// Liver voxels matched, and the match's RMS before and after the shift, HU.
    pub liver_match: (usize, f64, f64),
    /// The enhanced liver's level, the zone's, and the threshold between them, HU.
    pub levels_hu: (f64, f64, f64),
    /// The zone, planning frame.
    pub zone: BoxMask,
    /// Its volume, ml.
    pub zone_ml: f64,
    /// The margin at every tumour surface voxel.
    pub surface: Vec<SurfaceMargin>,
    /// The smallest margin and where, mm.
    pub min_margin: SurfaceMargin,
    /// The fraction of the surface with less than VER-1's margin.
    pub under_treated_fraction: f64,
    /// VER-1's threshold used, mm.
    pub min_margin_mm: f64,
}

impl Verification {
    /// VER-1: the minimal margin reaches the threshold.
    #[must_use]
    pub fn passes(&self) -> bool {
        self.min_margin.margin_mm >= self.min_margin_mm
    }

    /// The surface points with less than VER-1's margin (what a supplementary ablation must
    /// cover).
    pub fn under_treated(&self) -> impl Iterator<Item = &SurfaceMargin> {
        self.surface.iter().filter(move |s| s.margin_mm < self.min_margin_mm)
    }

    /// Where the under-treated part lies from the tumour's centre, in words (LPS: `left`,
    /// `posterior`, `superior` for positive x, y, z), or `None` when VER-1 passes.
    #[must_use]
    pub fn where_under_treated(&self) -> Option<String> {
        let n = self.under_treated().count();
        if n == 0 || self.surface.is_empty() {
            return None;
        }
        let mean = |it: &mut dyn Iterator<Item = &SurfaceMargin>, count: usize| {
            it.fold(Vector3::zeros(), |a, s| a + s.at.to_nalgebra().coords) / count as f64
        };
        let centre = mean(&mut self.surface.iter(), self.surface.len());
        let d = mean(&mut self.under_treated(), n) - centre;
        let words = [("right", "left"), ("anterior", "posterior"), ("inferior", "superior")];
        let parts: Vec<&str> = (0..3)
            .filter(|&a| d[a].abs() >= 0.4 * d.norm())
            .map(|a| if d[a] >= 0.0 { words[a].1 } else { words[a].0 })
            .collect();
        Some(if parts.is_empty() { "all around".to_string() } else { parts.join("-") })
    }
}

/// Why verification found no answer. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum VerifyError {
    /// the CTs cannot be compared: {0}
    Grid(String),
    /// no tumour voxels to verify
    NoTumour,
    /// the seed {0:?} (LPS mm) is outside the planning CT
    SeedOutside([f64; 3]),
    /// the liver's motion between the CTs: {0}
    Liver(#[from] OrganError),
    /// no ablation zone at the seed: it reads {zone_hu:.0} HU against the liver's {liver_hu:.0} HU (at least {min_contrast_hu:.0} HU darker needed)
    NoZone {
        /// The level at the seed.
        zone_hu: f64,
        /// The liver's level.
        liver_hu: f64,
        /// The contrast needed.
        min_contrast_hu: f64,
    },
}

/// The patient's rigid motion between two CTs from the marker frame's beads found in each:
/// each bead of `post` paired with the nearest of `pre` within `tolerance_mm`; with at least 3
/// pairs, the rigid fit (a post point in the planning frame) and its RMS residual, mm.
#[must_use]
pub fn body_motion(pre: &[Point<Ct>], post: &[Point<Ct>], tolerance_mm: f64) -> Option<(Transform<Ct, Ct>, f64)> {
    let pairs: Vec<(Point<Ct>, Point<Ct>)> = post
        .iter()
        .filter_map(|q| {
            pre.iter()
                .copied()
                .min_by(|a, b| a.distance_mm(*q).total_cmp(&b.distance_mm(*q)))
                .filter(|p| p.distance_mm(*q) <= tolerance_mm)
                .map(|p| (p, *q))
        })
        .collect();
    if pairs.len() < 3 {
        return None;
    }
    let (to, from): (Vec<Point<Ct>>, Vec<Point<Ct>>) = pairs.iter().copied().unzip();
    let t = stylet_registration::umeyama::<Ct, Ct>(&from, &to).ok()?;
    let rms = (pairs.iter().map(|(p, q)| (t * *q).distance_mm(*p).powi(2)).sum::<f64>() / pairs.len() as f64).sqrt();
    Some((t, rms))
}

/// Verifies the ablation: the zone in the post CT, in the planning frame, and the margin.
///
/// # Errors
/// A [`VerifyError`]: no tumour, the seed outside, the liver's motion not measured, or no
/// non-enhancing zone at the seed.
pub fn verify(input: &VerifyInput<'_>, s: &VerifySettings) -> Result<Verification, VerifyError> {
    let pre = input.pre;
    if pre.dims.contains(&0) || input.post.dims.contains(&0) {
        return Err(VerifyError::Grid(format!("an empty CT ({:?} and {:?} voxels)", pre.dims, input.post.dims)));
    }
    input
        .labels
        .check_same_grid(pre, 0.01)
        .map_err(|e| VerifyError::Grid(format!("the label map is not on the planning CT's grid: {e}")))?;
    if input.tumour.is_empty() {
        return Err(VerifyError::NoTumour);
    }
    if let Some(t) = input.tumour.iter().find(|&&t| t >= pre.voxels.len()) {
        return Err(VerifyError::Grid(format!(
            "tumour voxel {t} is beyond the planning CT's {} voxels",
            pre.voxels.len()
        )));
    }
    let seed_index = pre
        .index_from_ct(input.seed)
        .filter(|f| (0..3).all(|d| f[d] > -0.5 && f[d] < pre.dims[d] as f64 - 0.5))
        .ok_or(VerifyError::SeedOutside(input.seed.to_array()))?;
    // 1-2. The post CT in the planning frame (the body's motion undone), then the liver's shift.
    let post_from_pre = input.pre_from_post.inverse();
    let moved = aligned_post(input, post_from_pre, s);
    let aligned = moved.as_ref().unwrap_or(input.post);
    let liver = organ_shift(pre, input.labels, input.is_liver, aligned, input.seed, &s.liver)?;
    let shift = liver.shift.to_nalgebra();
    // 3. The box: the ROI around the seed and the tumour with room for its margin.
    let b = search_box(pre, seed_index, input.tumour, s);
    let n = b.dims;
    let len = n[0] * n[1] * n[2];
    let mut values = Vec::with_capacity(len);
    let mut tissue = Vec::with_capacity(len);
    for l in 0..len {
        let [i, j, k] = b.ijk(l);
        let p = pre.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords;
        values.push(aligned.sample_linear(Point::from_coords(p + shift)).unwrap_or(f64::NAN));
        tissue.push(input.labels.get(i, j, k).is_some_and(input.is_liver));
    }
    // [1 2 1] once per axis: the noise down to a fifth, an edge moved by a quarter voxel at
    // the threshold.
    stylet_imaging::smooth_box(&mut values, n, 1);
    let spacing = pre.spacing_mm;
    let seed_local = [0, 1, 2].map(|d| (seed_index[d].round().max(0.0) as usize).saturating_sub(b.lo[d]).min(n[d] - 1));
    let centre = Point::<Ct>::from_coords(input.seed.to_nalgebra().coords);
    let near_seed = |l: usize| {
        let [i, j, k] = b.ijk(l);
        pre.ct_from_index(i as f64, j as f64, k as f64).distance_mm(centre)
    };
    let liver_hu = median(
        (0..len)
            .filter(|&l| tissue[l] && values[l].is_finite() && near_seed(l) >= s.liver.exclude_within_mm)
            .map(|l| values[l])
            .collect(),
    );
    let zone_hu = median(
        (0..len)
            .filter(|&l| near_seed(l) <= s.seed_radius_mm && values[l].is_finite() && values[l] > -200.0)
            .map(|l| values[l])
            .collect(),
    );
    // NaN levels (nothing to read) fail too.
    let contrast = liver_hu - zone_hu;
    if contrast.is_nan() || contrast < s.min_contrast_hu {
        return Err(VerifyError::NoZone { zone_hu, liver_hu, min_contrast_hu: s.min_contrast_hu });
    }
    let threshold = 0.5 * (liver_hu + zone_hu);
    let candidate: Vec<bool> = (0..len).map(|l| tissue[l] && values[l] < threshold).collect();
    // The opening: eroded, the seed's component, grown back within the candidates.
    let depth = edt(&candidate.iter().map(|c| !c).collect::<Vec<_>>(), n, spacing);
    let core: Vec<bool> = depth.iter().map(|d| f64::from(*d) > s.opening_mm).collect();
    let start = nearest_set(&core, n, seed_local, spacing, s.seed_radius_mm).ok_or(VerifyError::NoZone {
        zone_hu,
        liver_hu,
        min_contrast_hu: s.min_contrast_hu,
    })?;
    let core = component(&core, n, start);
    let from_core = edt(&core, n, spacing);
    let grown: Vec<bool> =
        (0..len).map(|l| candidate[l] && f64::from(from_core[l]) <= s.opening_mm + 0.5 * spacing[0]).collect();
    let zone = component(&grown, n, start);
    let zone = fill_holes(zone, n);
    // 4. The margin at the tumour's surface voxels.
    let inside = BoxMask { lo: b.lo, dims: n, mask: zone };
    let (surface, min_margin) = margins(pre, &inside, input.tumour, spacing);
    let under = surface.iter().filter(|m| m.margin_mm < s.min_margin_mm).count();
    let voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0;
    Ok(Verification {
        liver_shift: liver.shift,
        liver_match: (liver.voxels, liver.rms_unshifted_hu, liver.rms_hu),
        levels_hu: (liver_hu, zone_hu, threshold),
        zone_ml: inside.count() as f64 * voxel_ml,
        zone: inside,
        under_treated_fraction: under as f64 / surface.len().max(1) as f64,
        surface,
        min_margin,
        min_margin_mm: s.min_margin_mm,
    })
}

/// The post CT over the liver's matching box, on the planning grid, the body's motion undone
/// (`None`: there was none, the post CT is used as it is).
fn aligned_post(input: &VerifyInput<'_>, post_from_pre: Transform<Ct, Ct>, s: &VerifySettings) -> Option<Volume> {
    let identity = post_from_pre.to_nalgebra().translation.vector.norm() < 1e-9
        && post_from_pre.to_nalgebra().rotation.angle() < 1e-12;
    if identity {
        return None;
    }
    let pre = input.pre;
    let reach = s.liver.radius_mm + s.liver.search_mm + s.roi_radius_mm;
    let c = pre.index_from_ct(input.seed).unwrap_or_else(Vector3::zeros);
    let mut lo = [0usize; 3];
    let mut dims = [0usize; 3];
    for d in 0..3 {
        let half = (reach / pre.spacing_mm[d]).ceil();
        let a = (c[d] - half).max(0.0) as usize;
        let z = ((c[d] + half).max(0.0) as usize).min(pre.dims[d] - 1);
        (lo[d], dims[d]) = (a, z.saturating_sub(a) + 1);
    }
    let origin = pre.ct_from_index(lo[0] as f64, lo[1] as f64, lo[2] as f64);
    let mut voxels = Vec::with_capacity(dims[0] * dims[1] * dims[2]);
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = pre.ct_from_index((lo[0] + i) as f64, (lo[1] + j) as f64, (lo[2] + k) as f64);
                voxels.push(input.post.sample_linear(post_from_pre * p).map_or(f32::NAN, |v| v as f32));
            }
        }
    }
    Some(Volume { dims, spacing_mm: pre.spacing_mm, origin, direction: pre.direction, voxels })
}

/// The box of the planning grid that verification works in.
fn search_box(pre: &Volume, seed: Vector3<f64>, tumour: &[usize], s: &VerifySettings) -> BoxMask {
    let [nx, ny, _] = pre.dims;
    let mut lo = [0usize; 3];
    let mut hi = [0usize; 3];
    for d in 0..3 {
        let half = s.roi_radius_mm / pre.spacing_mm[d];
        lo[d] = (seed[d] - half).floor().max(0.0) as usize;
        hi[d] = ((seed[d] + half).ceil().max(0.0) as usize).min(pre.dims[d] - 1);
    }
    // The tumour, with room for twice VER-1's margin around it.
    let pad = [0, 1, 2].map(|d| (2.0 * s.min_margin_mm / pre.spacing_mm[d]).ceil() as usize + 2);
    for &t in tumour {
        let ijk = [t % nx, (t / nx) % ny, t / (nx * ny)];
        for d in 0..3 {
            lo[d] = lo[d].min(ijk[d].saturating_sub(pad[d]));
            hi[d] = hi[d].max((ijk[d] + pad[d]).min(pre.dims[d] - 1));
        }
    }
    let dims = [0, 1, 2].map(|d| hi[d] - lo[d] + 1);
    BoxMask { lo, dims, mask: Vec::new() }
}

/// The margin at each tumour surface voxel (a tumour voxel with a face neighbour outside it),
/// and the smallest.
fn margins(pre: &Volume, zone: &BoxMask, tumour: &[usize], spacing: [f64; 3]) -> (Vec<SurfaceMargin>, SurfaceMargin) {
    let n = zone.dims;
    let [nx, ny, nz] = pre.dims;
    let in_tumour = {
        let mut m = vec![false; n[0] * n[1] * n[2]];
        for &t in tumour {
            let ijk = [t % nx, (t / nx) % ny, t / (nx * ny)];
            if (0..3).all(|d| ijk[d] >= zone.lo[d] && ijk[d] < zone.lo[d] + n[d]) {
                let [i, j, k] = [0, 1, 2].map(|d| ijk[d] - zone.lo[d]);
                m[(k * n[1] + j) * n[0] + i] = true;
            }
        }
        m
    };
    let outside: Vec<bool> = zone.mask.iter().map(|z| !z).collect();
    let depth = edt(&outside, n, spacing);
    let reach = edt(&zone.mask, n, spacing);
    let half = 0.5 * spacing.iter().copied().fold(f64::INFINITY, f64::min);
    let mut surface = Vec::new();
    for &t in tumour {
        let ijk = [t % nx, (t / nx) % ny, t / (nx * ny)];
        let face = [(0, -1i64), (0, 1), (1, -1), (1, 1), (2, -1), (2, 1)].iter().any(|&(d, step)| {
            let mut q = ijk.map(|x| x as i64);
            q[d] += step;
            let dims = [nx, ny, nz];
            if q[d] < 0 || q[d] >= dims[d] as i64 {
                return true;
            }
            let (i, j, k) = (q[0] as usize, q[1] as usize, q[2] as usize);
            let local = [i, j, k].iter().zip(zone.lo).zip(n).all(|((x, lo), size)| *x >= lo && *x < lo + size);
            !local || !in_tumour[((k - zone.lo[2]) * n[1] + j - zone.lo[1]) * n[0] + i - zone.lo[0]]
        });
        if !face {
            continue;
        }
        let l = ((ijk[2] - zone.lo[2]) * n[1] + ijk[1] - zone.lo[1]) * n[0] + ijk[0] - zone.lo[0];
        let margin = if zone.mask[l] { f64::from(depth[l]) - half } else { -(f64::from(reach[l]) - half) };
        surface.push(SurfaceMargin {
            at: pre.ct_from_index(ijk[0] as f64, ijk[1] as f64, ijk[2] as f64),
            margin_mm: margin,
        });
    }
    let surface = smooth_on_surface(surface, SURFACE_SMOOTHING_MM);
    let min = surface
        .iter()
        .copied()
        .min_by(|a, b| a.margin_mm.total_cmp(&b.margin_mm))
        .unwrap_or(SurfaceMargin { at: Point::origin(), margin_mm: f64::NEG_INFINITY });
    (surface, min)
}

/// Each surface point's margin is the mean over the surface points within this of it, mm: the
/// margin varies little over it, and the voxels' noise (a quarter voxel or so) would otherwise
/// pull the minimum of hundreds of points below the true one.
const SURFACE_SMOOTHING_MM: f64 = 2.0;

/// Each point's margin averaged over the points within `radius_mm` (a grid of cells of that
/// size finds them).
fn smooth_on_surface(points: Vec<SurfaceMargin>, radius_mm: f64) -> Vec<SurfaceMargin> {
    use std::collections::HashMap;
    let cell = |p: &Point<Ct>| p.to_array().map(|x| (x / radius_mm).floor() as i64);
    let mut cells: HashMap<[i64; 3], Vec<usize>> = HashMap::new();
    for (i, p) in points.iter().enumerate() {
        cells.entry(cell(&p.at)).or_default().push(i);
    }
    points
        .iter()
        .map(|p| {
            let c = cell(&p.at);
            let (mut sum, mut n) = (0.0, 0usize);
            for m in 0..27 {
                let key = [c[0] + m % 3 - 1, c[1] + (m / 3) % 3 - 1, c[2] + m / 9 - 1];
                for &q in cells.get(&key).map_or(&[][..], Vec::as_slice) {
                    if points[q].at.distance_mm(p.at) <= radius_mm {
                        sum += points[q].margin_mm;
                        n += 1;
                    }
                }
            }
            SurfaceMargin { at: p.at, margin_mm: if n > 0 { sum / n as f64 } else { p.margin_mm } }
        })
        .collect()
}

/// The median of `v` (NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    v.select_nth_unstable_by(mid, f64::total_cmp);
    v[mid]
}

/// The set voxel of `mask` nearest `at` within `radius_mm`.
fn nearest_set(mask: &[bool], n: [usize; 3], at: [usize; 3], spacing: [f64; 3], radius_mm: f64) -> Option<usize> {
    let r = [0, 1, 2].map(|d| (radius_mm / spacing[d]).ceil() as i64);
    let mut best: Option<(f64, usize)> = None;
    for dk in -r[2]..=r[2] {
        for dj in -r[1]..=r[1] {
            for di in -r[0]..=r[0] {
                let q = [at[0] as i64 + di, at[1] as i64 + dj, at[2] as i64 + dk];
                if (0..3).any(|d| q[d] < 0 || q[d] >= n[d] as i64) {
                    continue;
                }
                let l = (q[2] as usize * n[1] + q[1] as usize) * n[0] + q[0] as usize;
                let dist = ((di as f64 * spacing[0]).powi(2)
                    + (dj as f64 * spacing[1]).powi(2)
                    + (dk as f64 * spacing[2]).powi(2))
                .sqrt();
                if mask[l] && dist <= radius_mm && best.is_none_or(|(b, _)| dist < b) {
                    best = Some((dist, l));
                }
            }
        }
    }
    best.map(|(_, l)| l)
}

/// The face-connected component of `mask` holding voxel `start`.
fn component(mask: &[bool], n: [usize; 3], start: usize) -> Vec<bool> {
    let mut out = vec![false; mask.len()];
    if !mask.get(start).copied().unwrap_or(false) {
        return out;
    }
    let mut stack = vec![start];
    out[start] = true;
    while let Some(l) = stack.pop() {
        for q in neighbours(l, n) {
            if mask[q] && !out[q] {
                out[q] = true;
                stack.push(q);
            }
        }
    }
    out
}

/// `zone` with its holes filled: every voxel outside it that the box's border cannot reach
/// through other voxels outside it.
fn fill_holes(zone: Vec<bool>, n: [usize; 3]) -> Vec<bool> {
    let mut reached = vec![false; zone.len()];
    let mut stack = Vec::new();
    for (l, z) in zone.iter().enumerate() {
        let x = [l % n[0], (l / n[0]) % n[1], l / (n[0] * n[1])];
        let border = (0..3).any(|d| x[d] == 0 || x[d] + 1 == n[d]);
        if border && !z {
            reached[l] = true;
            stack.push(l);
        }
    }
    while let Some(l) = stack.pop() {
        for q in neighbours(l, n) {
            if !zone[q] && !reached[q] {
                reached[q] = true;
                stack.push(q);
            }
        }
    }
    reached.iter().map(|r| !r).collect()
}

/// The face neighbours of box voxel `l`.
fn neighbours(l: usize, n: [usize; 3]) -> impl Iterator<Item = usize> {
    let x = [l % n[0], (l / n[0]) % n[1], l / (n[0] * n[1])];
    let stride = [1, n[0], n[0] * n[1]];
    (0..6).filter_map(move |m| {
        let (d, up) = (m / 2, m % 2 == 1);
        if up {
            (x[d] + 1 < n[d]).then(|| l + stride[d])
        } else {
            (x[d] > 0).then(|| l - stride[d])
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cube(n: usize, value: f32) -> Volume {
        Volume {
            dims: [n, n, n],
            spacing_mm: [1.0, 1.0, 1.0],
            origin: Point::new(0.0, 0.0, 0.0),
            direction: nalgebra::Matrix3::identity(),
            voxels: vec![value; n * n * n],
        }
    }

    #[test]
    fn what_cannot_be_verified_says_why() {
        let (pre, post, labels) = (cube(40, 60.0), cube(40, 110.0), cube(40, 2.0));
        let is_liver = |l: f32| l == 2.0;
        let tumour: Vec<usize> = vec![20 * 40 * 40 + 20 * 40 + 20];
        let input = VerifyInput {
            pre: &pre,
            post: &post,
            labels: &labels,
            is_liver: &is_liver,
            tumour: &tumour,
            seed: Point::new(20.0, 20.0, 20.0),
            pre_from_post: Transform::identity(),
        };
        let s = VerifySettings::default();
        let e = verify(&VerifyInput { tumour: &[], ..input }, &s).unwrap_err();
        assert_eq!(e, VerifyError::NoTumour);
        let e = verify(&VerifyInput { seed: Point::new(-500.0, 0.0, 0.0), ..input }, &s).unwrap_err();
        assert!(e.to_string().contains("-500"), "{e}");
        // Too little liver around the zone to measure its motion: said, not guessed.
        let e = verify(&input, &s).unwrap_err().to_string();
        assert!(e.contains("the liver's motion") && e.contains("voxels"), "{e}");
        let empty = Volume { dims: [0, 0, 0], voxels: Vec::new(), ..cube(1, 0.0) };
        let e = verify(&VerifyInput { post: &empty, ..input }, &s).unwrap_err().to_string();
        assert!(e.contains("an empty CT"), "{e}");
        let small = cube(30, 2.0);
        let e = verify(&VerifyInput { labels: &small, ..input }, &s).unwrap_err().to_string();
        assert!(e.contains("not on the planning CT's grid"), "{e}");
    }

    #[test]
    fn the_body_motion_is_found_from_three_beads_or_not_at_all() {
        let pre = [
            Point::new(0.0, 0.0, 0.0),
            Point::new(60.0, 0.0, 0.0),
            Point::new(0.0, 45.0, 0.0),
            Point::new(30.0, 20.0, 25.0),
        ];
        let moved: Vec<Point<Ct>> = pre
            .iter()
            .map(|p| Point::new(p.to_array()[0] + 3.0, p.to_array()[1] - 2.0, p.to_array()[2] + 1.0))
            .collect();
        let (t, rms) = body_motion(&pre, &moved, 10.0).unwrap();
        assert!(rms < 1e-9);
        assert!((t * moved[3]).distance_mm(pre[3]) < 1e-9);
        assert!(body_motion(&pre, &moved[..2], 10.0).is_none());
        assert!(body_motion(&pre, &moved, 1.0).is_none(), "no pair within 1 mm");
    }
}
