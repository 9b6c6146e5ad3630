//! The tumour to plan for: its voxels (marked as tumour in the class map), centre, radius and
//! surface.

use nalgebra::Vector3;

use super::grid::{boundary, Grid, Rows};
use super::{PlanError, PlanInput, TumourSpec};
use crate::config::Class;
use crate::geometry::{components, Crop};

/// The tumour found in the label map, or placed as a sphere.
pub(super) struct Tumour {
    /// Over the whole volume.
    mask: Vec<bool>,
    /// A box known to hold all of it.
    bbox: Crop,
    /// Its voxels (full-volume indices).
    pub(super) voxels: Vec<usize>,
    /// Its centroid, LPS mm.
    pub(super) centre: Vector3<f64>,
    /// The farthest voxel centre from the centroid plus half a voxel, mm.
    pub(super) radius: f64,
}

impl Tumour {
    /// Finds the tumour `input` names and marks its voxels as tumour in `classes` and `rows`.
    pub(super) fn find(
        input: &PlanInput<'_>,
        grid: &Grid,
        classes: &mut [Class],
        rows: &mut Rows,
    ) -> Result<Self, PlanError> {
        let labels = input.labels;
        let dims = labels.dims;
        let min_spacing = input.ct.spacing_mm.iter().copied().fold(f64::INFINITY, f64::min);
        let (tumour_mask, tumour_box): (Vec<bool>, Crop) = match &input.tumour {
            TumourSpec::Label { value, component } => {
                let class = input.table.class(*value);
                if class != Some(Class::Tumour) {
                    return Err(PlanError::NotTumourLabel {
                        value: *value,
                        table: input.table.name.clone(),
                        class: class.unwrap_or(Class::Background),
                    });
                }
                let want = *value as f32;
                let crop =
                    rows.crop(Class::Tumour, 0).ok_or(PlanError::NoTumour { value: *value, component: *component })?;
                let m: Vec<bool> = crop.extract(&labels.voxels).iter().map(|v| (v - want).abs() < 0.5).collect();
                let (id, sizes) = components(&m, crop.dims);
                if *component + 1 >= sizes.len() {
                    return Err(PlanError::NoTumour { value: *value, component: *component });
                }
                let mut out = vec![false; labels.voxels.len()];
                for (i, c) in id.iter().enumerate() {
                    if *c as usize == component + 1 {
                        out[crop.full_index(i)] = true;
                    }
                }
                (out, crop)
            }
            TumourSpec::Sphere { centre, diameter_mm } => {
                let c = centre.to_nalgebra().coords;
                let at = grid.index(&c).map(|i| classes[i]);
                if at != Some(Class::Liver) && at != Some(Class::Tumour) {
                    return Err(PlanError::TargetOutsideLiver { x: c.x, y: c.y, z: c.z, class: at });
                }
                let r = diameter_mm / 2.0;
                let mut out = vec![false; classes.len()];
                let a = grid.inv * (c - Vector3::repeat(r) - grid.origin);
                let b = grid.inv * (c + Vector3::repeat(r) - grid.origin);
                let (lo, hi) = (a.inf(&b), a.sup(&b));
                let [nx, ny, nz] = dims;
                let range =
                    |l: f64, h: f64, n: usize| (l.floor().max(0.0) as usize)..=(h.ceil().max(0.0) as usize).min(n - 1);
                let (ri, rj, rk) = (range(lo.x, hi.x, nx), range(lo.y, hi.y, ny), range(lo.z, hi.z, nz));
                for k in rk.clone() {
                    for j in rj.clone() {
                        for i in ri.clone() {
                            let idx = (k * ny + j) * nx + i;
                            out[idx] = (grid.lps(idx) - c).norm() <= r;
                        }
                    }
                }
                let size = |r: &std::ops::RangeInclusive<usize>| (r.end() + 1).saturating_sub(*r.start());
                let crop = Crop {
                    full: dims,
                    lo: [*ri.start(), *rj.start(), *rk.start()],
                    dims: [size(&ri), size(&rj), size(&rk)],
                };
                (out, crop)
            }
        };
        let tumour_idx: Vec<usize> = match tumour_box.around_within(&tumour_mask, |m| m, 0) {
            Some(tc) => {
                (0..tc.dims.iter().product::<usize>()).map(|i| tc.full_index(i)).filter(|&i| tumour_mask[i]).collect()
            }
            None => Vec::new(),
        };
        for &i in &tumour_idx {
            classes[i] = Class::Tumour;
            rows.mark(i, Class::Tumour);
        }
        let centre = tumour_idx.iter().map(|&i| grid.lps(i)).sum::<Vector3<f64>>() / tumour_idx.len().max(1) as f64;
        let radius = tumour_idx.iter().map(|&i| (grid.lps(i) - centre).norm()).fold(0.0, f64::max) + min_spacing / 2.0;
        Ok(Tumour { mask: tumour_mask, bbox: tumour_box, voxels: tumour_idx, centre, radius })
    }

    /// Twice the radius, mm.
    pub(super) fn diameter(&self) -> f64 {
        2.0 * self.radius
    }

    /// The tumour's surface voxels (full-volume indices).
    pub(super) fn surface(&self) -> Result<Vec<usize>, PlanError> {
        let crop =
            self.bbox.around_within(&self.mask, |m| m, 1).ok_or(PlanError::NoTumour { value: 0, component: 0 })?;
        Ok(boundary(&crop.extract(&self.mask), crop.dims, true).into_iter().map(|i| crop.full_index(i)).collect())
    }
}
