//! Fiducial marker detection in CT: threshold, 3-D connected components, size and shape filters,
//! intensity-weighted centroid with a localisation-uncertainty estimate.
//!
//! Markers are small dense spheres (ceramic or metal beads). Ribs and contrast-filled vessels are
//! either below the threshold or far too large; metal wires, streaks and implants are too large or
//! elongated; isolated noise voxels are too small. What remains is reported with the centroid of
//! `(HU - threshold)` over the component, which is sub-voxel accurate.

use nalgebra::{Matrix3, Vector3};
use stylet_core::frame::{Ct, Point};

use crate::volume::Volume;

/// Detection settings (from `config/registration.toml` `[fiducials]`).
#[derive(Clone, Debug, PartialEq)]
pub struct FiducialSettings {
    /// Voxels at or above this are candidate marker voxels, HU.
    pub threshold_hu: f32,
    /// Expected marker diameter, mm.
    pub diameter_mm: f64,
    /// Accepted component volume as a fraction of the sphere's: `[min, max]`.
    pub volume_fraction: [f64; 2],
    /// Largest ratio of the component's longest to shortest principal extent.
    pub max_elongation: f64,
}

impl Default for FiducialSettings {
    fn default() -> Self {
        FiducialSettings { threshold_hu: 1800.0, diameter_mm: 4.0, volume_fraction: [0.3, 2.5], max_elongation: 2.0 }
    }
}

/// A detected marker.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Fiducial {
    /// Intensity-weighted centroid (the CT's LPS frame, mm).
    #[serde(rename = "center_lps_mm")]
    pub center: Point<Ct>,
    /// Component volume, mm^3.
    pub volume_mm3: f64,
    /// Brightest voxel, HU.
    pub peak_hu: f32,
    /// Ratio of the longest to the shortest principal extent.
    pub elongation: f64,
    /// Estimated localisation uncertainty (RMS, mm): the voxel diagonal over the square root of the
    /// voxel count, the quantisation limit of a centroid.
    pub uncertainty_mm: f64,
}

/// A component that was not taken for a marker, and why (for reports).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Rejected {
    /// Centroid (the CT's LPS frame, mm).
    #[serde(rename = "center_lps_mm")]
    pub center: Point<Ct>,
    /// Volume, mm^3.
    pub volume_mm3: f64,
    /// Why.
    pub reason: &'static str,
}

/// Detects markers. Returns the markers and the rejected components.
#[must_use]
pub fn detect(v: &Volume, s: &FiducialSettings) -> (Vec<Fiducial>, Vec<Rejected>) {
    let [nx, ny, nz] = v.dims;
    let n = nx * ny * nz;
    let voxel_mm3 = v.spacing_mm.iter().product::<f64>();
    let sphere_mm3 = std::f64::consts::PI / 6.0 * s.diameter_mm.powi(3);
    let (min_mm3, max_mm3) = (s.volume_fraction[0] * sphere_mm3, s.volume_fraction[1] * sphere_mm3);
    let max_voxels = (max_mm3 / voxel_mm3).ceil() as usize + 1;
    let mut seen = vec![false; n];
    let mut markers = Vec::new();
    let mut rejected = Vec::new();
    let mut stack = Vec::new();
    let mut comp: Vec<usize> = Vec::new();
    for start in 0..n {
        if seen[start] || v.voxels[start] < s.threshold_hu {
            continue;
        }
        // Flood fill (6-connected).
        comp.clear();
        stack.clear();
        stack.push(start);
        seen[start] = true;
        while let Some(idx) = stack.pop() {
            comp.push(idx);
            let (i, j, k) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
            let mut visit = |ii: usize, jj: usize, kk: usize| {
                let m = (kk * ny + jj) * nx + ii;
                if !seen[m] && v.voxels[m] >= s.threshold_hu {
                    seen[m] = true;
                    stack.push(m);
                }
            };
            if i > 0 {
                visit(i - 1, j, k)
            }
            if i + 1 < nx {
                visit(i + 1, j, k)
            }
            if j > 0 {
                visit(i, j - 1, k)
            }
            if j + 1 < ny {
                visit(i, j + 1, k)
            }
            if k > 0 {
                visit(i, j, k - 1)
            }
            if k + 1 < nz {
                visit(i, j, k + 1)
            }
        }
        // Weighted centroid and second moments in mm.
        let mut wsum = 0.0;
        let mut c = Vector3::zeros();
        let mut peak = f32::NEG_INFINITY;
        for &idx in &comp {
            let (i, j, k) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
            let w = f64::from(v.voxels[idx] - s.threshold_hu) + 1.0;
            let p = v.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords;
            c += p * w;
            wsum += w;
            peak = peak.max(v.voxels[idx]);
        }
        c /= wsum;
        let volume_mm3 = comp.len() as f64 * voxel_mm3;
        let center = Point::new(c.x, c.y, c.z);
        if comp.len() > max_voxels || volume_mm3 > max_mm3 {
            rejected.push(Rejected { center, volume_mm3, reason: "too large for a marker (bone, contrast, metal)" });
            continue;
        }
        if volume_mm3 < min_mm3 {
            rejected.push(Rejected { center, volume_mm3, reason: "too small for a marker (noise)" });
            continue;
        }
        let mut cov = Matrix3::zeros();
        for &idx in &comp {
            let (i, j, k) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
            let d = v.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords - c;
            cov += d * d.transpose();
        }
        cov /= comp.len() as f64;
        // Each voxel spreads over its own extent: add the voxel's own second moment (s^2 / 12).
        for a in 0..3 {
            cov[(a, a)] += v.spacing_mm[a].powi(2) / 12.0;
        }
        let mut e: Vec<f64> = cov.symmetric_eigenvalues().iter().map(|x| x.max(1e-12).sqrt()).collect();
        e.sort_by(f64::total_cmp);
        let elongation = e[2] / e[0];
        if elongation > s.max_elongation {
            rejected.push(Rejected { center, volume_mm3, reason: "elongated (a wire, streak or vessel)" });
            continue;
        }
        let diag = v.spacing_mm.iter().map(|x| x * x).sum::<f64>().sqrt();
        markers.push(Fiducial {
            center,
            volume_mm3,
            peak_hu: peak,
            elongation,
            uncertainty_mm: diag / (comp.len() as f64).sqrt(),
        });
    }
    (markers, rejected)
}
