//! The post-ablation contrast CT (issue 18): what the CT after an ablation shows in the portal
//! venous phase. The ablation zone is coagulated tissue that no longer takes up contrast (a
//! non-enhancing region, ~30-40 HU, against enhanced liver ~100-120 HU), ringed by a thin
//! hyperaemic rim that enhances more than the liver; gas bubbles from the heating lie in it near
//! the antenna, and the needle tract runs out of it to the skin. The liver has moved with the
//! breath-hold since planning (drawn by [`crate::phantom::displace_liver`]).
//!
//! [`draw_ablation`] draws a zone into any CT (the phantom's, or a real one in a test);
//! [`render_post_ablation`] makes the phantom's whole post-ablation CT from its planning CT.

use nalgebra::Vector3;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stylet_core::frame::{Ct, Point, Vector};
use stylet_imaging::Volume;

/// How the post-ablation CT looks (HU, mm).
#[derive(Clone, Debug, PartialEq)]
pub struct Look {
    /// Coagulated tissue, HU.
    pub zone_hu: f64,
    /// The hyperaemic rim, HU, and its width, mm.
    pub rim_hu: f64,
    /// Rim width, mm.
    pub rim_mm: f64,
    /// Gas, HU.
    pub gas_hu: f64,
    /// Gas bubbles near the antenna, how many and how large (radius, mm).
    pub bubbles: usize,
    /// Bubble radius, mm.
    pub bubble_radius_mm: f64,
    /// The needle tract's radius, mm (gas and coagulum along it).
    pub tract_radius_mm: f64,
    /// Image noise on what is drawn, HU (the CT's own).
    pub noise_hu: f64,
}

impl Default for Look {
    fn default() -> Self {
        Look {
            zone_hu: 35.0,
            rim_hu: 150.0,
            rim_mm: 1.5,
            gas_hu: -800.0,
            bubbles: 6,
            bubble_radius_mm: 1.2,
            tract_radius_mm: 0.6,
            noise_hu: 15.0,
        }
    }
}

/// The phantom's contrast: what each label's voxels gain in the portal venous phase, HU (the
/// planning CT is unenhanced; its vessels already carry contrast).
const ENHANCEMENT: [(u8, f64); 2] = [(2, 50.0), (3, 55.0)];

/// Draws an ablation zone (`zone`, a mask on `ct`'s grid) into `ct` where `tissue` allows it
/// (the liver and what lies in it): the zone at `look.zone_hu`, the rim around it, gas bubbles
/// near the antenna line `tract` (tip first) and the tract itself out to the skin, each with the
/// CT's noise. Random parts from `seed`.
pub fn draw_ablation(
    ct: &mut Volume,
    zone: &[bool],
    tissue: &[bool],
    tract: Option<(Point<Ct>, Point<Ct>)>,
    look: &Look,
    seed: u64,
) {
    let [nx, ny, nz] = ct.dims;
    if zone.len() != nx * ny * nz || tissue.len() != zone.len() {
        return;
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let noise = |rng: &mut SmallRng| {
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * look.noise_hu
    };
    // The box around the zone and its rim.
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for (idx, _) in zone.iter().enumerate().filter(|(_, z)| **z) {
        let ijk = [idx % nx, (idx / nx) % ny, idx / (nx * ny)];
        for d in 0..3 {
            lo[d] = lo[d].min(ijk[d]);
            hi[d] = hi[d].max(ijk[d]);
        }
    }
    if lo[0] == usize::MAX {
        return;
    }
    let pad = [0, 1, 2].map(|d| (look.rim_mm / ct.spacing_mm[d]).ceil() as usize + 1);
    let lo = [0, 1, 2].map(|d| lo[d].saturating_sub(pad[d]));
    let hi = [0, 1, 2].map(|d| (hi[d] + pad[d]).min(ct.dims[d] - 1));
    let n = [0, 1, 2].map(|d| hi[d] - lo[d] + 1);
    let at = |i: usize, j: usize, k: usize| ((lo[2] + k) * ny + lo[1] + j) * nx + lo[0] + i;
    let mut inside = Vec::with_capacity(n[0] * n[1] * n[2]);
    for k in 0..n[2] {
        for j in 0..n[1] {
            for i in 0..n[0] {
                inside.push(zone[at(i, j, k)]);
            }
        }
    }
    let to_zone = stylet_planning::edt::edt(&inside, n, ct.spacing_mm);
    for k in 0..n[2] {
        for j in 0..n[1] {
            for i in 0..n[0] {
                let (l, g) = ((k * n[1] + j) * n[0] + i, at(i, j, k));
                if !tissue[g] {
                    continue;
                }
                if inside[l] {
                    ct.voxels[g] = (look.zone_hu + noise(&mut rng)) as f32;
                } else if f64::from(to_zone[l]) <= look.rim_mm {
                    ct.voxels[g] = (look.rim_hu + noise(&mut rng)) as f32;
                }
            }
        }
    }
    let Some((tip, entry)) = tract else { return };
    let (tip, entry) = (tip.to_nalgebra().coords, entry.to_nalgebra().coords);
    let axis = (entry - tip).normalize();
    // Bubbles: within the zone, near the antenna's last centimetres.
    let mut placed = 0;
    for _ in 0..look.bubbles * 20 {
        if placed == look.bubbles {
            break;
        }
        let along = rng.gen_range(0.0..25.0);
        let off = Vector3::new(rng.gen_range(-4.0..4.0), rng.gen_range(-4.0..4.0), rng.gen_range(-4.0..4.0));
        let c = tip + axis * along + off;
        let inside_zone = ct
            .index_from_ct(Point::from_coords(c))
            .map(|v| [0, 1, 2].map(|d| v[d].round() as usize))
            .is_some_and(|[i, j, k]| i < nx && j < ny && k < nz && zone[(k * ny + j) * nx + i]);
        if inside_zone {
            fill_ball(ct, c, look.bubble_radius_mm, look.gas_hu);
            placed += 1;
        }
    }
    // The tract: from the tip out along the shaft to the entry.
    let length = (entry - tip).norm();
    let step = 0.5 * ct.spacing_mm.iter().copied().fold(f64::INFINITY, f64::min);
    let mut t = 0.0;
    while t <= length {
        fill_ball(ct, tip + axis * t, look.tract_radius_mm, look.gas_hu * 0.6);
        t += step;
    }
}

/// Sets every voxel within `radius_mm` of `c` to `hu`.
fn fill_ball(ct: &mut Volume, c: Vector3<f64>, radius_mm: f64, hu: f64) {
    let [nx, ny, nz] = ct.dims;
    let Some(ci) = ct.index_from_ct(Point::from_coords(c)) else { return };
    let reach = [0, 1, 2].map(|d| (radius_mm / ct.spacing_mm[d]).ceil() as i64 + 1);
    for dk in -reach[2]..=reach[2] {
        for dj in -reach[1]..=reach[1] {
            for di in -reach[0]..=reach[0] {
                let (i, j, k) = (ci[0].round() as i64 + di, ci[1].round() as i64 + dj, ci[2].round() as i64 + dk);
                if i < 0 || j < 0 || k < 0 || i >= nx as i64 || j >= ny as i64 || k >= nz as i64 {
                    continue;
                }
                let p = ct.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords;
                if (p - c).norm() <= radius_mm {
                    ct.voxels[(k as usize * ny + j as usize) * nx + i as usize] = hu as f32;
                }
            }
        }
    }
}

/// One ablation as the post-ablation CT shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Ablated {
    /// The true zone: a mask on the planning CT's grid.
    pub zone: Vec<bool>,
    /// The antenna's tip when it ablated.
    pub tip: Point<Ct>,
    /// Where the needle entered the skin.
    pub entry: Point<Ct>,
}

/// The phantom's post-ablation contrast CT: the planning CT `planning` (unenhanced) with the
/// liver, its tumours and what lies in it enhanced, the true ablation zones drawn, the liver
/// then displaced by `liver_shift` (the breath-hold's), and the noise of a scan at
/// `dose_fraction`.
#[must_use]
pub fn render_post_ablation(
    planning: &Volume,
    labels: &Volume,
    zones: &[Ablated],
    liver_shift: Vector<Ct>,
    look: &Look,
    dose_fraction: f64,
    seed: u64,
) -> Volume {
    let mut ct = planning.clone();
    for (v, l) in ct.voxels.iter_mut().zip(&labels.voxels) {
        if let Some((_, gain)) = ENHANCEMENT.iter().find(|(label, _)| f32::from(*label) == *l) {
            *v += *gain as f32;
        }
    }
    // The zone shows in the liver and in what lies in it (tumour, small vessels).
    let tissue: Vec<bool> = labels.voxels.iter().map(|l| [2.0, 3.0, 4.0].contains(l)).collect();
    for (n, a) in zones.iter().enumerate() {
        draw_ablation(&mut ct, &a.zone, &tissue, Some((a.tip, a.entry)), look, seed.wrapping_add(n as u64));
    }
    let drawn = ct.clone();
    crate::phantom::displace_liver(&mut ct, &drawn, labels, liver_shift);
    crate::phantom::lower_dose(&mut ct, look.noise_hu, dose_fraction, seed.wrapping_add(1000));
    ct
}
