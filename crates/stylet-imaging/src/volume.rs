//! A CT volume with its geometry in the DICOM patient frame (LPS, mm).

use nalgebra::{Matrix3, Vector3};
use stylet_core::frame::{Ct, Grid, NotRigid, Point, Transform};

/// A scalar volume on a (possibly sheared) grid. Voxel `(i, j, k)` (column, row, slice) has its
/// centre at `origin + direction * diag(spacing) * (i, j, k)` in LPS millimetres.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    /// Columns, rows, slices.
    pub dims: [usize; 3],
    /// Spacing along each index, mm (column step, row step, slice step).
    pub spacing_mm: [f64; 3],
    /// Centre of voxel (0, 0, 0), LPS mm.
    pub origin: Point<Ct>,
    /// Unit step directions as columns: along i (the DICOM row direction), j (column direction), k
    /// (from one slice to the next; not perpendicular to the first two when the gantry is tilted).
    pub direction: Matrix3<f64>,
    /// Values (HU for CT, labels for label maps), `i` fastest, then `j`, then `k`.
    pub voxels: Vec<f32>,
}

/// Checks a grid read from a file header (NIfTI, NRRD), the spacing already split off: its unit
/// directions must be orthonormal, i.e. `ct_from_grid` a rotation and a translation, the slice
/// axis possibly mirrored (a voxel order, not a reflection of the patient). A scaled or sheared
/// header is refused, through the one rigidity check, [`Transform::try_from_rows`].
///
/// # Errors
/// [`NotRigid`], saying what fails and by how much.
pub(crate) fn check_rigid_grid(direction: &Matrix3<f64>, origin: &Vector3<f64>) -> Result<(), NotRigid> {
    let mirror = if direction.determinant() < 0.0 { -1.0 } else { 1.0 };
    let rows: [[f64; 4]; 4] = std::array::from_fn(|r| match r {
        3 => [0.0, 0.0, 0.0, 1.0],
        _ => [direction[(r, 0)], direction[(r, 1)], mirror * direction[(r, 2)], origin[r]],
    });
    Transform::<Ct, Grid>::try_from_rows(rows).map(|_| ())
}

impl Volume {
    /// The LPS position of a (fractional) voxel index.
    #[must_use]
    pub fn ct_from_index(&self, i: f64, j: f64, k: f64) -> Point<Ct> {
        let d = self.direction;
        let s = self.spacing_mm;
        let p = self.origin.to_nalgebra().coords
            + d.column(0) * (i * s[0])
            + d.column(1) * (j * s[1])
            + d.column(2) * (k * s[2]);
        Point::from_coords(p)
    }

    /// DICOM's ImageOrientationPatient: the row direction (`i`), then the column direction (`j`).
    #[must_use]
    pub(crate) fn image_orientation(&self) -> [f64; 6] {
        let d = self.direction;
        [d[(0, 0)], d[(1, 0)], d[(2, 0)], d[(0, 1)], d[(1, 1)], d[(2, 1)]]
    }

    /// The fractional voxel index of an LPS position.
    #[must_use]
    pub fn index_from_ct(&self, p: Point<Ct>) -> Option<Vector3<f64>> {
        let s = self.spacing_mm;
        let m = Matrix3::from_columns(&[
            self.direction.column(0) * s[0],
            self.direction.column(1) * s[1],
            self.direction.column(2) * s[2],
        ]);
        m.try_inverse().map(|inv| inv * (p - self.origin).to_nalgebra())
    }

    /// Value at integer index, if inside.
    #[must_use]
    pub fn get(&self, i: usize, j: usize, k: usize) -> Option<f32> {
        let [nx, ny, nz] = self.dims;
        (i < nx && j < ny && k < nz).then(|| self.voxels[(k * ny + j) * nx + i])
    }

    /// Value at the voxel nearest to an LPS position, if inside.
    #[must_use]
    pub fn sample_nearest(&self, p: Point<Ct>) -> Option<f32> {
        let idx = self.index_from_ct(p)?;
        let r = |x: f64| if x >= -0.5 { Some(x.round() as usize) } else { None };
        self.get(r(idx.x)?, r(idx.y)?, r(idx.z)?)
    }

    /// Trilinear interpolation at an LPS position; `None` outside the voxel centres.
    #[must_use]
    pub fn sample_linear(&self, p: Point<Ct>) -> Option<f64> {
        let f = self.index_from_ct(p)?;
        let [nx, ny, nz] = self.dims;
        let (i0, j0, k0) = (f.x.floor(), f.y.floor(), f.z.floor());
        if i0 < 0.0 || j0 < 0.0 || k0 < 0.0 || i0 + 1.0 >= nx as f64 || j0 + 1.0 >= ny as f64 || k0 + 1.0 >= nz as f64 {
            return None;
        }
        let (fx, fy, fz) = (f.x - i0, f.y - j0, f.z - k0);
        let (i0, j0, k0) = (i0 as usize, j0 as usize, k0 as usize);
        let at = |i: usize, j: usize, k: usize| f64::from(self.voxels[(k * ny + j) * nx + i]);
        let mut out = 0.0;
        for (dk, wk) in [(0, 1.0 - fz), (1, fz)] {
            for (dj, wj) in [(0, 1.0 - fy), (1, fy)] {
                for (di, wi) in [(0, 1.0 - fx), (1, fx)] {
                    out += wi * wj * wk * at(i0 + di, j0 + dj, k0 + dk);
                }
            }
        }
        Some(out)
    }

    /// Axis-aligned LPS bounds of the voxel centres: (min, max).
    #[must_use]
    pub fn bounds(&self) -> (Point<Ct>, Point<Ct>) {
        let [nx, ny, nz] = self.dims.map(|n| n.saturating_sub(1) as f64);
        let mut lo = Vector3::repeat(f64::INFINITY);
        let mut hi = Vector3::repeat(f64::NEG_INFINITY);
        for (i, j, k) in [
            (0.0, 0.0, 0.0),
            (nx, 0.0, 0.0),
            (0.0, ny, 0.0),
            (0.0, 0.0, nz),
            (nx, ny, 0.0),
            (nx, 0.0, nz),
            (0.0, ny, nz),
            (nx, ny, nz),
        ] {
            let p = self.ct_from_index(i, j, k).to_nalgebra().coords;
            lo = lo.inf(&p);
            hi = hi.sup(&p);
        }
        (Point::from_coords(lo), Point::from_coords(hi))
    }

    /// Smallest and largest value.
    #[must_use]
    pub fn value_range(&self) -> (f32, f32) {
        self.voxels.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
    }

    /// Checks that `other` lies on the same voxel grid (a label map against its CT): same
    /// dimensions, and voxel centres within `tolerance_mm` at the grid's corners. Returns what differs.
    ///
    /// # Errors
    /// A description of the first difference.
    pub fn check_same_grid(&self, other: &Volume, tolerance_mm: f64) -> Result<(), String> {
        if self.dims != other.dims {
            return Err(format!("dimensions {:?} differ from {:?}", other.dims, self.dims));
        }
        let [nx, ny, nz] = self.dims.map(|n| n.saturating_sub(1) as f64);
        for (i, j, k) in [(0.0, 0.0, 0.0), (nx, 0.0, 0.0), (0.0, ny, 0.0), (0.0, 0.0, nz), (nx, ny, nz)] {
            let (a, b) = (self.ct_from_index(i, j, k), other.ct_from_index(i, j, k));
            let d = a.distance_mm(b);
            if d > tolerance_mm {
                return Err(format!(
                    "voxel ({i}, {j}, {k}) is at {:?} in one and {:?} in the other ({d:.3} mm apart)",
                    a.to_array(),
                    b.to_array()
                ));
            }
        }
        Ok(())
    }

    /// Whether the grid is sheared (gantry tilt): slice direction not perpendicular to the slices.
    #[must_use]
    pub fn tilt_deg(&self) -> f64 {
        let n = self.direction.column(0).cross(&self.direction.column(1));
        n.dot(&self.direction.column(2)).abs().clamp(-1.0, 1.0).acos().to_degrees()
    }
}
