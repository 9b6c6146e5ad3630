//! The planner: from a CT, its label map and a target tumour to ranked needle trajectories, each
//! with a rule-by-rule report (docs/planning.md).

use std::collections::BTreeMap;

use nalgebra::{Matrix3, Vector3};
use stylet_core::frame::{Ct, Point, Vector};
use stylet_imaging::Volume;

use crate::config::{Class, LabelTable, Rules, Zone};
use crate::edt::edt;
use crate::geometry::{components, Crop, Spheroid};

/// Which tumour to plan for.
#[derive(Clone, Debug, PartialEq)]
pub enum TumourSpec {
    /// The `component`-th largest connected component (0 = largest) of label `value`.
    Label {
        /// Label value.
        value: u32,
        /// Component index, largest first.
        component: usize,
    },
    /// A spherical tumour inserted at a point inside the liver.
    Sphere {
        /// Centre, LPS mm.
        centre_lps_mm: [f64; 3],
        /// Diameter, mm.
        diameter_mm: f64,
    },
}

/// Why no plan could be computed at all. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum PlanError {
    /// the label map does not lie on the CT grid: {0}
    GridMismatch(String),
    /// the label map holds values the label table "{table}" does not list: {values:?} (value, voxels)
    UnknownLabels {
        /// Table.
        table: String,
        /// Values and voxel counts.
        values: Vec<(u32, usize)>,
    },
    /// label {value} has no voxels (or no component {component})
    NoTumour {
        /// Label value.
        value: u32,
        /// Component asked for.
        component: usize,
    },
    /// label {value} is not a tumour class in table "{table}" (it is {class:?})
    NotTumourLabel {
        /// Label value.
        value: u32,
        /// Table.
        table: String,
        /// Its class.
        class: Class,
    },
    /// the target ({x:.1}, {y:.1}, {z:.1}) mm LPS is outside the liver (the label there is {class:?})
    TargetOutsideLiver {
        /// LPS x.
        x: f64,
        /// LPS y.
        y: f64,
        /// LPS z.
        z: f64,
        /// What is there.
        class: Option<Class>,
    },
    /// no skin surface found (no body in the label map, and no body outline in the CT)
    NoSkin,
}

/// A rule's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Holds.
    Pass,
    /// Reported; the clinician decides.
    Warn,
    /// Not assessed (data missing), said so.
    NotAssessed,
    /// Violated.
    Fail,
    /// Violated, but the plan is kept and listed as high-risk: it may be executed only after an
    /// explicit operator override, logged with the rule ID (OAR-2).
    HighRisk,
}

/// One rule's result for a plan.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RuleCheck {
    /// Rule ID.
    pub rule: &'static str,
    /// Verdict.
    pub status: Status,
    /// Measured value (mm unless the detail says otherwise).
    pub measured: Option<f64>,
    /// Threshold applied.
    pub limit: Option<f64>,
    /// What was measured, in words.
    pub detail: String,
}

fn check(
    rule: &'static str,
    status: Status,
    measured: Option<f64>,
    limit: Option<f64>,
    detail: impl Into<String>,
) -> RuleCheck {
    RuleCheck { rule, status, measured, limit, detail: detail.into() }
}

/// One needle position.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Position {
    /// Skin entry (the CT's LPS frame, mm).
    #[serde(rename = "entry_lps_mm")]
    pub entry: Point<Ct>,
    /// Needle tip.
    #[serde(rename = "tip_lps_mm")]
    pub tip: Point<Ct>,
    /// Ablation zone centre.
    #[serde(rename = "zone_centre_lps_mm")]
    pub zone_centre: Point<Ct>,
    /// Unit needle axis (entry to tip).
    #[serde(rename = "axis_lps")]
    pub axis: Vector<Ct>,
    /// Insertion depth, mm.
    pub depth_mm: f64,
}

/// A feasible plan.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Rank score (higher is better; docs/planning.md).
    pub score: f64,
    /// Needle positions (more than one when the tumour needs overlapping zones, MAR-3).
    pub positions: Vec<Position>,
    /// The zone's long and short axes after shrink, mm.
    pub zone_long_mm: f64,
    /// Short axis.
    pub zone_short_mm: f64,
    /// MAR-1 margin, mm.
    pub margin_mm: f64,
    /// Smallest shaft clearance to a structure it must avoid, mm.
    pub clearance_mm: f64,
    /// The structure class nearest the shaft.
    pub nearest_structure: Option<Class>,
    /// Where the shaft comes nearest to it, LPS mm.
    #[serde(skip)]
    pub closest: Option<[f64; 3]>,
    /// Angle between the needle and the axial plane, degrees.
    pub angle_to_axial_deg: f64,
    /// Every rule's verdict.
    pub checks: Vec<RuleCheck>,
    /// A rule is [`Status::HighRisk`]: executed only after an explicit operator override.
    pub high_risk: bool,
}

impl Plan {
    /// The rules that make the plan high-risk.
    pub fn high_risk_rules(&self) -> impl Iterator<Item = &RuleCheck> {
        self.checks.iter().filter(|c| c.status == Status::HighRisk)
    }
}

/// What the planner found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PlanReport {
    /// Tumour centroid, LPS mm.
    pub tumour_centre_lps_mm: [f64; 3],
    /// Tumour maximal diameter (twice the largest centroid distance), mm.
    pub tumour_diameter_mm: f64,
    /// Tumour voxels.
    pub tumour_voxels: usize,
    /// Indication checks (IND-1..4, warnings only).
    pub indication: Vec<RuleCheck>,
    /// Candidate lines evaluated.
    pub candidates: usize,
    /// Candidates passing every path rule.
    pub path_feasible: usize,
    /// Path-feasible candidates whose zone rules were evaluated (best paths first, until enough
    /// plans were found).
    pub zone_evaluated: usize,
    /// Evaluated candidates passing every fail rule, high-risk ones not counted.
    pub feasible: usize,
    /// Plans kept as high-risk (listed after the safe ones).
    pub high_risk: usize,
    /// Candidates failing each rule (a candidate may fail several).
    pub failures_by_rule: BTreeMap<&'static str, usize>,
    /// Ranked plans: safe plans best first, then high-risk ones (empty: no path at all, see
    /// `failures_by_rule`).
    pub plans: Vec<Plan>,
    /// Whether the skin came from the label map or the CT's body outline.
    pub skin_source: &'static str,
    /// The tumour's surface points the margins are measured on, LPS mm.
    #[serde(skip)]
    pub tumour_surface_lps_mm: Vec<[f64; 3]>,
}

/// Everything the planner needs.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    /// The CT (HU).
    pub ct: &'a Volume,
    /// The label map on the CT grid.
    pub labels: &'a Volume,
    /// How to read the label values.
    pub table: &'a LabelTable,
    /// The tumour.
    pub tumour: TumourSpec,
    /// The ablation zone of the chosen device setting.
    pub zone: Zone,
    /// Thresholds.
    pub rules: Rules,
    /// How many plans to return.
    pub max_plans: usize,
}

/// The grid's index <-> LPS maps.
struct Grid {
    dims: [usize; 3],
    origin: Vector3<f64>,
    m: Matrix3<f64>,
    inv: Matrix3<f64>,
}

impl Grid {
    fn new(v: &Volume) -> Option<Self> {
        let s = v.spacing_mm;
        let m = Matrix3::from_columns(&[
            v.direction.column(0) * s[0],
            v.direction.column(1) * s[1],
            v.direction.column(2) * s[2],
        ]);
        Some(Self { dims: v.dims, origin: v.origin, m, inv: m.try_inverse()? })
    }
    fn lps(&self, idx: usize) -> Vector3<f64> {
        let [nx, ny, _] = self.dims;
        let ijk = Vector3::new((idx % nx) as f64, ((idx / nx) % ny) as f64, (idx / (nx * ny)) as f64);
        self.origin + self.m * ijk
    }
    fn index(&self, p: &Vector3<f64>) -> Option<usize> {
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
struct Rows {
    bits: Vec<u16>,
    dims: [usize; 3],
}

impl Rows {
    fn mark(&mut self, idx: usize, c: Class) {
        if let Some(b) = self.bits.get_mut(idx / self.dims[0].max(1)) {
            *b |= 1 << c as u16;
        }
    }
    fn has(&self, c: Class) -> bool {
        self.bits.iter().any(|b| b & (1 << c as u16) != 0)
    }
    /// The box of the rows holding `c` (every column), grown by `margin` rows and slices.
    fn crop(&self, c: Class, margin: usize) -> Option<Crop> {
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
fn classify(labels: &Volume, table: &LabelTable) -> Result<(Vec<Class>, Rows), PlanError> {
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
fn boundary(mask: &[bool], dims: [usize; 3], border_is_outside: bool) -> Vec<usize> {
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
fn body_mask(ct: &Volume, classes: &[Class], rows: &Rows) -> (Vec<bool>, &'static str) {
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

struct Maps {
    /// Distance to anything the shaft must keep clear of: the blocking classes and vessels of at
    /// least the PATH-1 diameter, on the coarse grid; within `clear_error_mm` of the truth.
    clear: Field,
    /// Bound on the coarse clearance's error, mm.
    clear_error_mm: f64,
    /// The blocking voxels themselves (over `clear.crop`), for the exact check near the limit.
    blocked: Vec<bool>,
    /// Voxel size, mm.
    spacing: [f64; 3],
    /// Distance to the lung (coarse grid: PATH-5 warns at 10 mm).
    lung: Field,
    /// Distance to bone (coarse grid: intercostal detection at 15 mm).
    bone: Field,
}

impl Maps {
    /// The blocking voxels over `crop` and the three coarse distance maps, from one pass over the
    /// box split over the cores (each takes whole coarse slices).
    fn new(classes: &[Class], major: &[bool], crop: Crop, spacing: [f64; 3]) -> Self {
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
struct Field {
    crop: Crop,
    f: [usize; 3],
    dims: [usize; 3],
    d: Vec<f32>,
}

impl Field {
    /// The largest difference between a coarse distance and the exact one, mm: the query and
    /// the feature each sit within half a block of the block centres used.
    fn error_mm(&self, spacing: [f64; 3]) -> f64 {
        (0..3).map(|a| ((self.f[a] - 1) as f64 * spacing[a]).powi(2)).sum::<f64>().sqrt()
    }

    fn at(&self, idx: usize) -> f32 {
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
fn major_vessels(classes: &[Class], within: Option<Crop>, spacing: [f64; 3], diameter_mm: f64) -> Vec<bool> {
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

struct PathResult {
    depth: f64,
    clearance: f64,
    /// Vessel when a vessel is nearest; otherwise resolved from `closest` for reported plans.
    nearest: Option<Class>,
    /// The shaft point nearest a structure it must avoid.
    closest: Vector3<f64>,
    liver_before_tumour: f64,
    lung_min: f64,
    intercostal: bool,
    lateral_from_spine: Option<f64>,
    closer_to_upper_rib: Option<bool>,
}

/// What a shaft evaluation reads.
struct Shaft<'a> {
    grid: &'a Grid,
    classes: &'a [Class],
    maps: &'a Maps,
    /// LPS x of the spine's midline.
    spine_x: Option<f64>,
    /// Sampling step along the shaft, mm.
    step: f64,
    /// Bone this close to the first 40 mm makes the entry intercostal (PATH-3), mm.
    bone_detect: f64,
    /// PATH-1's required clearance, mm.
    needed: f64,
}

/// Exact distance from `p` to the nearest blocking voxel centre, searched within `r` mm
/// (`r` when none is closer).
fn exact_clearance(maps: &Maps, grid: &Grid, p: &Vector3<f64>, r: f64) -> f64 {
    let crop = maps.clear.crop;
    let f = grid.inv * (p - grid.origin);
    let c = [f.x, f.y, f.z];
    let mut best2 = r * r;
    let mut lo = [0usize; 3];
    let mut hi = [0usize; 3];
    for a in 0..3 {
        let reach = r / maps.spacing[a];
        lo[a] = ((c[a] - reach).floor().max(crop.lo[a] as f64) as usize).max(crop.lo[a]);
        hi[a] = ((c[a] + reach).ceil().max(0.0) as usize).min(crop.lo[a] + crop.dims[a] - 1);
    }
    for k in lo[2]..=hi[2] {
        let dz = (k as f64 - c[2]) * maps.spacing[2];
        for j in lo[1]..=hi[1] {
            let dy = (j as f64 - c[1]) * maps.spacing[1];
            let row = ((k - crop.lo[2]) * crop.dims[1] + (j - crop.lo[1])) * crop.dims[0];
            for i in lo[0]..=hi[0] {
                if maps.blocked[row + i - crop.lo[0]] {
                    let dx = (i as f64 - c[0]) * maps.spacing[0];
                    best2 = best2.min(dx * dx + dy * dy + dz * dz);
                }
            }
        }
    }
    best2.sqrt()
}

/// Evaluates the shaft from `entry` to `tip`.
fn walk(sh: &Shaft<'_>, entry: &Vector3<f64>, tip: &Vector3<f64>) -> PathResult {
    let Shaft { grid, classes, maps, spine_x, step, bone_detect, needed } = *sh;
    let d = tip - entry;
    let depth = d.norm();
    let axis = d / depth.max(1e-9);
    let n = (depth / step).ceil() as usize + 1;
    let (mut clearance, mut closest) = (f64::INFINITY, *entry);
    let (mut liver_run, mut liver_before, mut seen_tumour) = (0.0, None, false);
    let mut lung_min = f64::INFINITY;
    let mut bone_near: Option<(f64, Vector3<f64>)> = None;
    // Samples near bone in the first 40 mm: where the path may cross between two ribs.
    let mut rib_candidates: Vec<Vector3<f64>> = Vec::new();
    for s in 0..n {
        let t = (s as f64 * step).min(depth);
        let p = entry + axis * t;
        let Some(idx) = grid.index(&p) else { continue };
        let mut clear = f64::from(maps.clear.at(idx));
        // Near the PATH-1 limit the coarse distance is not good enough: measure exactly.
        if clear - maps.clear_error_mm < needed && clear < clearance + maps.clear_error_mm {
            clear = exact_clearance(maps, grid, &p, clear + maps.clear_error_mm);
        }
        if clear < clearance {
            clearance = clear;
            closest = p;
        }
        lung_min = lung_min.min(f64::from(maps.lung.at(idx)));
        if t <= 40.0 {
            let b = f64::from(maps.bone.at(idx));
            if b <= bone_detect && bone_near.is_none_or(|(bd, _)| b < bd) {
                bone_near = Some((b, p));
            }
            if b <= 8.0 {
                rib_candidates.push(p);
            }
        }
        match classes[idx] {
            Class::Liver => liver_run += step,
            Class::Tumour => {
                if !seen_tumour {
                    liver_before = Some(liver_run);
                    seen_tumour = true;
                }
            }
            _ => {
                if !seen_tumour {
                    liver_run = 0.0;
                }
            }
        }
    }
    let intercostal = bone_near.is_some();
    let lateral_from_spine = if intercostal { spine_x.map(|x| (entry.x - x).abs()) } else { None };
    // PATH-4: where the path passes between two ribs (bone straight above and below, the
    // narrowest such gap along the first 40 mm), is it nearer the upper rib (superior, +z)?
    let closer_to_upper_rib = if intercostal {
        let bone_at = |q: Vector3<f64>| grid.index(&q).is_some_and(|i| matches!(classes[i], Class::Bone));
        // 1 mm probe steps up to 30 mm (ribs are thicker than that step), every fourth sample.
        let probe = |p: Vector3<f64>, dir: f64| {
            (1..=30).map(f64::from).find(|dz| bone_at(p + Vector3::new(0.0, 0.0, dir * dz)))
        };
        rib_candidates
            .iter()
            .step_by(4)
            .filter(|p| !bone_at(**p))
            .filter_map(|p| Some((probe(*p, 1.0)?, probe(*p, -1.0)?)))
            .min_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)))
            .map(|(up, down)| up < down)
    } else {
        None
    };
    // A track that never enters the tumour (an overlapping zone's side track) counts the liver up
    // to its tip.
    let liver_before_tumour = liver_before.unwrap_or(liver_run);
    // The structure nearest the shaft is looked up only for the plans reported.
    let nearest = None;
    PathResult {
        depth,
        clearance,
        nearest,
        closest,
        liver_before_tumour,
        lung_min,
        intercostal,
        lateral_from_spine,
        closer_to_upper_rib,
    }
}

/// The class of the blocking voxel nearest `at` within `r` mm (voxel-step search).
fn nearest_blocking_class(
    grid: &Grid,
    classes: &[Class],
    major: &[bool],
    spacing: [f64; 3],
    at: &Vector3<f64>,
    r: f64,
) -> Option<Class> {
    let r = r.min(25.0);
    let n = spacing.map(|s| (r / s.max(0.05)).ceil() as i32);
    let mut found: Option<(f64, Class)> = None;
    for a in -n[0]..=n[0] {
        for b in -n[1]..=n[1] {
            for c in -n[2]..=n[2] {
                let off = Vector3::new(f64::from(a) * spacing[0], f64::from(b) * spacing[1], f64::from(c) * spacing[2]);
                let dist = off.norm();
                if dist > r || found.is_some_and(|(d, _)| dist >= d) {
                    continue;
                }
                if let Some(i) = grid.index(&(at + off)) {
                    if classes[i].blocks_path() || major[i] {
                        found = Some((dist, classes[i]));
                    }
                }
            }
        }
    }
    found.map(|f| f.1)
}

fn arr(v: &Vector3<f64>) -> [f64; 3] {
    [v.x, v.y, v.z]
}

/// Plans.
///
/// # Errors
/// A [`PlanError`] when the inputs cannot be planned on at all ("no safe path" is not an error:
/// it is a report with no plans and the reasons).
#[allow(clippy::too_many_lines)]
pub fn plan(input: &PlanInput<'_>) -> Result<PlanReport, PlanError> {
    let (ct, labels, rules, zone) = (input.ct, input.labels, &input.rules, &input.zone);
    labels.check_same_grid(ct, 0.01).map_err(PlanError::GridMismatch)?;
    let grid = Grid::new(ct).ok_or_else(|| PlanError::GridMismatch("singular voxel grid".into()))?;
    let dims = ct.dims;
    let (mut classes, mut rows) = classify(labels, input.table)?;
    let min_spacing = ct.spacing_mm.iter().copied().fold(f64::INFINITY, f64::min);

    // The tumour.
    // The mask over the whole volume, and a box known to hold all of it.
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
        TumourSpec::Sphere { centre_lps_mm, diameter_mm } => {
            let c = Vector3::from(*centre_lps_mm);
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
    let diameter = 2.0 * radius;

    // Indication (warnings only).
    let tumour_rows = rows.crop(Class::Tumour, 0);
    let tsizes = match tumour_rows {
        Some(crop) => {
            components(&crop.extract(&classes).iter().map(|c| *c == Class::Tumour).collect::<Vec<_>>(), crop.dims).1
        }
        None => vec![0],
    };
    let n_tumours = tsizes.len() - 1;
    let voxel_mm3 = ct.spacing_mm.iter().product::<f64>();
    let eq_diam = |n: usize| 2.0 * (3.0 * n as f64 * voxel_mm3 / (4.0 * std::f64::consts::PI)).cbrt();
    let mut indication = vec![if n_tumours <= 1 {
        let st = if diameter <= rules.ind1_max_single_mm { Status::Pass } else { Status::Warn };
        check("IND-1", st, Some(diameter), Some(rules.ind1_max_single_mm), "single tumour, maximal diameter")
    } else {
        let worst = tsizes[1..].iter().map(|n| eq_diam(*n)).fold(0.0, f64::max);
        let st = if n_tumours <= rules.ind2_max_tumours && worst <= rules.ind2_max_multiple_mm {
            Status::Pass
        } else {
            Status::Warn
        };
        check(
            "IND-2",
            st,
            Some(worst),
            Some(rules.ind2_max_multiple_mm),
            format!("{n_tumours} tumours; largest equivalent diameter"),
        )
    }];
    indication.push(check(
        "IND-3",
        Status::NotAssessed,
        None,
        None,
        "Child-Pugh class A or B: a clinical finding, not in the images",
    ));

    // Distance maps.
    let vessel_rows = rows.crop(Class::Vessel, 0);
    let major = major_vessels(&classes, vessel_rows, ct.spacing_mm, rules.path1_min_vessel_diameter_mm);
    let own_heat_sinks = ((rules.oar3_min_vessel_diameter_mm - rules.path1_min_vessel_diameter_mm).abs() > 1e-9)
        .then(|| major_vessels(&classes, vessel_rows, ct.spacing_mm, rules.oar3_min_vessel_diameter_mm));
    let heat_sinks: &[bool] = own_heat_sinks.as_deref().unwrap_or(&major);
    // Every map covers the body's bounding box only (entries are on its skin).
    let (body, skin_source) = body_mask(ct, &classes, &rows);
    let crop = Crop::around(&body, dims, 2).ok_or(PlanError::NoSkin)?;
    let maps = Maps::new(&classes, &major, crop, ct.spacing_mm);
    let tumour_crop =
        tumour_box.around_within(&tumour_mask, |m| m, 1).ok_or(PlanError::NoTumour { value: 0, component: 0 })?;
    // Tumour surface voxels (full-volume indices).
    let tumour_surface: Vec<usize> = boundary(&tumour_crop.extract(&tumour_mask), tumour_crop.dims, true)
        .into_iter()
        .map(|i| tumour_crop.full_index(i))
        .collect();
    let touches_vessel = {
        tumour_surface.iter().any(|&i| {
            let [nx, ny, _] = dims;
            [i.checked_sub(1), Some(i + 1), i.checked_sub(nx), Some(i + nx), i.checked_sub(nx * ny), Some(i + nx * ny)]
                .into_iter()
                .flatten()
                .any(|n| heat_sinks.get(n).copied().unwrap_or(false))
        })
    };
    indication.push(check(
        "IND-4",
        if touches_vessel { Status::Warn } else { Status::Pass },
        None,
        None,
        if touches_vessel { "tumour abuts a vessel >= 3 mm: check for macrovascular invasion" } else { "no contact with a vessel >= 3 mm in the images (extrahepatic disease and bile-duct invasion are for the clinician)" },
    ));

    // Skin entries.
    // The skin: body voxels with a neighbour outside the body (not at the volume's edge).
    let skin: Vec<usize> = {
        let bcrop = crop;
        let inner = boundary(&bcrop.extract(&body), bcrop.dims, false);
        // Box faces that are the volume's faces are not skin.
        inner
            .into_iter()
            .map(|i| bcrop.full_index(i))
            .filter(|&i| {
                let [nx, ny, nz] = dims;
                let (a, b, c) = (i % nx, (i / nx) % ny, i / (nx * ny));
                !(a == 0 || b == 0 || c == 0 || a + 1 == nx || b + 1 == ny || c + 1 == nz)
            })
            .collect()
    };
    if skin.is_empty() {
        return Err(PlanError::NoSkin);
    }
    let (ymin, ymax) =
        skin.iter().map(|&i| grid.lps(i).y).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let y_cut = ymax - rules.exclude_posterior_fraction * (ymax - ymin);
    let mut cells = std::collections::HashSet::new();
    let entries: Vec<Vector3<f64>> = skin
        .iter()
        .map(|&i| grid.lps(i))
        .filter(|p| p.y <= y_cut)
        .filter(|p| cells.insert((p / rules.entry_spacing_mm).map(|x| x.floor() as i64).as_slice().to_vec()))
        .collect();
    // The spine's midline for PATH-3.
    let spine_x = rows.crop(Class::Spine, 0).and_then(|c| {
        let (sum, n) = (0..c.dims.iter().product::<usize>())
            .map(|i| c.full_index(i))
            .filter(|&i| classes[i] == Class::Spine)
            .fold((0.0, 0usize), |(s, n), i| (s + grid.lps(i).x, n + 1));
        (n > 0).then(|| sum / n as f64)
    });

    // Path stage.
    let clearance_needed = rules.needle_radius_mm + rules.targeting_error_mm;
    let max_depth = rules.needle_length_mm - rules.path6_reserve_mm;
    let step = min_spacing / 2.0;
    let mut failures: BTreeMap<&'static str, usize> = BTreeMap::new();
    struct Cand {
        entry: Vector3<f64>,
        axis: Vector3<f64>,
        path: PathResult,
        checks: Vec<RuleCheck>,
    }
    let path_checks = |p: &PathResult| -> Vec<RuleCheck> {
        let mut v = Vec::new();
        v.push(check(
            "PATH-1",
            if p.clearance >= clearance_needed { Status::Pass } else { Status::Fail },
            Some(p.clearance),
            Some(clearance_needed),
            match p.nearest {
                Some(c) => format!("shaft clearance to the nearest {c:?} (needle radius + targeting error required)"),
                None => "shaft clearance to the nearest structure to avoid (needle radius + targeting error required)"
                    .to_string(),
            },
        ));
        v.push(check(
            "PATH-2",
            if p.liver_before_tumour >= rules.path2_min_liver_mm { Status::Pass } else { Status::Fail },
            Some(p.liver_before_tumour),
            Some(rules.path2_min_liver_mm),
            "normal liver crossed before the tumour",
        ));
        v.push(match (p.intercostal, p.lateral_from_spine) {
            (false, _) => check("PATH-3", Status::Pass, None, None, "not an intercostal entry"),
            (true, None) => {
                check("PATH-3", Status::NotAssessed, None, None, "intercostal entry; no spine in the label map")
            }
            (true, Some(l)) => check(
                "PATH-3",
                if l < rules.path3_fail_mm {
                    Status::Fail
                } else if l < rules.path3_warn_mm {
                    Status::Warn
                } else {
                    Status::Pass
                },
                Some(l),
                Some(rules.path3_warn_mm),
                "intercostal entry: lateral distance from the spinous process",
            ),
        });
        v.push(match (rules.path4_enabled, p.closer_to_upper_rib) {
            (true, Some(true)) => check(
                "PATH-4",
                Status::Warn,
                None,
                None,
                "intercostal path runs nearer the upper rib's inferior border (intercostal vessels)",
            ),
            (true, Some(false)) => check("PATH-4", Status::Pass, None, None, "intercostal path above the lower rib"),
            _ => check("PATH-4", Status::Pass, None, None, "not an intercostal entry"),
        });
        v.push(if p.lung_min <= 0.0 {
            check("PATH-5", Status::Fail, Some(0.0), Some(rules.path5_warn_within_mm), "crosses the lung")
        } else if p.lung_min < rules.path5_warn_within_mm {
            check(
                "PATH-5",
                Status::Warn,
                Some(p.lung_min),
                Some(rules.path5_warn_within_mm),
                "trans-pleural: passes close to the lung",
            )
        } else {
            check(
                "PATH-5",
                Status::Pass,
                Some(p.lung_min.min(1e6)),
                Some(rules.path5_warn_within_mm),
                "distance to the lung",
            )
        });
        v.push(check(
            "PATH-6",
            if p.depth <= max_depth { Status::Pass } else { Status::Fail },
            Some(p.depth),
            Some(max_depth),
            "insertion depth (usable length minus reserve)",
        ));
        v
    };
    let candidates = entries.len();
    let shaft = Shaft {
        grid: &grid,
        classes: &classes,
        maps: &maps,
        spine_x,
        step,
        bone_detect: rules.path3_intercostal_detect_mm,
        needed: clearance_needed,
    };
    let mut feasible_paths: Vec<Cand> = Vec::new();
    // Every candidate line is independent: split them over the cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
    let per = entries.len().div_ceil(threads).max(1);
    let evaluated: Vec<(Vector3<f64>, Vector3<f64>, Option<PathResult>)> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(per)
            .map(|part| {
                let shaft = &shaft;
                s.spawn(move || {
                    part.iter()
                        .map(|e| {
                            let axis = (centre - e).normalize();
                            let tip = centre + axis * zone.centre_from_tip_mm;
                            let p = ((tip - e).norm() <= max_depth + 1e-9).then(|| walk(shaft, e, &tip));
                            (*e, axis, p)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).flatten().collect()
    });
    for (e, axis, p) in evaluated {
        let Some(p) = p else {
            *failures.entry("PATH-6").or_insert(0) += 1;
            continue;
        };
        let checks = path_checks(&p);
        let mut failed = false;
        for c in &checks {
            if c.status == Status::Fail {
                *failures.entry(c.rule).or_insert(0) += 1;
                failed = true;
            }
        }
        if !failed {
            feasible_paths.push(Cand { entry: e, axis, path: p, checks });
        }
    }

    let path_feasible_total = feasible_paths.len();
    // Zone stage: tumour boundary points and organ-at-risk points near the target.
    let tb: Vec<Vector3<f64>> = {
        let b = &tumour_surface;
        let stride = (b.len() / 400).max(1);
        b.iter().step_by(stride).map(|&i| grid.lps(i)).collect()
    };
    let reach = zone.long_mm / 2.0 + rules.oar2_min_mm.max(rules.oar1_min_mm).max(rules.oar3_min_mm) + 10.0 + radius;
    let near: Vec<usize> = {
        let lo = grid.inv * (centre - Vector3::repeat(reach) - grid.origin);
        let hi = grid.inv * (centre + Vector3::repeat(reach) - grid.origin);
        let (a, b) = (lo.inf(&hi), lo.sup(&hi));
        let [nx, ny, nz] = dims;
        let clamp = |x: f64, n: usize| (x.max(0.0) as usize).min(n.saturating_sub(1));
        let mut v = Vec::new();
        for k in clamp(a.z.floor(), nz)..=clamp(b.z.ceil(), nz) {
            for j in clamp(a.y.floor(), ny)..=clamp(b.y.ceil(), ny) {
                for i in clamp(a.x.floor(), nx)..=clamp(b.x.ceil(), nx) {
                    v.push((k * ny + j) * nx + i);
                }
            }
        }
        v
    };
    // Organ-at-risk voxels near the zone, nearest to the target first (every single zone is
    // centred there, so the search below stops early).
    let oar_points = |f: &dyn Fn(usize) -> bool| -> Vec<Vector3<f64>> {
        let mut pts: Vec<Vector3<f64>> = near.iter().copied().filter(|&i| f(i)).map(|i| grid.lps(i)).collect();
        pts.sort_by(|a, b| (a - centre).norm_squared().total_cmp(&(b - centre).norm_squared()));
        pts
    };
    let ducts = oar_points(&|i| classes[i] == Class::BileDuct);
    let oar2 = oar_points(&|i| matches!(classes[i], Class::Gallbladder | Class::Bowel | Class::Heart | Class::Lung));
    let oar2_class = |p: &Vector3<f64>| grid.index(p).map(|i| classes[i]);
    let big_vessels = oar_points(&|i| heat_sinks[i]);
    let min_depth = |s: &[Spheroid], pts: &[Vector3<f64>]| -> (f64, Option<Vector3<f64>>) {
        // Smallest distance from the zone union to any point (negative when a point is inside).
        // Points come nearest the target first; a point farther than (half long axis + best)
        // from every zone centre cannot do better, and neither can any later one when the
        // zones are centred on the target.
        let mut best = (f64::INFINITY, None);
        let centred = s.iter().all(|z| (z.centre - centre).norm() < 1e-9);
        for p in pts {
            let lower = s.iter().map(|z| (p - z.centre).norm() - z.a.max(z.b)).fold(f64::INFINITY, f64::min);
            if lower > best.0 {
                if centred {
                    break;
                }
                continue;
            }
            let d = s.iter().map(|z| -z.depth(p)).fold(f64::INFINITY, f64::min);
            if d < best.0 {
                best = (d, Some(*p));
            }
        }
        best
    };
    let margin_of = |s: &[Spheroid]| -> f64 {
        tb.iter().map(|p| s.iter().map(|z| z.depth(p)).fold(f64::NEG_INFINITY, f64::max)).fold(f64::INFINITY, f64::min)
    };
    let zone_checks = |s: &[Spheroid], margin: f64| -> Vec<RuleCheck> {
        let mut v = Vec::new();
        v.push(check(
            "MAR-1",
            if margin < rules.mar1_fail_mm {
                Status::Fail
            } else if margin < rules.mar1_warn_mm {
                Status::Warn
            } else {
                Status::Pass
            },
            Some(margin),
            Some(rules.mar1_fail_mm),
            "smallest distance from the tumour surface to the ablation-zone surface",
        ));
        let (d1, _) = min_depth(s, &ducts);
        v.push(if ducts.is_empty() {
            check("OAR-1", Status::Pass, None, Some(rules.oar1_min_mm), "no bile duct near the zone")
        } else {
            check(
                "OAR-1",
                if d1 >= rules.oar1_min_mm { Status::Pass } else { Status::Fail },
                Some(d1),
                Some(rules.oar1_min_mm),
                "zone to the nearest bile duct",
            )
        });
        let (d2, at) = min_depth(s, &oar2);
        v.push(if oar2.is_empty() {
            check(
                "OAR-2",
                Status::Pass,
                None,
                Some(rules.oar2_min_mm),
                "no gallbladder, bowel, heart or lung near the zone",
            )
        } else {
            let what = at.and_then(|p| oar2_class(&p)).map_or("organ".to_string(), |c| format!("{c:?}"));
            check(
                "OAR-2",
                if d2 >= rules.oar2_min_mm { Status::Pass } else { Status::HighRisk },
                Some(d2),
                Some(rules.oar2_min_mm),
                if d2 >= rules.oar2_min_mm {
                    format!("zone to the nearest {what}")
                } else {
                    format!("HIGH RISK: zone {d2:.1} mm from the {what}; needs an explicit, logged override")
                },
            )
        });
        let (d3, _) = min_depth(s, &big_vessels);
        v.push(if big_vessels.is_empty() || d3 >= rules.oar3_min_mm {
            check(
                "OAR-3",
                Status::Pass,
                big_vessels.is_empty().then_some(f64::INFINITY).or(Some(d3)).filter(|x| x.is_finite()),
                Some(rules.oar3_min_mm),
                "no vessel >= 3 mm in or near the zone",
            )
        } else {
            check(
                "OAR-3",
                Status::Warn,
                Some(d3),
                Some(rules.oar3_min_mm),
                "heat sink: a vessel >= 3 mm in or near the zone; the margin on that side is unreliable",
            )
        });
        v
    };
    let spheroid = |c: Vector3<f64>, axis: Vector3<f64>| Spheroid {
        centre: c,
        axis,
        a: zone.long_mm / 2.0,
        b: zone.short_mm / 2.0,
    };

    // Single zone per direction; directions binned at ~3 degrees share the zone result.
    let mut cache: BTreeMap<(i64, i64, i64), (f64, Vec<RuleCheck>)> = BTreeMap::new();
    let mut plans: Vec<Plan> = Vec::new();
    let mut feasible = 0;
    let mut high_risk = 0;
    let mut zone_failures: BTreeMap<&'static str, usize> = BTreeMap::new();
    // Zone rules on the path-feasible candidates, best path first, in batches until enough plans
    // are found (the report says how many were evaluated).
    let path_score =
        |c: &Cand| c.path.clearance.min(20.0) / 20.0 - c.path.depth / rules.needle_length_mm - c.axis.z.abs();
    feasible_paths.sort_by(|a, b| path_score(b).total_cmp(&path_score(a)));
    let want = 4 * input.max_plans.max(1);
    let mut zone_evaluated = 0;
    for batch in feasible_paths.chunks(256) {
        if plans.len() >= want {
            break;
        }
        for c in batch {
            zone_evaluated += 1;
            let key = (c.axis * 20.0).map(|x| x.round() as i64);
            let (margin, zc) = cache
                .entry((key.x, key.y, key.z))
                .or_insert_with(|| {
                    let s = [spheroid(centre, c.axis)];
                    let m = margin_of(&s);
                    (m, zone_checks(&s, m))
                })
                .clone();
            let mut failed = false;
            for z in &zc {
                if z.status == Status::Fail {
                    *zone_failures.entry(z.rule).or_insert(0) += 1;
                    failed = true;
                }
            }
            if failed {
                continue;
            }
            if zc.iter().any(|z| z.status == Status::HighRisk) {
                high_risk += 1;
            } else {
                feasible += 1;
            }
            let tip = centre + c.axis * zone.centre_from_tip_mm;
            let mut checks = c.checks.clone();
            checks.extend(zc);
            plans.push(make_plan(vec![(c.entry, tip, centre, c.axis)], &c.path, margin, checks, zone, rules));
        }
    }

    // MAR-3: no single zone covers the tumour with margin: overlapping zones along and beside
    // the best path-feasible tracks.
    let single_fails_margin = feasible == 0 && zone_failures.get("MAR-1").is_some_and(|n| *n > 0);
    if single_fails_margin {
        let mut tracks: Vec<&Cand> = feasible_paths.iter().collect();
        tracks.sort_by(|a, b| b.path.clearance.total_cmp(&a.path.clearance));
        let mut tried = std::collections::HashSet::new();
        for c in tracks {
            let key = (c.axis * 15.0).map(|x| x.round() as i64);
            if !tried.insert((key.x, key.y, key.z)) || tried.len() > 12 {
                continue;
            }
            if let Some(p) = multi_zone(
                &shaft,
                c.entry,
                c.axis,
                centre,
                radius,
                &tb,
                zone,
                rules,
                &spheroid,
                &path_checks,
                &margin_of,
                &zone_checks,
            ) {
                if p.high_risk {
                    high_risk += 1;
                } else {
                    feasible += 1;
                }
                plans.push(p);
            }
        }
    }
    for (k, v) in zone_failures {
        *failures.entry(k).or_insert(0) += v;
    }
    // Safe plans first, each group best first.
    plans.sort_by(|a, b| a.high_risk.cmp(&b.high_risk).then(b.score.total_cmp(&a.score)));
    plans.truncate(input.max_plans.max(1));
    for p in &mut plans {
        if p.nearest_structure.is_none() && p.clearance_mm <= 20.0 {
            if let Some(at) = p.closest {
                p.nearest_structure = nearest_blocking_class(
                    &grid,
                    &classes,
                    &major,
                    ct.spacing_mm,
                    &Vector3::from(at),
                    p.clearance_mm + 2.0 * min_spacing,
                );
            }
            if let (Some(c), Some(check)) = (p.nearest_structure, p.checks.iter_mut().find(|c| c.rule == "PATH-1")) {
                check.detail =
                    format!("shaft clearance to the nearest {c:?} (needle radius + targeting error required)");
            }
        }
    }
    Ok(PlanReport {
        tumour_centre_lps_mm: arr(&centre),
        tumour_diameter_mm: diameter,
        tumour_voxels: tumour_idx.len(),
        indication,
        candidates,
        path_feasible: path_feasible_total,
        zone_evaluated,
        feasible,
        high_risk,
        failures_by_rule: failures,
        plans,
        skin_source,
        tumour_surface_lps_mm: tb.iter().map(arr).collect(),
    })
}

/// MAR-1 margin of the ablation zones `zones` (each: centre and unit axis, LPS mm, of a zone of
/// `zone`'s size) over the tumour surface `surface` (as in [`PlanReport::tumour_surface_lps_mm`]):
/// the smallest depth of a surface point inside the zone that covers it deepest, mm (negative:
/// a point lies outside every zone). What a plan's margin is, for zones where they really are.
#[must_use]
pub fn margin_mm(surface: &[[f64; 3]], zone: &crate::Zone, zones: &[([f64; 3], [f64; 3])]) -> f64 {
    let spheroids: Vec<Spheroid> = zones
        .iter()
        .map(|(c, a)| Spheroid {
            centre: Vector3::from(*c),
            axis: Vector3::from(*a).try_normalize(1e-12).unwrap_or_else(Vector3::z),
            a: zone.long_mm / 2.0,
            b: zone.short_mm / 2.0,
        })
        .collect();
    surface
        .iter()
        .map(|p| {
            let p = Vector3::from(*p);
            spheroids.iter().map(|z| z.depth(&p)).fold(f64::NEG_INFINITY, f64::max)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Greedy cover of the tumour plus margin by zones on parallel tracks around one direction.
#[allow(clippy::too_many_arguments)]
fn multi_zone(
    shaft: &Shaft<'_>,
    entry: Vector3<f64>,
    axis: Vector3<f64>,
    centre: Vector3<f64>,
    radius: f64,
    tb: &[Vector3<f64>],
    zone: &Zone,
    rules: &Rules,
    spheroid: &dyn Fn(Vector3<f64>, Vector3<f64>) -> Spheroid,
    path_checks: &dyn Fn(&PathResult) -> Vec<RuleCheck>,
    margin_of: &dyn Fn(&[Spheroid]) -> f64,
    zone_checks: &dyn Fn(&[Spheroid], f64) -> Vec<RuleCheck>,
) -> Option<Plan> {
    // Every tumour surface point must lie at least the MAR-1 margin deep inside one zone (the
    // union's margin is at least the largest single-zone depth: conservative).
    let need = tb;
    let deep = rules.mar1_fail_mm + 0.25;
    let e1 = axis.cross(&if axis.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() }).normalize();
    let e2 = axis.cross(&e1);
    let (a, b) = (zone.long_mm / 2.0, zone.short_mm / 2.0);
    let mut centres = Vec::new();
    let axial: Vec<f64> = (-4..=4).map(|k| f64::from(k) * a / 4.0).filter(|x| x.abs() <= radius).collect();
    for &ax in &axial {
        centres.push(centre + axis * ax);
        for ring in [0.3, 0.45, 0.6, 0.75] {
            let r = ring * b;
            if r > radius {
                continue;
            }
            for k in 0..8 {
                let th = std::f64::consts::TAU * f64::from(k) / 8.0;
                centres.push(centre + axis * ax + (e1 * th.cos() + e2 * th.sin()) * r);
            }
        }
    }
    // Which surface points each candidate zone covers, once; then greedy set cover.
    let covers: Vec<Vec<bool>> = centres
        .iter()
        .map(|c| {
            let s = spheroid(*c, axis);
            need.iter().map(|p| s.depth(p) >= deep).collect()
        })
        .collect();
    let mut covered = vec![false; need.len()];
    let mut chosen: Vec<Vector3<f64>> = Vec::new();
    while covered.iter().any(|c| !c) && chosen.len() < rules.mar3_max_positions {
        let (gain, best) = covers
            .iter()
            .enumerate()
            .map(|(k, cov)| (cov.iter().zip(&covered).filter(|(c, done)| **c && !**done).count(), k))
            .max_by_key(|(n, _)| *n)?;
        if gain == 0 {
            return None;
        }
        for (done, c) in covered.iter_mut().zip(&covers[best]) {
            *done |= *c;
        }
        chosen.push(centres[best]);
    }
    if covered.iter().any(|c| !c) {
        return None;
    }
    let zones: Vec<Spheroid> = chosen.iter().map(|c| spheroid(*c, axis)).collect();
    let margin = margin_of(&zones);
    let zc = zone_checks(&zones, margin);
    if zc.iter().any(|c| c.status == Status::Fail) {
        return None;
    }
    // Every track (lateral offset) must pass the path rules.
    let mut positions = Vec::new();
    let mut worst_path: Option<PathResult> = None;
    let mut checks: Vec<RuleCheck> = Vec::new();
    for zc_centre in &chosen {
        let lateral = (zc_centre - centre) - axis * (zc_centre - centre).dot(&axis);
        let e = entry + lateral;
        let tip = zc_centre + axis * zone.centre_from_tip_mm;
        let p = walk(shaft, &e, &tip);
        let pc = path_checks(&p);
        if pc.iter().any(|c| c.status == Status::Fail) {
            return None;
        }
        if worst_path.as_ref().is_none_or(|w| p.clearance < w.clearance) {
            checks = pc;
            worst_path = Some(p);
        }
        positions.push((e, tip, *zc_centre, axis));
    }
    let worst = worst_path?;
    checks.extend(zc);
    checks.push(check(
        "MAR-3",
        Status::Pass,
        Some(positions.len() as f64),
        Some(rules.mar3_max_positions as f64),
        "overlapping ablations (needle positions) to cover tumour and margin",
    ));
    Some(make_plan(positions, &worst, margin, checks, zone, rules))
}

/// One needle placement: entry, tip, zone centre, axis.
type Placement = (Vector3<f64>, Vector3<f64>, Vector3<f64>, Vector3<f64>);

fn make_plan(
    positions: Vec<Placement>,
    path: &PathResult,
    margin: f64,
    checks: Vec<RuleCheck>,
    zone: &Zone,
    rules: &Rules,
) -> Plan {
    let axis = positions.first().map_or(Vector3::z(), |p| p.3);
    let angle = axis.z.abs().asin().to_degrees();
    let warnings = checks.iter().filter(|c| c.status == Status::Warn).count() as f64;
    let high_risk = checks.iter().any(|c| c.status == Status::HighRisk);
    let n = positions.len() as f64;
    // docs/planning.md "Ranking".
    let score = margin.min(15.0) / 15.0 + 0.5 * path.clearance.min(20.0) / 20.0
        - 0.3 * path.depth / rules.needle_length_mm
        - 0.2 * angle / 90.0
        - 0.1 * warnings
        - 0.2 * (n - 1.0);
    Plan {
        score,
        positions: positions
            .iter()
            .map(|(e, t, c, a)| Position {
                entry: Point::from_nalgebra((*e).into()),
                tip: Point::from_nalgebra((*t).into()),
                zone_centre: Point::from_nalgebra((*c).into()),
                axis: Vector::from_nalgebra(*a),
                depth_mm: (t - e).norm(),
            })
            .collect(),
        zone_long_mm: zone.long_mm,
        zone_short_mm: zone.short_mm,
        margin_mm: margin,
        clearance_mm: path.clearance,
        nearest_structure: path.nearest,
        closest: Some(arr(&path.closest)),
        angle_to_axial_deg: angle,
        checks,
        high_risk,
    }
}
