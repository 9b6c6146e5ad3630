//! A CT phantom for detection, registration and planning tests: an abdomen with skin, liver,
//! one or more tumours, lungs above the diaphragm, gallbladder, bile duct, portal vein, three
//! hepatic veins draining into the inferior vena cava, a contrast-filled aorta-like vessel,
//! gas-filled bowel, ribs, optionally a metal wire with streaks, and the registration frame's
//! markers at a known `ct_from_robot` (optionally with beads missing and bead-like extras). A
//! label map on the same grid comes with it. Deterministic from a seed.
//!
//! A vertebral column with its spinous process at the posterior midline and the heart above the
//! diaphragm complete the planner's landmarks.
//!
//! HU values: air -1000, soft tissue 40, liver 60, tumour 30, portal and hepatic veins 180,
//! heart 150, contrast vessel 300, spine 700, rib (cortical) 2000, markers 3000, wire 3000 with
//! +-600 HU streaks; Gaussian noise. Markers are rendered with partial
//! volume (supersampled), so their detected centroids carry a real localisation error.

use nalgebra::{Isometry3, Matrix3, Translation3, UnitQuaternion, Vector3};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stylet_core::frame::{Ct, Point, Robot, Transform, Vector};
use stylet_imaging::Volume;

/// What to generate.
#[derive(Clone, Debug)]
pub struct PhantomSpec {
    /// Random seed (noise, pose of the marker frame).
    pub seed: u64,
    /// Columns, rows, slices.
    pub dims: [usize; 3],
    /// Voxel size, mm.
    pub spacing_mm: [f64; 3],
    /// The registration frame's markers in the robot frame, mm.
    pub markers_in_robot: Vec<Point<Robot>>,
    /// Marker diameter, mm.
    pub marker_diameter_mm: f64,
    /// Noise, HU (standard deviation).
    pub noise_hu: f64,
    /// Frame beads left out of the image (a bead that fell off, or outside the field of view).
    pub missing_beads: Vec<usize>,
    /// Bead-like bright spheres that are not on the frame (calcifications, a dropped bead).
    pub extra_beads: usize,
    /// Tumours (at least one).
    pub tumours: Vec<TumourSpec>,
    /// A metal wire (clip, guidewire) with streak artefacts.
    pub metal_wire: bool,
}

/// One spherical tumour, placed relative to the liver's centre.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TumourSpec {
    /// Offset of its centre from the liver's centre, LPS mm.
    pub offset_from_liver_centre_mm: [f64; 3],
    /// Diameter, mm.
    pub diameter_mm: f64,
}

impl Default for TumourSpec {
    fn default() -> Self {
        Self { offset_from_liver_centre_mm: [5.0, -5.0, 3.0], diameter_mm: 20.0 }
    }
}

/// The liver: an ellipsoid's centre and semi-axes (LPS mm) for a volume of `dims` x `spacing_mm`
/// centred on the LPS origin.
#[must_use]
fn liver_ellipsoid(dims: [usize; 3], spacing_mm: [f64; 3]) -> (Vector3<f64>, Vector3<f64>) {
    let extent =
        Vector3::new(dims[0] as f64 * spacing_mm[0], dims[1] as f64 * spacing_mm[1], dims[2] as f64 * spacing_mm[2]);
    (Vector3::new(-0.15 * extent.x, 0.0, 0.0), Vector3::new(0.2 * extent.x, 0.22 * extent.y, 0.45 * extent.z))
}

/// Whether a tumour lies wholly inside the liver (its sphere inside the ellipsoid shrunk by its
/// radius along every axis: conservative).
#[must_use]
pub fn tumour_inside_liver(t: &TumourSpec, dims: [usize; 3], spacing_mm: [f64; 3]) -> bool {
    let (_, r) = liver_ellipsoid(dims, spacing_mm);
    let shrunk = r.map(|a| a - t.diameter_mm / 2.0);
    shrunk.iter().all(|a| *a > 0.0)
        && Vector3::from(t.offset_from_liver_centre_mm).component_div(&shrunk).norm_squared() <= 1.0
}

/// Label values of the phantom's label map.
pub const LABELS: [(u8, &str); 13] = [
    (0, "air"),
    (1, "body"),
    (2, "liver"),
    (3, "tumour"),
    (4, "vessel"),
    (5, "bone"),
    (6, "lung"),
    (7, "gallbladder"),
    (8, "bile_duct"),
    (9, "bowel"),
    (10, "metal"),
    (11, "spine"),
    (12, "heart"),
];

/// The generated phantom and its ground truth.
#[derive(Clone, Debug)]
pub struct Phantom {
    /// The CT.
    pub volume: Volume,
    /// The label map on the same grid (values from [`LABELS`]).
    pub labels: Volume,
    /// The true transform from the robot frame to CT (LPS).
    pub ct_from_robot: Transform<Ct, Robot>,
    /// True marker centres in CT.
    pub markers_in_ct: Vec<Point<Ct>>,
    /// Centre of the first tumour in CT.
    pub tumour_in_ct: Point<Ct>,
    /// Every tumour: centre in CT and diameter, mm.
    pub tumours_in_ct: Vec<(Point<Ct>, f64)>,
    /// Centres of the bead-like extras (not on the frame), CT.
    pub extra_beads_in_ct: Vec<Point<Ct>>,
}

/// Adds the noise of a lower-dose scan to a CT rendered at the planning dose: image noise goes
/// as 1/sqrt(dose), so a scan at `dose_fraction` of the planning dose has `noise_hu /
/// sqrt(dose_fraction)`; the difference (in quadrature) is added here, from `seed`.
pub fn lower_dose(ct: &mut Volume, noise_hu: f64, dose_fraction: f64, seed: u64) {
    if !(dose_fraction > 0.0 && dose_fraction < 1.0) || noise_hu <= 0.0 {
        return;
    }
    let extra = noise_hu * (1.0 / dose_fraction - 1.0).sqrt();
    let mut rng = SmallRng::seed_from_u64(seed);
    for v in &mut ct.voxels {
        *v += (gaussian(&mut rng) * extra) as f32;
    }
}

fn gaussian(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Distance from `p` to the segment `a`-`b`.
fn seg_dist(p: &Vector3<f64>, a: &Vector3<f64>, b: &Vector3<f64>) -> f64 {
    let ab = b - a;
    let t = ((p - a).dot(&ab) / ab.norm_squared()).clamp(0.0, 1.0);
    (p - (a + ab * t)).norm()
}

/// The phantom's anatomy: every structure's shape in LPS mm, drawn voxel by voxel.
struct Anatomy {
    /// The body's elliptic cross-section: semi-axes along x and y.
    ra: f64,
    rb: f64,
    liver_c: Vector3<f64>,
    liver_r: Vector3<f64>,
    tumours: Vec<(Vector3<f64>, f64)>,
    ivc: (Vector3<f64>, Vector3<f64>),
    hepatic_veins: [(Vector3<f64>, Vector3<f64>); 3],
    vessel: (Vector3<f64>, Vector3<f64>),
    ribs: Vec<(Vector3<f64>, Vector3<f64>)>,
    wire: Option<(Vector3<f64>, Vector3<f64>)>,
    lungs: [Vector3<f64>; 2],
    lung_r: Vector3<f64>,
    gall_c: Vector3<f64>,
    gall_r: Vector3<f64>,
    duct: (Vector3<f64>, Vector3<f64>),
    portal: (Vector3<f64>, Vector3<f64>),
    spine_c: Vector3<f64>,
    heart_c: Vector3<f64>,
    heart_r: Vector3<f64>,
    bowel: Vec<Vector3<f64>>,
}

impl Anatomy {
    /// The shapes for a volume of `spec`'s size centred on the LPS origin (`origin`: its first
    /// voxel, `extent`: its size, mm).
    fn new(spec: &PhantomSpec, origin: Vector3<f64>, extent: Vector3<f64>) -> Self {
        let s = spec.spacing_mm;
        // Body: an elliptic cylinder along z filling most of the field; liver on the patient's
        // right (LPS -x), tumour inside it; anterior is -y in LPS.
        let (ra, rb) = (0.42 * extent.x, 0.30 * extent.y);
        let (liver_c, liver_r) = liver_ellipsoid(spec.dims, s);
        let tumours: Vec<(Vector3<f64>, f64)> = spec
            .tumours
            .iter()
            .map(|t| (liver_c + Vector3::from(t.offset_from_liver_centre_mm), t.diameter_mm / 2.0))
            .collect();
        // The inferior vena cava runs up behind the liver (posterior is +y); the right, middle and
        // left hepatic veins fan out from it through the upper liver.
        let ivc_x = liver_c.x + 0.55 * liver_r.x;
        let ivc = (
            Vector3::new(ivc_x, 0.55 * liver_r.y, origin.z),
            Vector3::new(ivc_x, 0.55 * liver_r.y, liver_c.z + 0.9 * liver_r.z),
        );
        let confluence = Vector3::new(ivc_x, 0.5 * liver_r.y, liver_c.z + 0.75 * liver_r.z);
        let hepatic_veins = [
            (confluence, liver_c + Vector3::new(-0.75 * liver_r.x, 0.1 * liver_r.y, 0.05 * liver_r.z)),
            (confluence, liver_c + Vector3::new(-0.05 * liver_r.x, -0.45 * liver_r.y, 0.15 * liver_r.z)),
            (confluence, liver_c + Vector3::new(0.75 * liver_r.x, -0.2 * liver_r.y, 0.3 * liver_r.z)),
        ];
        let vessel = (
            Vector3::new(0.05 * extent.x, 0.1 * extent.y, origin.z),
            Vector3::new(0.05 * extent.x, 0.1 * extent.y, -origin.z),
        );
        // Ribs: short arcs near the body wall at a few heights.
        let mut ribs = Vec::new();
        for kz in [-0.3, 0.0, 0.3] {
            let z = kz * extent.z;
            for side in [-1.0, 1.0] {
                for a in 0..8 {
                    let t0 = 0.4 + a as f64 * 0.1;
                    let p = |t: f64| {
                        Vector3::new(side * ra * 0.92 * t.cos(), -rb * 0.92 * t.sin().abs() * 0.6 + rb * 0.3, z)
                    };
                    ribs.push((p(t0), p(t0 + 0.1)));
                }
            }
        }
        // A metal wire (a clip or guidewire) with streaks along x through it.
        let wire_a = Vector3::new(0.15 * extent.x, -0.05 * extent.y, 0.1 * extent.z);
        let wire_b = wire_a + Vector3::new(0.0, 0.0, 20.0);
        // Lungs above the diaphragm (superior is +z), gallbladder under the liver, a bile duct from it,
        // a portal vein through the liver, gas-filled bowel loops low down.
        let lungs = [
            Vector3::new(-0.2 * extent.x, 0.05 * extent.y, 0.5 * extent.z),
            Vector3::new(0.2 * extent.x, 0.05 * extent.y, 0.5 * extent.z),
        ];
        let lung_r = Vector3::new(0.16 * extent.x, 0.22 * extent.y, 0.25 * extent.z);
        let gall_c = liver_c + Vector3::new(0.1 * extent.x, -0.14 * extent.y, -0.25 * liver_r.z);
        let gall_r = Vector3::new(14.0, 11.0, 22.0);
        // The cystic/common bile duct runs from the gallbladder neck to the hilum (medial, posterior).
        let duct = (gall_c, liver_c + Vector3::new(0.6 * liver_r.x, 0.35 * liver_r.y, -0.05 * liver_r.z));
        let portal = (
            liver_c + Vector3::new(-0.6 * liver_r.x, 0.2 * liver_r.y, 0.0),
            liver_c + Vector3::new(0.9 * liver_r.x, 0.25 * liver_r.y, 0.0),
        );
        // The spine: a vertebral column at the posterior midline with its spinous process behind it;
        // the heart above the diaphragm, left of centre.
        let spine_c = Vector3::new(0.0, 0.62 * rb, 0.0);
        let heart_c = Vector3::new(0.08 * extent.x, -0.05 * extent.y, 0.47 * extent.z);
        let heart_r = Vector3::new(0.12 * extent.x, 0.14 * extent.y, 0.09 * extent.z);
        let bowel: Vec<Vector3<f64>> = (0..4)
            .map(|b| Vector3::new((b as f64 - 1.5) * 0.15 * extent.x, -0.1 * extent.y, -0.38 * extent.z))
            .collect();
        let wire = spec.metal_wire.then_some((wire_a, wire_b));
        Anatomy {
            ra,
            rb,
            liver_c,
            liver_r,
            tumours,
            ivc,
            hepatic_veins,
            vessel,
            ribs,
            wire,
            lungs,
            lung_r,
            gall_c,
            gall_r,
            duct,
            portal,
            spine_c,
            heart_c,
            heart_r,
            bowel,
        }
    }

    /// HU and label at `p`, before the markers and the noise.
    fn voxel(&self, p: &Vector3<f64>) -> (f64, u8) {
        let p = *p;
        let mut hu = -1000.0;
        let mut label = 0u8;
        let radial = (p.x / self.ra).powi(2) + (p.y / self.rb).powi(2);
        if radial <= 1.0 {
            (hu, label) = (40.0, 1);
            if self.lungs.iter().any(|c| (p - c).component_div(&self.lung_r).norm_squared() <= 1.0) {
                (hu, label) = (-800.0, 6);
            }
            if self.bowel.iter().any(|c| (p - c).norm() <= 15.0) {
                (hu, label) = (-600.0, 9);
            }
            if (p - self.heart_c).component_div(&self.heart_r).norm_squared() <= 1.0 {
                (hu, label) = (150.0, 12);
            }
            let (sx, sy) = (p.x - self.spine_c.x, p.y - self.spine_c.y);
            if sx * sx + sy * sy <= 15.0 * 15.0 || (sx.abs() <= 3.0 && sy > 0.0 && sy <= 32.0) {
                (hu, label) = (700.0, 11);
            }
            let d = (p - self.liver_c).component_div(&self.liver_r);
            if d.norm_squared() <= 1.0 {
                (hu, label) = (60.0, 2);
            }
            if (p - self.gall_c).component_div(&self.gall_r).norm_squared() <= 1.0 {
                (hu, label) = (10.0, 7);
            }
            if seg_dist(&p, &self.duct.0, &self.duct.1) <= 2.5 {
                (hu, label) = (20.0, 8);
            }
            if seg_dist(&p, &self.portal.0, &self.portal.1) <= 6.0
                || seg_dist(&p, &self.ivc.0, &self.ivc.1) <= 9.0
                || self.hepatic_veins.iter().any(|(a, b)| seg_dist(&p, a, b) <= 3.5)
            {
                (hu, label) = (180.0, 4);
            }
            if self.tumours.iter().any(|(c, r)| (p - c).norm() <= *r) {
                (hu, label) = (30.0, 3);
            }
            if seg_dist(&p, &self.vessel.0, &self.vessel.1) <= 4.0 {
                (hu, label) = (300.0, 4);
            }
            // Ribs run near the body wall only.
            if radial > 0.3 && self.ribs.iter().any(|(a, b)| seg_dist(&p, a, b) <= 4.0) {
                (hu, label) = (2000.0, 5);
            }
            // Streaks: bright and dark bands along x at the self.wire's height.
            if let Some((wire_a, _)) = self.wire.filter(|(a, _)| (p.z - a.z).abs() < 10.0 && (p.y - a.y).abs() < 1.5) {
                hu += 600.0 * ((p.x - wire_a.x) * 0.2).cos() * (-(p.x - wire_a.x).abs() / 80.0).exp();
            }
            if self.wire.is_some_and(|(a, b)| seg_dist(&p, &a, &b) <= 1.0) {
                (hu, label) = (3000.0, 10);
            }
        }
        (hu, label)
    }
}

/// Generates the phantom.
#[must_use]
pub fn generate(spec: &PhantomSpec) -> Phantom {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let [nx, ny, nz] = spec.dims;
    let s = spec.spacing_mm;
    // Volume centred on the LPS origin.
    let origin =
        Vector3::new(-(nx as f64 - 1.0) * s[0] / 2.0, -(ny as f64 - 1.0) * s[1] / 2.0, -(nz as f64 - 1.0) * s[2] / 2.0);
    let extent = Vector3::new(nx as f64 * s[0], ny as f64 * s[1], nz as f64 * s[2]);
    let pos = |i: usize, j: usize, k: usize| origin + Vector3::new(i as f64 * s[0], j as f64 * s[1], k as f64 * s[2]);
    let anatomy = Anatomy::new(spec, origin, extent);
    let (ra, rb) = (anatomy.ra, anatomy.rb);
    let mut voxels = vec![0f32; nx * ny * nz];
    let mut labels = vec![0f32; nx * ny * nz];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let (hu, label) = anatomy.voxel(&pos(i, j, k));
                labels[(k * ny + j) * nx + i] = f32::from(label);
                voxels[(k * ny + j) * nx + i] = hu as f32;
            }
        }
    }
    let fixed =
        UnitQuaternion::from_rotation_matrix(&nalgebra::Rotation3::from_matrix_unchecked(Matrix3::from_columns(&[
            Vector3::x(),
            Vector3::z(),
            -Vector3::y(),
        ])));
    let rot = UnitQuaternion::from_axis_angle(&Vector3::y_axis(), rng.gen_range(-0.18..0.18))
        * UnitQuaternion::from_axis_angle(&Vector3::x_axis(), rng.gen_range(-0.15..0.15))
        * UnitQuaternion::from_axis_angle(&Vector3::z_axis(), rng.gen_range(-0.15..0.15))
        * fixed;
    let model_c = spec.markers_in_robot.iter().map(|m| m.to_nalgebra().coords).sum::<Vector3<f64>>()
        / spec.markers_in_robot.len() as f64;
    let place = Vector3::new(rng.gen_range(-10.0..10.0), -rb - 12.0, rng.gen_range(-5.0..5.0));
    let ct_from_robot = Isometry3::from_parts(Translation3::from(place - rot * model_c), rot);
    let markers_in_ct: Vec<Vector3<f64>> =
        spec.markers_in_robot.iter().map(|m| ct_from_robot * m.to_nalgebra()).map(|p| p.coords).collect();
    let r = spec.marker_diameter_mm / 2.0;
    let sub = 5;
    let mut beads: Vec<Vector3<f64>> =
        markers_in_ct.iter().enumerate().filter(|(i, _)| !spec.missing_beads.contains(i)).map(|(_, m)| *m).collect();
    let mut extras = Vec::new();
    for _ in 0..spec.extra_beads {
        // Inside the body, away from the frame.
        extras.push(Vector3::new(
            rng.gen_range(-0.5..0.5) * ra,
            rng.gen_range(-0.2..0.6) * rb,
            rng.gen_range(-0.35..0.35) * extent.z,
        ));
    }
    beads.extend(extras.iter().copied());
    for m in &beads {
        let lo = ((m - origin).component_div(&Vector3::from(s))
            - Vector3::repeat(r + 2.0).component_div(&Vector3::from(s)))
        .map(|x| x.floor().max(0.0) as usize);
        let hi = ((m - origin).component_div(&Vector3::from(s))
            + Vector3::repeat(r + 2.0).component_div(&Vector3::from(s)))
        .map(|x| x.ceil().max(0.0) as usize);
        for k in lo.z..=hi.z.min(nz - 1) {
            for j in lo.y..=hi.y.min(ny - 1) {
                for i in lo.x..=hi.x.min(nx - 1) {
                    // Partial volume: the fraction of the voxel inside the sphere.
                    let c = pos(i, j, k);
                    let mut inside = 0;
                    for a in 0..sub {
                        for b in 0..sub {
                            for cc in 0..sub {
                                let off = Vector3::new(
                                    (a as f64 + 0.5) / sub as f64 - 0.5,
                                    (b as f64 + 0.5) / sub as f64 - 0.5,
                                    (cc as f64 + 0.5) / sub as f64 - 0.5,
                                )
                                .component_mul(&Vector3::from(s));
                                if (c + off - m).norm() <= r {
                                    inside += 1;
                                }
                            }
                        }
                    }
                    if inside > 0 {
                        let f = f64::from(inside) / f64::from(sub * sub * sub);
                        let idx = (k * ny + j) * nx + i;
                        voxels[idx] = (f64::from(voxels[idx]) * (1.0 - f) + 3000.0 * f) as f32;
                    }
                }
            }
        }
    }
    for v in &mut voxels {
        *v += (gaussian(&mut rng) * spec.noise_hu) as f32;
    }
    Phantom {
        volume: Volume {
            dims: spec.dims,
            spacing_mm: s,
            origin: Point::from_coords(origin),
            direction: Matrix3::identity(),
            voxels,
        },
        labels: Volume {
            dims: spec.dims,
            spacing_mm: s,
            origin: Point::from_coords(origin),
            direction: Matrix3::identity(),
            voxels: labels,
        },
        ct_from_robot: Transform::from_nalgebra(ct_from_robot),
        markers_in_ct: markers_in_ct.into_iter().map(Point::from_coords).collect(),
        tumour_in_ct: Point::from_coords(anatomy.tumours.first().map_or(anatomy.liver_c, |t| t.0)),
        tumours_in_ct: anatomy.tumours.iter().map(|(c, r)| (Point::from_coords(*c), 2.0 * r)).collect(),
        extra_beads_in_ct: extras.into_iter().map(Point::from_coords).collect(),
    }
}

/// Labels that breathing carries: the liver and what lies in it (tumour, vessels, gallbladder,
/// bile ducts).
const MOVES_WITH_LIVER: [u8; 5] = [2, 3, 4, 7, 8];

/// Draws the liver of `planning` (with what lies in it, by `labels`) displaced by `shift_mm`
/// (LPS) into `ct`: each voxel the liver covers now, or covered in the planning CT, takes the
/// planning CT's value `shift_mm` back (trilinear); the rest of the body stays where it was.
pub fn displace_liver(ct: &mut Volume, planning: &Volume, labels: &Volume, shift_mm: Vector<Ct>) {
    let shift_mm = shift_mm.to_nalgebra();
    if shift_mm.norm() < 1e-9 {
        return;
    }
    let moves = |v: f32| MOVES_WITH_LIVER.iter().any(|l| f32::from(*l) == v);
    let [nx, ny, nz] = labels.dims;
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if moves(labels.voxels[(k * ny + j) * nx + i]) {
                    for (d, x) in [i, j, k].into_iter().enumerate() {
                        lo[d] = lo[d].min(x);
                        hi[d] = hi[d].max(x);
                    }
                }
            }
        }
    }
    if lo[0] == usize::MAX {
        return;
    }
    let s = labels.spacing_mm;
    let reach = [0, 1, 2].map(|d| (shift_mm.norm() / s[d]).ceil() as usize + 2);
    let lo = [0, 1, 2].map(|d| lo[d].saturating_sub(reach[d]));
    let hi = [0, 1, 2].map(|d| (hi[d] + reach[d]).min(labels.dims[d] - 1));
    for k in lo[2]..=hi[2] {
        for j in lo[1]..=hi[1] {
            for i in lo[0]..=hi[0] {
                let p = labels.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords;
                let from = p - shift_mm;
                let from_pt = Point::new(from.x, from.y, from.z);
                let idx = (k * ny + j) * nx + i;
                let came = labels.sample_nearest(from_pt).is_some_and(moves);
                if came || moves(labels.voxels[idx]) {
                    if let Some(v) = planning.sample_linear(from_pt) {
                        ct.voxels[idx] = v as f32;
                    }
                }
            }
        }
    }
}

/// Renders an inserted needle into a CT (a checkpoint CT): a metal shaft of `diameter_mm` from
/// `entry` to `tip` (LPS mm) with partial volume at its edge, blooming around it (the shaft looks
/// wider than it is), and streak artefacts in each axial slice it crosses (alternating bright and
/// dark rays from the shaft's cross-section, fading over ~40 mm), as metal does in CT.
pub fn render_needle(ct: &mut Volume, entry: Point<Ct>, tip: Point<Ct>, diameter_mm: f64) {
    let (entry, tip) = (entry.to_nalgebra().coords, tip.to_nalgebra().coords);
    let r = diameter_mm / 2.0;
    let [nx, ny, nz] = ct.dims;
    let s = ct.spacing_mm;
    let voxel = s[0].min(s[1]).min(s[2]);
    let axis = (tip - entry).normalize();
    let length = (tip - entry).norm();
    for k in 0..nz {
        // Where the shaft crosses this slice (if it does), for the streaks.
        let z = ct.ct_from_index(0.0, 0.0, k as f64).to_array()[2];
        let cross = if axis.z.abs() > 1e-6 {
            let t = (z - entry.z) / axis.z;
            (t >= 0.0 && t <= (tip - entry).norm()).then(|| entry + axis * t)
        } else {
            None
        };
        for j in 0..ny {
            for i in 0..nx {
                let p = ct.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords;
                // Signed distance to the shaft: a cylinder with a flat end at the tip.
                let t = (p - entry).dot(&axis);
                let rho = (p - entry - axis * t).norm();
                let sd = if rho <= r && t >= 0.0 && t <= length {
                    -(r - rho).min(t).min(length - t)
                } else {
                    ((rho - r).max(0.0).powi(2) + (t - length).max(0.0).powi(2) + (-t).max(0.0).powi(2)).sqrt()
                };
                let idx = (k * ny + j) * nx + i;
                let mut hu = f64::from(ct.voxels[idx]);
                if sd < 3.0 * voxel {
                    let fill = (0.5 - sd / voxel).clamp(0.0, 1.0);
                    hu = hu * (1.0 - fill) + 3000.0 * fill;
                    if sd > 0.0 {
                        hu += 700.0 * (-(sd / 0.8).powi(2)).exp();
                    }
                }
                if let Some(c) = cross {
                    let v = p - c;
                    let dist = (v.x * v.x + v.y * v.y).sqrt();
                    if dist > r + 2.0 && dist < 120.0 {
                        let ang = v.y.atan2(v.x);
                        // Eight rays, alternately bright and dark, 3 degrees wide.
                        let ray = (ang * 4.0 / std::f64::consts::PI).round();
                        let off = ang - ray * std::f64::consts::PI / 4.0;
                        if off.abs() < 0.05 {
                            let sign = if (ray as i64).rem_euclid(2) == 0 { 1.0 } else { -1.0 };
                            hu += sign * 400.0 * (-dist / 40.0).exp();
                        }
                    }
                }
                ct.voxels[idx] = hu as f32;
            }
        }
    }
}
