//! The distance maps the path rules read: clearance to what the shaft must avoid (PATH-1), the
//! lung (PATH-5), bone (PATH-3), and the vessels wide enough to count (PATH-1, OAR-3).

use crate::config::Class;
use crate::edt::edt;
use crate::geometry::Crop;

pub(super) struct Maps {
    /// Distance to anything the shaft must keep clear of: the blocking classes and vessels of at
    /// least the PATH-1 diameter, on the coarse grid; within `clear_error_mm` of the truth.
    pub(super) clear: Field,
    /// Bound on the coarse clearance's error, mm.
    pub(super) clear_error_mm: f64,
    /// The blocking voxels themselves (over `clear.crop`), for the exact check near the limit.
    pub(super) blocked: Vec<bool>,
    /// Voxel size, mm.
    pub(super) spacing: [f64; 3],
    /// Distance to the lung (coarse grid: PATH-5 warns at 10 mm).
    pub(super) lung: Field,
    /// Distance to bone (coarse grid: intercostal detection at 15 mm).
    pub(super) bone: Field,
}

impl Maps {
    /// The blocking voxels over `crop` and the three coarse distance maps, from one pass over the
    /// box split over the cores (each takes whole coarse slices).
    pub(super) fn new(classes: &[Class], major: &[bool], crop: Crop, spacing: [f64; 3]) -> Self {
        let f = spacing.map(|s| ((1.5 / s).floor() as usize).max(1));
        let [cx, cy, cz] = crop.dims;
        let cd = [cx.div_ceil(f[0]), cy.div_ceil(f[1]), cz.div_ceil(f[2])];
        let mut blocked = vec![false; cx * cy * cz];
        // One byte per coarse cell: bit 0 blocking, bit 1 lung, bit 2 bone.
        let mut cells = vec![0u8; cd[0] * cd[1] * cd[2]];
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
        let planes = cd[2].div_ceil(threads).max(1);
        let (fine, coarse) = ((planes * f[2] * cx * cy).max(1), (planes * cd[0] * cd[1]).max(1));
        std::thread::scope(|s| {
            for (t, (fine_part, cell_part)) in blocked.chunks_mut(fine).zip(cells.chunks_mut(coarse)).enumerate() {
                s.spawn(move || {
                    let k0 = t * planes * f[2];
                    for (kl, plane) in fine_part.chunks_mut(cx * cy).enumerate() {
                        let k = k0 + kl;
                        for (j, row) in plane.chunks_mut(cx).enumerate() {
                            let start = ((k + crop.lo[2]) * crop.full[1] + j + crop.lo[1]) * crop.full[0] + crop.lo[0];
                            let base = ((kl / f[2]) * cd[1] + j / f[1]) * cd[0];
                            let voxels = classes[start..start + cx].iter().zip(&major[start..start + cx]);
                            for (i, (out, (class, m))) in row.iter_mut().zip(voxels).enumerate() {
                                let bits = u8::from(class.blocks_path() || *m)
                                    | u8::from(*class == Class::Lung) << 1
                                    | u8::from(matches!(class, Class::Bone | Class::Spine)) << 2;
                                if bits != 0 {
                                    *out = bits & 1 != 0;
                                    cell_part[base + i / f[0]] |= bits;
                                }
                            }
                        }
                    }
                });
            }
        });
        let field = |bit: u8| {
            let m: Vec<bool> = cells.iter().map(|c| c & bit != 0).collect();
            let cs = [spacing[0] * f[0] as f64, spacing[1] * f[1] as f64, spacing[2] * f[2] as f64];
            Field { crop, f, dims: cd, d: edt(&m, cd, cs) }
        };
        let clear = field(1);
        Self { clear_error_mm: clear.error_mm(spacing), clear, blocked, spacing, lung: field(2), bone: field(4) }
    }
}

/// A distance map over a box of the volume (the body's), optionally on a coarser grid (blocks of
/// `f` voxels; a block is a feature when any of its voxels is), read by full-volume index.
/// Outside the box it reads infinity. Coarse distances are within about one block diagonal.
pub(super) struct Field {
    pub(super) crop: Crop,
    pub(super) f: [usize; 3],
    pub(super) dims: [usize; 3],
    pub(super) d: Vec<f32>,
}

impl Field {
    /// The largest difference between a coarse distance and the exact one, mm: the query and
    /// the feature each sit within half a block of the block centres used.
    pub(super) fn error_mm(&self, spacing: [f64; 3]) -> f64 {
        (0..3).map(|a| ((self.f[a] - 1) as f64 * spacing[a]).powi(2)).sum::<f64>().sqrt()
    }

    pub(super) fn at(&self, idx: usize) -> f32 {
        let Some(ci) = self.crop.index(idx) else { return f32::INFINITY };
        if self.f == [1, 1, 1] {
            return self.d[ci];
        }
        let c = self.crop.dims;
        let (i, j, k) = (ci % c[0], (ci / c[0]) % c[1], ci / (c[0] * c[1]));
        self.d[((k / self.f[2]) * self.dims[1] + j / self.f[1]) * self.dims[0] + i / self.f[0]]
    }
}

/// Vessel voxels that belong to vessels at least `diameter_mm` wide: a ball of that diameter
/// fits inside (the core), dilated back by the radius (an opening), computed on the vessels'
/// bounding box only.
/// `within` is a box known to hold every vessel voxel.
pub(super) fn major_vessels(classes: &[Class], within: Option<Crop>, spacing: [f64; 3], diameter_mm: f64) -> Vec<bool> {
    let mut out = vec![false; classes.len()];
    let Some(crop) = within.and_then(|w| w.around_within(classes, |c| c == Class::Vessel, 1)) else { return out };
    let outside: Vec<bool> = crop.extract(classes).iter().map(|c| *c != Class::Vessel).collect();
    let h = spacing.iter().copied().fold(f64::INFINITY, f64::min) / 2.0;
    let r = diameter_mm / 2.0;
    let inner = edt(&outside, crop.dims, spacing);
    let core: Vec<bool> = inner.iter().map(|d| f64::from(*d) >= r - h).collect();
    // Dilate the core back by the radius: a vessel voxel is kept when a core voxel lies within
    // r + h (a small ball of offsets, checked for vessel voxels only).
    let reach = r + h;
    let [cx, cy, cz] = crop.dims;
    let n = spacing.map(|s| (reach / s).floor() as i64);
    let mut ball = Vec::new();
    for c in -n[2]..=n[2] {
        for b in -n[1]..=n[1] {
            for a in -n[0]..=n[0] {
                let d2 =
                    (a as f64 * spacing[0]).powi(2) + (b as f64 * spacing[1]).powi(2) + (c as f64 * spacing[2]).powi(2);
                if d2 <= reach * reach {
                    ball.push((a, b, c));
                }
            }
        }
    }
    for (idx, o) in outside.iter().enumerate() {
        if *o {
            continue;
        }
        let (i, j, k) = ((idx % cx) as i64, ((idx / cx) % cy) as i64, (idx / (cx * cy)) as i64);
        let near_core = ball.iter().any(|(a, b, c)| {
            let (x, y, z) = (i + a, j + b, k + c);
            x >= 0
                && y >= 0
                && z >= 0
                && (x as usize) < cx
                && (y as usize) < cy
                && (z as usize) < cz
                && core[((z as usize) * cy + y as usize) * cx + x as usize]
        });
        if near_core {
            out[crop.full_index(idx)] = true;
        }
    }
    out
}
