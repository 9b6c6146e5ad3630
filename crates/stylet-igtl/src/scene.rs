//! The procedure's scene as 3D Slicer loads it: CT volumes as IMAGE, ablation zones and the
//! needle path as POLYDATA, all in RAS millimetres (Stylet's CT frame is LPS: converted here,
//! once). Pure functions from the procedure's geometry to messages' bodies.

use stylet_core::frame::{Ct, Point};

use crate::{ras_from_lps, Image, PolyData};

/// Why a volume cannot be an IMAGE.
#[derive(Clone, Debug, PartialEq, Eq, docsplay::Display, thiserror::Error)]
pub enum SceneError {
    /// a volume of {0:?} voxels does not fit an IMAGE (at most 65535 along each axis)
    TooLarge([usize; 3]),
    /// the volume has {got} values for {dims:?} voxels
    Values {
        /// The grid's size.
        dims: [usize; 3],
        /// Values given.
        got: usize,
    },
}

/// A CT volume (HU, LPS grid) as an IMAGE in RAS: int16 little-endian pixels (HU rounded and
/// clamped), the axes scaled by the spacing and the volume's centre as OpenIGTLink wants them.
/// `origin` is the centre of voxel (0, 0, 0), `direction` the unit steps along i, j, k (columns).
///
/// # Errors
/// [`SceneError`]: an axis longer than 65535 voxels, or a value count that is not the grid's.
pub fn ct_image(
    dims: [usize; 3],
    spacing_mm: [f64; 3],
    origin: Point<Ct>,
    direction: [[f64; 3]; 3],
    hu: &[f32],
) -> Result<Image, SceneError> {
    let size = dims.map(|d| u16::try_from(d).ok());
    let [Some(sx), Some(sy), Some(sz)] = size else { return Err(SceneError::TooLarge(dims)) };
    if hu.len() != dims.iter().product::<usize>() {
        return Err(SceneError::Values { dims, got: hu.len() });
    }
    // Each index step in RAS, scaled by its spacing; the centre of the grid (OpenIGTLink places
    // an image by its centre: voxel (size - 1) / 2 along each axis).
    let step = |c: usize| ras_from_lps(direction[c].map(|x| x * spacing_mm[c]));
    let steps = [step(0), step(1), step(2)];
    let o = ras_from_lps(origin.to_array());
    let centre: [f64; 3] =
        std::array::from_fn(|r| o[r] + (0..3).map(|c| steps[c][r] * (dims[c] as f64 - 1.0) / 2.0).sum::<f64>());
    let mut matrix = [0.0f32; 12];
    for c in 0..3 {
        for r in 0..3 {
            matrix[3 * c + r] = steps[c][r] as f32;
        }
        matrix[9 + c] = centre[c] as f32;
    }
    let mut pixels = Vec::with_capacity(2 * hu.len());
    for v in hu {
        let v = v.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
        pixels.extend_from_slice(&v.to_le_bytes());
    }
    Ok(Image {
        header_version: 1,
        components: 1,
        scalar_type: 4,
        endian: 2,
        coordinate: 1,
        size: [sx, sy, sz],
        matrix,
        subvolume_offset: [0, 0, 0],
        subvolume_size: [sx, sy, sz],
        pixels,
    })
}

/// Rings from pole to pole and segments around the axis of a zone's surface: the triangulated
/// surface's volume is within 0.5 % of the ellipsoid's.
const RINGS: u32 = 32;
const SEGMENTS: u32 = 64;

/// An ablation zone, the ellipsoid of `long_mm` along `axis` (unit, CT) and `short_mm` across
/// it (full lengths) centred at `centre`, as a closed triangle surface in RAS, its triangles
/// facing outwards.
#[must_use]
pub fn ellipsoid(centre: Point<Ct>, axis: [f64; 3], long_mm: f64, short_mm: f64) -> PolyData {
    let (u, v) = across(axis);
    let c = centre.to_array();
    let (a, b) = (long_mm / 2.0, short_mm / 2.0);
    let mut points = Vec::new();
    let mut at = |along: f64, around: [f64; 2]| {
        let p: [f64; 3] = std::array::from_fn(|r| c[r] + axis[r] * along + (u[r] * around[0] + v[r] * around[1]));
        points.push(ras_from_lps(p).map(|x| x as f32));
    };
    // The poles, then the rings between them.
    at(-a, [0.0, 0.0]);
    at(a, [0.0, 0.0]);
    for ring in 1..RINGS {
        let theta = std::f64::consts::PI * f64::from(ring) / f64::from(RINGS);
        for seg in 0..SEGMENTS {
            let phi = std::f64::consts::TAU * f64::from(seg) / f64::from(SEGMENTS);
            at(-a * theta.cos(), [b * theta.sin() * phi.cos(), b * theta.sin() * phi.sin()]);
        }
    }
    let ring = |r: u32, s: u32| 2 + (r - 1) * SEGMENTS + s % SEGMENTS;
    let mut polygons = Vec::new();
    for s in 0..SEGMENTS {
        polygons.push(vec![0, ring(1, s + 1), ring(1, s)]);
        polygons.push(vec![1, ring(RINGS - 1, s), ring(RINGS - 1, s + 1)]);
        for r in 1..RINGS - 1 {
            polygons.push(vec![ring(r, s), ring(r, s + 1), ring(r + 1, s + 1)]);
            polygons.push(vec![ring(r, s), ring(r + 1, s + 1), ring(r + 1, s)]);
        }
    }
    PolyData { points, polygons, ..PolyData::default() }
}

/// A polyline through `points` (CT), in RAS.
#[must_use]
pub fn polyline(points: &[Point<Ct>]) -> PolyData {
    let n = u32::try_from(points.len()).unwrap_or(u32::MAX);
    PolyData {
        points: points.iter().map(|p| ras_from_lps(p.to_array()).map(|x| x as f32)).collect(),
        lines: vec![(0..n).collect()],
        ..PolyData::default()
    }
}

/// A voxel grid's place in the CT (LPS): voxel (0, 0, 0)'s centre, the unit steps along i, j,
/// k (columns of `direction`), and the spacing along each, mm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    /// Voxels along i, j, k.
    pub dims: [usize; 3],
    /// Spacing along i, j, k, mm.
    pub spacing_mm: [f64; 3],
    /// Centre of voxel (0, 0, 0).
    pub origin: Point<Ct>,
    /// Unit steps along i, j, k.
    pub direction: [[f64; 3]; 3],
}

impl Grid {
    /// Where index coordinates (voxel centres at whole numbers) lie, LPS mm.
    fn lps(&self, at: [f64; 3]) -> [f64; 3] {
        let o = self.origin.to_array();
        std::array::from_fn(|r| o[r] + (0..3).map(|c| self.direction[c][r] * self.spacing_mm[c] * at[c]).sum::<f64>())
    }

    /// Whether the steps i, j, k make a left-handed frame (a mirrored slice order).
    fn mirrored(&self) -> bool {
        let [a, b, c] = self.direction;
        let det = a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
            + a[2] * (b[0] * c[1] - b[1] * c[0]);
        det < 0.0
    }
}

/// The boundary of a set of voxels (an organ at risk near the path, say) as a closed surface of
/// quads in RAS facing outwards: a face wherever a voxel for which `inside(i, j, k)` holds
/// meets one for which it does not. Only voxels in the index box `lo..hi` are visited (clamped
/// to the grid); a structure that leaves the box is closed where the box cuts it.
#[must_use]
pub fn voxel_surface(
    grid: &Grid,
    lo: [usize; 3],
    hi: [usize; 3],
    inside: impl Fn(usize, usize, usize) -> bool,
) -> PolyData {
    let hi: [usize; 3] = std::array::from_fn(|a| hi[a].min(grid.dims[a]));
    let within = |v: [usize; 3]| (0..3).all(|a| v[a] >= lo[a] && v[a] < hi[a]);
    let mut corners: std::collections::HashMap<[usize; 3], u32> = std::collections::HashMap::new();
    let mut points: Vec<[f32; 3]> = Vec::new();
    let mut polygons = Vec::new();
    let mirrored = grid.mirrored();
    let mut corner = |c: [usize; 3]| -> u32 {
        *corners.entry(c).or_insert_with(|| {
            points.push(ras_from_lps(grid.lps(c.map(|x| x as f64 - 0.5))).map(|x| x as f32));
            u32::try_from(points.len() - 1).unwrap_or(u32::MAX)
        })
    };
    for k in lo[2]..hi[2] {
        for j in lo[1]..hi[1] {
            for i in lo[0]..hi[0] {
                if !inside(i, j, k) {
                    continue;
                }
                let v = [i, j, k];
                for a in 0..3 {
                    for up in [false, true] {
                        // The neighbour across this face: outside the box or the set, a face.
                        let mut n = v;
                        let open = if up {
                            n[a] += 1;
                            !within(n) || !inside(n[0], n[1], n[2])
                        } else {
                            v[a] == 0 || {
                                n[a] -= 1;
                                !within(n) || !inside(n[0], n[1], n[2])
                            }
                        };
                        if !open {
                            continue;
                        }
                        // The face's corners, counter-clockwise about +a in (b, c) when facing
                        // up, reversed when facing down (and when the grid is mirrored).
                        let (b, c) = ((a + 1) % 3, (a + 2) % 3);
                        let mut quad: Vec<u32> = [(0, 0), (1, 0), (1, 1), (0, 1)]
                            .iter()
                            .map(|&(db, dc)| {
                                let mut p = v;
                                p[a] += usize::from(up);
                                p[b] += db;
                                p[c] += dc;
                                corner(p)
                            })
                            .collect();
                        if up == mirrored {
                            quad.reverse();
                        }
                        polygons.push(quad);
                    }
                }
            }
        }
    }
    PolyData { points, polygons, ..PolyData::default() }
}

/// Two unit vectors across `axis` and across each other, right-handed with it.
fn across(axis: [f64; 3]) -> ([f64; 3], [f64; 3]) {
    let norm = |x: [f64; 3]| {
        let n = (x[0] * x[0] + x[1] * x[1] + x[2] * x[2]).sqrt();
        x.map(|c| c / n)
    };
    let cross =
        |a: [f64; 3], b: [f64; 3]| [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
    let helper = if axis[0].abs() < 0.9 { [1.0, 0.0, 0.0] } else { [0.0, 1.0, 0.0] };
    let u = norm(cross(axis, helper));
    (u, cross(axis, u))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The volume a closed, outward-facing triangle surface encloses (the divergence theorem).
    fn enclosed_volume(p: &PolyData) -> f64 {
        p.polygons
            .iter()
            .map(|t| {
                let [a, b, c] = [0, 1, 2].map(|i| p.points[t[i] as usize].map(f64::from));
                (a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
                    + a[2] * (b[0] * c[1] - b[1] * c[0]))
                    / 6.0
            })
            .sum()
    }

    #[test]
    fn a_zones_surface_encloses_the_ellipsoids_volume_within_half_a_percent() {
        let axis = {
            let a: [f64; 3] = [0.3, -0.5, 0.8];
            let n = a.iter().map(|x| x * x).sum::<f64>().sqrt();
            a.map(|x| x / n)
        };
        let z = ellipsoid(Point::new(-40.0, 12.0, 300.0), axis, 40.0, 30.0);
        let exact = 4.0 / 3.0 * std::f64::consts::PI * 20.0 * 15.0 * 15.0;
        let got = enclosed_volume(&z);
        assert!((got / exact - 1.0).abs() < 0.005, "{got} vs {exact}");
        assert!(got < exact, "an inscribed surface encloses less: {got} vs {exact}");
        // Every point lies on the ellipsoid (in RAS: the centre's x and y negated).
        let c = ras_from_lps([-40.0, 12.0, 300.0]);
        let a = ras_from_lps(axis);
        for p in &z.points {
            let d: [f64; 3] = std::array::from_fn(|r| f64::from(p[r]) - c[r]);
            let along = d.iter().zip(a).map(|(x, y)| x * y).sum::<f64>();
            let off = (d.iter().map(|x| x * x).sum::<f64>() - along * along).max(0.0).sqrt();
            assert!(((along / 20.0).powi(2) + (off / 15.0).powi(2) - 1.0).abs() < 1e-4, "{p:?}");
        }
    }

    #[test]
    fn a_cts_image_places_its_centre_and_axes_in_ras() {
        // 4 x 3 x 2 voxels of 0.5 x 0.5 x 2 mm, the axes LPS-aligned, voxel (0,0,0) at (10, 20, 30).
        let eye = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let hu: Vec<f32> = (0..24).map(|i| i as f32 * 100.0 - 1000.4).collect();
        let img = ct_image([4, 3, 2], [0.5, 0.5, 2.0], Point::new(10.0, 20.0, 30.0), eye, &hu).unwrap();
        assert_eq!((img.size, img.coordinate, img.scalar_type, img.endian), ([4, 3, 2], 1, 4, 2));
        // i and j flip (L -> R, P -> A); k stays; the centre is voxel (1.5, 1, 0.5), in RAS.
        assert_eq!(img.matrix, [-0.5, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 0.0, 2.0, -10.75, -20.5, 31.0]);
        assert_eq!(i16::from_le_bytes([img.pixels[0], img.pixels[1]]), -1000);
        assert_eq!(img.pixels.len(), 48);
        assert_eq!(
            ct_image([4, 3, 2], [1.0; 3], Point::new(0.0, 0.0, 0.0), eye, &hu[..5]),
            Err(SceneError::Values { dims: [4, 3, 2], got: 5 })
        );
        assert_eq!(
            ct_image([70_000, 1, 1], [1.0; 3], Point::new(0.0, 0.0, 0.0), eye, &[]),
            Err(SceneError::TooLarge([70_000, 1, 1]))
        );
    }

    /// The volume a closed, outward-facing surface of flat polygons encloses (each a fan of
    /// triangles).
    fn enclosed_volume_of_polygons(p: &PolyData) -> f64 {
        let fans = p.polygons.iter().flat_map(|q| (1..q.len() - 1).map(move |i| vec![q[0], q[i], q[i + 1]])).collect();
        enclosed_volume(&PolyData { points: p.points.clone(), polygons: fans, ..PolyData::default() })
    }

    #[test]
    fn a_voxel_sets_surface_is_closed_faces_out_and_encloses_its_voxels() {
        let grid = Grid {
            dims: [6, 5, 4],
            spacing_mm: [0.8, 0.7, 2.0],
            origin: Point::new(-30.0, 12.0, 250.0),
            direction: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        };
        let voxel_mm3 = 0.8 * 0.7 * 2.0;
        // One voxel: a box of 8 corners and 6 faces.
        let one = voxel_surface(&grid, [0; 3], [6, 5, 4], |i, j, k| (i, j, k) == (2, 2, 1));
        assert_eq!((one.points.len(), one.polygons.len()), (8, 6));
        assert!((enclosed_volume_of_polygons(&one) - voxel_mm3).abs() < 1e-4);
        // An L of voxels at the grid's edge: every face shared inside is left out.
        let l = |i: usize, j: usize, k: usize| k == 0 && (j == 0 && i < 3 || i == 0 && j < 3);
        let s = voxel_surface(&grid, [0; 3], [6, 5, 4], l);
        assert_eq!(s.polygons.len(), 5 * 6 - 2 * 4);
        assert!((enclosed_volume_of_polygons(&s) - 5.0 * voxel_mm3).abs() < 1e-3);
        // Mirrored slices (k downwards): still facing out. A box cuts a structure and closes it.
        let down = Grid { direction: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]], ..grid };
        let cut = voxel_surface(&down, [0; 3], [6, 2, 4], |_, _, _| true);
        assert!((enclosed_volume_of_polygons(&cut) - 6.0 * 2.0 * 4.0 * voxel_mm3).abs() < 1e-2);
    }

    #[test]
    fn a_path_is_one_line_through_its_points_in_ras() {
        let p = polyline(&[Point::new(1.0, 2.0, 3.0), Point::new(4.0, 5.0, 6.0)]);
        assert_eq!(p.points, vec![[-1.0, -2.0, 3.0], [-4.0, -5.0, 6.0]]);
        assert_eq!(p.lines, vec![vec![0, 1]]);
    }
}
