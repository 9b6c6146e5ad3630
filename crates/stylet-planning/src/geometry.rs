//! Geometry helpers: distance from a point to a prolate spheroid's surface, connected components.

use nalgebra::Vector3;

/// Root of Eberly's ellipse-distance function F(s) = (n0/(s+r0))^2 + (z1/(s+1))^2 - 1, which is
/// convex and decreasing on the bracket: Newton from the bracket's left end (where F >= 0)
/// converges monotonically; bisection takes over should a step leave the bracket.
fn get_root(r0: f64, z0: f64, z1: f64, g: f64) -> f64 {
    let n0 = r0 * z0;
    let f = |s: f64| (n0 / (s + r0)).powi(2) + (z1 / (s + 1.0)).powi(2) - 1.0;
    let (mut lo, mut hi) = if g < 0.0 { (z1 - 1.0, 0.0) } else { (0.0, n0.hypot(z1) - 1.0) };
    let mut s = lo;
    for _ in 0..64 {
        let fs = f(s);
        if fs.abs() < 1e-13 {
            return s;
        }
        if fs > 0.0 {
            lo = s;
        } else {
            hi = s;
        }
        let d = -2.0 * n0 * n0 / (s + r0).powi(3) - 2.0 * z1 * z1 / (s + 1.0).powi(3);
        let next = s - fs / d;
        s = if next.is_finite() && next > lo && next < hi { next } else { 0.5 * (lo + hi) };
        if hi - lo < 1e-14 * (1.0 + hi.abs()) {
            break;
        }
    }
    s
}

/// Distance from (y0, y1) (both >= 0) to the ellipse with semi-axes e0 >= e1 (Eberly, "Distance
/// from a Point to an Ellipse, an Ellipsoid, or a Hyperellipsoid").
fn ellipse_distance(e0: f64, e1: f64, y0: f64, y1: f64) -> f64 {
    if y1 > 0.0 {
        if y0 > 0.0 {
            let (z0, z1) = (y0 / e0, y1 / e1);
            let g = z0 * z0 + z1 * z1 - 1.0;
            if g != 0.0 {
                let r0 = (e0 / e1) * (e0 / e1);
                let sbar = get_root(r0, z0, z1, g);
                let x0 = r0 * y0 / (sbar + r0);
                let x1 = y1 / (sbar + 1.0);
                ((x0 - y0).powi(2) + (x1 - y1).powi(2)).sqrt()
            } else {
                0.0
            }
        } else {
            (y1 - e1).abs()
        }
    } else {
        let (numer0, denom0) = (e0 * y0, e0 * e0 - e1 * e1);
        if numer0 < denom0 {
            let xde0 = numer0 / denom0;
            let x0 = e0 * xde0;
            let x1 = e1 * (1.0 - xde0 * xde0).max(0.0).sqrt();
            ((x0 - y0).powi(2) + x1 * x1).sqrt()
        } else {
            (y0 - e0).abs()
        }
    }
}

/// A prolate spheroid: centre, unit axis, semi-axes (along the axis, across it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Spheroid {
    /// Centre, LPS mm.
    pub(crate) centre: Vector3<f64>,
    /// Unit axis.
    pub(crate) axis: Vector3<f64>,
    /// Semi-axis along the axis, mm.
    pub(crate) a: f64,
    /// Semi-axis across, mm.
    pub(crate) b: f64,
}

impl Spheroid {
    /// `(u/a)^2 + (v/b)^2` of `p` (u along the axis, v across): below 1 inside.
    fn level(&self, p: &Vector3<f64>) -> f64 {
        let d = p - self.centre;
        let u = d.dot(&self.axis);
        (u / self.a).powi(2) + (d.norm_squared() - u * u).max(0.0) / (self.b * self.b)
    }

    /// Signed depth of `p`: distance to the surface, positive inside, negative outside.
    #[must_use]
    pub(crate) fn depth(&self, p: &Vector3<f64>) -> f64 {
        let d = p - self.centre;
        let u = d.dot(&self.axis).abs();
        let v = (d - self.axis * d.dot(&self.axis)).norm();
        let (e0, e1, y0, y1) = if self.a >= self.b { (self.a, self.b, u, v) } else { (self.b, self.a, v, u) };
        let dist = ellipse_distance(e0, e1, y0, y1);
        if self.level(p) < 1.0 {
            dist
        } else {
            -dist
        }
    }
}

/// 6-connected components of `mask`: a component id per voxel (0 = none, 1.. by decreasing
/// size) and the sizes (index 0 unused).
#[must_use]
pub(crate) fn components(mask: &[bool], dims: [usize; 3]) -> (Vec<u32>, Vec<usize>) {
    let [nx, ny, nz] = dims;
    let mut id = vec![0u32; mask.len()];
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || id[start] != 0 {
            continue;
        }
        let c = sizes.len() as u32;
        sizes.push(0);
        id[start] = c;
        stack.push(start);
        while let Some(v) = stack.pop() {
            sizes[c as usize] += 1;
            let (i, j, k) = (v % nx, (v / nx) % ny, v / (nx * ny));
            let mut visit = |w: usize| {
                if mask[w] && id[w] == 0 {
                    id[w] = c;
                    stack.push(w);
                }
            };
            if i > 0 {
                visit(v - 1);
            }
            if i + 1 < nx {
                visit(v + 1);
            }
            if j > 0 {
                visit(v - nx);
            }
            if j + 1 < ny {
                visit(v + nx);
            }
            if k > 0 {
                visit(v - nx * ny);
            }
            if k + 1 < nz {
                visit(v + nx * ny);
            }
        }
    }
    // Renumber by decreasing size.
    let mut order: Vec<usize> = (1..sizes.len()).collect();
    order.sort_by(|a, b| sizes[*b].cmp(&sizes[*a]));
    let mut remap = vec![0u32; sizes.len()];
    for (new, old) in order.iter().enumerate() {
        remap[*old] = new as u32 + 1;
    }
    let sorted: Vec<usize> = std::iter::once(0).chain(order.iter().map(|o| sizes[*o])).collect();
    for x in &mut id {
        *x = remap[*x as usize];
    }
    (id, sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spheroid_depth_against_dense_surface_sampling() {
        let s = Spheroid { centre: Vector3::new(1.0, 2.0, 3.0), axis: Vector3::new(0.0, 0.6, 0.8), a: 25.0, b: 15.0 };
        // The surface, densely sampled in the spheroid's own frame.
        let e1 = Vector3::new(1.0, 0.0, 0.0);
        let e2 = s.axis.cross(&e1);
        let mut surface = Vec::new();
        for i in 0..400 {
            let th = std::f64::consts::PI * f64::from(i) / 399.0;
            for j in 0..120 {
                let ph = std::f64::consts::TAU * f64::from(j) / 120.0;
                surface.push(s.centre + s.axis * (s.a * th.cos()) + (e1 * ph.cos() + e2 * ph.sin()) * (s.b * th.sin()));
            }
        }
        for p in [
            Vector3::new(1.0, 2.0, 3.0),
            Vector3::new(10.0, 5.0, 3.0),
            Vector3::new(30.0, -20.0, 10.0),
            Vector3::new(1.0, 2.0 + 0.6 * 24.0, 3.0 + 0.8 * 24.0),
            Vector3::new(-3.0, 40.0, 50.0),
        ] {
            let brute = surface.iter().map(|q| (q - p).norm()).fold(f64::INFINITY, f64::min);
            let d = s.depth(&p);
            assert!((d.abs() - brute).abs() < 0.05, "{p:?}: {d} vs {brute}");
            // Inside by the implicit equation.
            let (u, r) = ((p - s.centre).dot(&s.axis), p - s.centre);
            assert_eq!(d > 0.0, (u / s.a).powi(2) + (r.norm_squared() - u * u) / (s.b * s.b) <= 1.0);
        }
    }

    #[test]
    fn components_by_size() {
        let dims = [5, 1, 1];
        let (id, sizes) = components(&[true, false, true, true, true], dims);
        assert_eq!(id, vec![2, 0, 1, 1, 1]);
        assert_eq!(sizes, vec![0, 3, 1]);
    }
}

/// The bounding box of the true voxels of `mask`: (lowest index, size), or None when empty.
#[must_use]
pub(crate) fn bbox(mask: &[bool], dims: [usize; 3]) -> Option<([usize; 3], [usize; 3])> {
    let [nx, ny, _] = dims;
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    // Row by row: only the first and last true voxel of each row matter.
    for (r, row) in mask.chunks(nx.max(1)).enumerate() {
        let Some(first) = row.iter().position(|m| *m) else { continue };
        let last = row.iter().rposition(|m| *m).unwrap_or(first);
        let (j, k) = (r % ny, r / ny);
        lo = [lo[0].min(first), lo[1].min(j), lo[2].min(k)];
        hi = [hi[0].max(last), hi[1].max(j), hi[2].max(k)];
    }
    (lo[0] != usize::MAX).then(|| (lo, [hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1]))
}

/// A box of a volume (lowest index and size) and copies of fields into and out of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Crop {
    /// The whole volume's size.
    pub(crate) full: [usize; 3],
    /// Lowest index of the box.
    pub(crate) lo: [usize; 3],
    /// Size of the box.
    pub(crate) dims: [usize; 3],
}

impl Crop {
    /// The box around `mask`'s true voxels grown by `margin` voxels (clamped), if any.
    #[must_use]
    pub(crate) fn around(mask: &[bool], full: [usize; 3], margin: usize) -> Option<Self> {
        let (lo, size) = bbox(mask, full)?;
        Some(Self::grown(full, lo, size, margin))
    }

    /// The box at `lo` of `size` grown by `margin` voxels on every side, clamped to the volume.
    fn grown(full: [usize; 3], lo: [usize; 3], size: [usize; 3], margin: usize) -> Self {
        let lo2 = [lo[0].saturating_sub(margin), lo[1].saturating_sub(margin), lo[2].saturating_sub(margin)];
        let hi = [
            (lo[0] + size[0] + margin).min(full[0]),
            (lo[1] + size[1] + margin).min(full[1]),
            (lo[2] + size[2] + margin).min(full[2]),
        ];
        Self { full, lo: lo2, dims: [hi[0] - lo2[0], hi[1] - lo2[1], hi[2] - lo2[2]] }
    }

    /// The box around the voxels of the full-volume `field` that lie in this box and satisfy
    /// `is`, grown by `margin` voxels (clamped to the volume), if any: a bounding box without a
    /// pass over the whole volume when this box is known to hold them all.
    #[must_use]
    pub(crate) fn around_within<T: Copy>(&self, field: &[T], is: impl Fn(T) -> bool, margin: usize) -> Option<Self> {
        let local: Vec<bool> = self.extract(field).into_iter().map(is).collect();
        let (lo, size) = bbox(&local, self.dims)?;
        let lo = [lo[0] + self.lo[0], lo[1] + self.lo[1], lo[2] + self.lo[2]];
        Some(Self::grown(self.full, lo, size, margin))
    }

    /// Full-volume index of a box index.
    #[must_use]
    pub(crate) fn full_index(&self, i: usize) -> usize {
        let [cx, cy, _] = self.dims;
        let (a, b, c) = (i % cx, (i / cx) % cy, i / (cx * cy));
        ((c + self.lo[2]) * self.full[1] + b + self.lo[1]) * self.full[0] + a + self.lo[0]
    }

    /// Box index of a full-volume index, when inside.
    #[must_use]
    pub(crate) fn index(&self, idx: usize) -> Option<usize> {
        let [nx, ny, _] = self.full;
        let (i, j, k) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
        let (a, b, c) = (i.checked_sub(self.lo[0])?, j.checked_sub(self.lo[1])?, k.checked_sub(self.lo[2])?);
        (a < self.dims[0] && b < self.dims[1] && c < self.dims[2]).then(|| (c * self.dims[1] + b) * self.dims[0] + a)
    }

    /// The box's part of a full-volume field.
    #[must_use]
    pub(crate) fn extract<T: Copy>(&self, field: &[T]) -> Vec<T> {
        let mut out = Vec::with_capacity(self.dims.iter().product());
        for c in 0..self.dims[2] {
            for b in 0..self.dims[1] {
                let start = ((c + self.lo[2]) * self.full[1] + b + self.lo[1]) * self.full[0] + self.lo[0];
                out.extend_from_slice(&field[start..start + self.dims[0]]);
            }
        }
        out
    }
}
