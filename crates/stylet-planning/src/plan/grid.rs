//! The voxel grid: index <-> LPS, each voxel's class, boxes around a class, boundaries, the body.

use std::collections::BTreeMap;

use nalgebra::{Matrix3, Vector3};
use stylet_imaging::Volume;

use super::PlanError;
use crate::config::{Class, LabelTable};
use crate::geometry::{components, Crop};

/// The grid's index <-> LPS maps.
pub(super) struct Grid {
    pub(super) dims: [usize; 3],
    pub(super) origin: Vector3<f64>,
    pub(super) m: Matrix3<f64>,
    pub(super) inv: Matrix3<f64>,
}

impl Grid {
    pub(super) fn new(v: &Volume) -> Option<Self> {
        let s = v.spacing_mm;
        let m = Matrix3::from_columns(&[
            v.direction.column(0) * s[0],
            v.direction.column(1) * s[1],
            v.direction.column(2) * s[2],
        ]);
        Some(Self { dims: v.dims, origin: v.origin.to_nalgebra().coords, m, inv: m.try_inverse()? })
    }
    pub(super) fn lps(&self, idx: usize) -> Vector3<f64> {
        let [nx, ny, _] = self.dims;
        let ijk = Vector3::new((idx % nx) as f64, ((idx / nx) % ny) as f64, (idx / (nx * ny)) as f64);
        self.origin + self.m * ijk
    }
    pub(super) fn index(&self, p: &Vector3<f64>) -> Option<usize> {
        let f = self.inv * (p - self.origin);
        let [nx, ny, nz] = self.dims;
        let r = |x: f64, n: usize| {
            let x = x.round();
            (x >= 0.0 && x < n as f64).then_some(x as usize)
        };
        Some((r(f.z, nz)? * ny + r(f.y, ny)?) * nx + r(f.x, nx)?)
    }
}

/// Which classes each row (fixed j, k) of the volume holds: bit `1 << class`. Boxes around a
/// class come from these without another pass over the voxels.
pub(super) struct Rows {
    pub(super) bits: Vec<u16>,
    pub(super) dims: [usize; 3],
}

impl Rows {
    pub(super) fn mark(&mut self, idx: usize, c: Class) {
        if let Some(b) = self.bits.get_mut(idx / self.dims[0].max(1)) {
            *b |= 1 << c as u16;
        }
    }
    pub(super) fn has(&self, c: Class) -> bool {
        self.bits.iter().any(|b| b & (1 << c as u16) != 0)
    }
    /// The box of the rows holding `c` (every column), grown by `margin` rows and slices.
    pub(super) fn crop(&self, c: Class, margin: usize) -> Option<Crop> {
        let [nx, ny, nz] = self.dims;
        let (mut lo, mut hi) = ([usize::MAX; 2], [0usize; 2]);
        for (r, b) in self.bits.iter().enumerate() {
            if b & (1 << c as u16) != 0 {
                let (j, k) = (r % ny, r / ny);
                lo = [lo[0].min(j), lo[1].min(k)];
                hi = [hi[0].max(j), hi[1].max(k)];
            }
        }
        if lo[0] == usize::MAX {
            return None;
        }
        let (j0, k0) = (lo[0].saturating_sub(margin), lo[1].saturating_sub(margin));
        let (j1, k1) = ((hi[0] + margin).min(ny - 1), (hi[1] + margin).min(nz - 1));
        Some(Crop { full: self.dims, lo: [0, j0, k0], dims: [nx, j1 - j0 + 1, k1 - k0 + 1] })
    }
}

/// Per-voxel class codes, and which classes each row holds.
pub(super) fn classify(labels: &Volume, table: &LabelTable) -> Result<(Vec<Class>, Rows), PlanError> {
    // A lookup table over the values present (label maps hold small integers); the volume is
    // split over the cores in whole rows.
    const LUT: usize = 4096;
    let lut: Vec<Option<Class>> = (0..LUT as u32).map(|v| table.class(v)).collect();
    let value_of =
        |v: f32| if v.is_finite() && v >= -0.5 && v < LUT as f32 - 0.5 { (v + 0.5) as u32 } else { u32::MAX };
    let nx = labels.dims[0].max(1);
    let mut classes = vec![Class::Background; labels.voxels.len()];
    let mut rows = Rows { bits: vec![0; labels.voxels.len() / nx], dims: labels.dims };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
    let rows_per = rows.bits.len().div_ceil(threads).max(1);
    let unknown: Vec<BTreeMap<u32, usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = classes
            .chunks_mut(rows_per * nx)
            .zip(labels.voxels.chunks(rows_per * nx))
            .zip(rows.bits.chunks_mut(rows_per))
            .map(|((out, vals), bits)| {
                let lut = &lut;
                s.spawn(move || {
                    let mut unknown = BTreeMap::new();
                    for ((out, vals), bits) in out.chunks_mut(nx).zip(vals.chunks(nx)).zip(bits.iter_mut()) {
                        let mut b = 0u16;
                        for (o, &v) in out.iter_mut().zip(vals) {
                            let value = value_of(v);
                            let c = lut.get(value as usize).copied().flatten().or_else(|| {
                                if (value as usize) < LUT {
                                    None
                                } else {
                                    table.class(value)
                                }
                            });
                            match c {
                                Some(c) => {
                                    *o = c;
                                    b |= 1 << c as u16;
                                }
                                None => *unknown.entry(value).or_insert(0) += 1,
                            }
                        }
                        *bits = b;
                    }
                    unknown
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut all: BTreeMap<u32, usize> = BTreeMap::new();
    for u in unknown {
        for (k, v) in u {
            *all.entry(k).or_insert(0) += v;
        }
    }
    if all.is_empty() {
        Ok((classes, rows))
    } else {
        Err(PlanError::UnknownLabels { table: table.name.clone(), values: all.into_iter().collect() })
    }
}

/// Voxels of `mask` with a 6-neighbour outside it (the volume border does not count as outside
/// when `border_is_outside` is false).
pub(super) fn boundary(mask: &[bool], dims: [usize; 3], border_is_outside: bool) -> Vec<usize> {
    let [nx, ny, nz] = dims;
    let plane = nx * ny;
    // Slabs of slices over the cores; each scans its slices row by row.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
    let per = nz.div_ceil(threads).max(1);
    let parts: Vec<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..nz)
            .step_by(per)
            .map(|k0| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for k in k0..(k0 + per).min(nz) {
                        for j in 0..ny {
                            let row = (k * ny + j) * nx;
                            for i in 0..nx {
                                let idx = row + i;
                                if !mask[idx] {
                                    continue;
                                }
                                let outside = |ok: bool, w: usize| if ok { !mask[w] } else { border_is_outside };
                                if outside(i > 0, idx.wrapping_sub(1))
                                    || outside(i + 1 < nx, idx + 1)
                                    || outside(j > 0, idx.wrapping_sub(nx))
                                    || outside(j + 1 < ny, idx + nx)
                                    || outside(k > 0, idx.wrapping_sub(plane))
                                    || outside(k + 1 < nz, idx + plane)
                                {
                                    out.push(idx);
                                }
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    parts.concat()
}

/// The body: from the label map when it has body voxels, else the CT's outline (HU > -500, the
/// largest component, holes filled).
pub(super) fn body_mask(ct: &Volume, classes: &[Class], rows: &Rows) -> (Vec<bool>, &'static str) {
    let labelled: Vec<bool> = classes.iter().map(|c| *c != Class::Background).collect();
    if rows.has(Class::Body) {
        return (labelled, "label map");
    }
    let dims = ct.dims;
    let raw: Vec<bool> = ct.voxels.iter().zip(&labelled).map(|(h, l)| *h > -500.0 || *l).collect();
    let (id, _) = components(&raw, dims);
    let body: Vec<bool> = id.iter().map(|c| *c == 1).collect();
    // Fill holes: background components that do not touch the volume border.
    let outside: Vec<bool> = body.iter().map(|b| !b).collect();
    let (oid, osizes) = components(&outside, dims);
    let [nx, ny, nz] = dims;
    let mut touches = vec![false; osizes.len()];
    for (idx, c) in oid.iter().enumerate() {
        let (i, j, k) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
        if *c != 0 && (i == 0 || j == 0 || k == 0 || i + 1 == nx || j + 1 == ny || k + 1 == nz) {
            touches[*c as usize] = true;
        }
    }
    (body.iter().zip(&oid).map(|(b, c)| *b || (*c != 0 && !touches[*c as usize])).collect(), "CT body outline")
}
