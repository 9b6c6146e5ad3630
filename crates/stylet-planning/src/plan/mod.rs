//! The planner: from a CT, its label map and a target tumour to ranked needle trajectories, each
//! with a rule-by-rule report (docs/planning.md). One module per stage and rule family:
//! [`grid`] (voxels, classes, the body), [`tumour`], [`indication`] (IND-1..4), [`maps`] (the
//! distance maps), [`entries`] (the skin), [`path`] (PATH-1..6), [`zone`] (MAR-1, OAR-1..3),
//! [`multi_zone`] (MAR-3), [`rank`] (score and order).

use std::collections::BTreeMap;

use stylet_core::frame::{Ct, Point, Vector};
use stylet_imaging::Volume;

use crate::config::{Class, LabelTable, Rules, Zone};
use crate::geometry::Crop;

mod entries;
mod grid;
mod indication;
mod maps;
mod multi_zone;
mod path;
mod rank;
mod tumour;
mod zone;

pub use zone::margin_mm;

use grid::{body_mask, classify, Grid};
use maps::{major_vessels, Maps};
use path::{PathRules, PathStage, Shaft};
use tumour::Tumour;
use zone::ZoneRules;

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
        /// Centre (the CT's LPS frame, mm).
        centre: Point<Ct>,
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

pub(crate) fn check(
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
    /// Where the shaft comes nearest to it.
    #[serde(skip)]
    pub closest: Option<Point<Ct>>,
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
    /// Tumour centroid (the CT's LPS frame, mm).
    #[serde(rename = "tumour_centre_lps_mm")]
    pub tumour_centre: Point<Ct>,
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
    /// The tumour's surface points the margins are measured on.
    #[serde(skip)]
    pub tumour_surface: Vec<Point<Ct>>,
    /// The tumour's voxels (indices into the CT's voxels), for results drawn on the CT.
    #[serde(skip)]
    pub tumour_voxel_indices: Vec<usize>,
}

impl Plan {
    /// Which voxels of `grid` lie within any of this plan's ablation zones (ellipsoids of
    /// `zone_long_mm` along each position's axis and `zone_short_mm` across, at its centre).
    #[must_use]
    pub fn zone_mask(&self, grid: &Volume) -> Vec<bool> {
        let [nx, ny, nz] = grid.dims;
        let mut mask = vec![false; nx * ny * nz];
        for p in &self.positions {
            crate::heat_sink::ZoneShape::ellipsoid(
                p.zone_centre,
                p.axis.to_nalgebra(),
                self.zone_long_mm,
                self.zone_short_mm,
            )
            .mark(grid, &mut mask);
        }
        mask
    }
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

/// Plans.
///
/// # Errors
/// A [`PlanError`] when the inputs cannot be planned on at all ("no safe path" is not an error:
/// it is a report with no plans and the reasons).
pub fn plan(input: &PlanInput<'_>) -> Result<PlanReport, PlanError> {
    let (ct, labels, rules, zone) = (input.ct, input.labels, &input.rules, &input.zone);
    labels.check_same_grid(ct, 0.01).map_err(PlanError::GridMismatch)?;
    let grid = Grid::new(ct).ok_or_else(|| PlanError::GridMismatch("singular voxel grid".into()))?;
    let (mut classes, mut rows) = classify(labels, input.table)?;
    let min_spacing = ct.spacing_mm.iter().copied().fold(f64::INFINITY, f64::min);
    let tumour = Tumour::find(input, &grid, &mut classes, &mut rows)?;

    // Distance maps, over the body's bounding box only (entries are on its skin).
    let vessel_rows = rows.crop(Class::Vessel, 0);
    let major = major_vessels(&classes, vessel_rows, ct.spacing_mm, rules.path1_min_vessel_diameter_mm);
    let own_heat_sinks = ((rules.oar3_min_vessel_diameter_mm - rules.path1_min_vessel_diameter_mm).abs() > 1e-9)
        .then(|| major_vessels(&classes, vessel_rows, ct.spacing_mm, rules.oar3_min_vessel_diameter_mm));
    let heat_sinks: &[bool] = own_heat_sinks.as_deref().unwrap_or(&major);
    let (body, skin_source) = body_mask(ct, &classes, &rows);
    let crop = Crop::around(&body, ct.dims, 2).ok_or(PlanError::NoSkin)?;
    let maps = Maps::new(&classes, &major, crop, ct.spacing_mm);
    let surface = tumour.surface()?;
    let indication = indication::checks(&rows, &classes, ct.spacing_mm, tumour.diameter(), &surface, heat_sinks, rules);

    // Path stage: every skin entry's line to the tip.
    let entries = entries::skin_entries(&grid, &body, crop, rules)?;
    let path_rules = PathRules::new(rules);
    let shaft = Shaft {
        grid: &grid,
        classes: &classes,
        maps: &maps,
        spine_x: entries::spine_midline(&grid, &rows, &classes),
        step: min_spacing / 2.0,
        bone_detect: rules.path3_intercostal_detect_mm,
        needed: path_rules.clearance_needed,
    };
    let PathStage { feasible: mut cands, mut failures } =
        path::evaluate(&shaft, &path_rules, &entries, tumour.centre, zone);
    let path_feasible = cands.len();

    // Zone stage: one zone per direction; when none covers the tumour with its margin, MAR-3.
    let zr = ZoneRules::new(&grid, &classes, heat_sinks, &surface, tumour.centre, tumour.radius, zone, rules);
    let mut stage = zone::single_zones(&zr, &mut cands, input.max_plans);
    if stage.feasible == 0 && stage.failures.get("MAR-1").is_some_and(|n| *n > 0) {
        for p in multi_zone::plans(&shaft, &path_rules, &zr, &cands, tumour.radius) {
            if p.high_risk {
                stage.high_risk += 1;
            } else {
                stage.feasible += 1;
            }
            stage.plans.push(p);
        }
    }
    for (k, v) in stage.failures {
        *failures.entry(k).or_insert(0) += v;
    }
    let plans = rank::best(stage.plans, &grid, &classes, &major, ct.spacing_mm, input.max_plans);
    Ok(PlanReport {
        tumour_centre: Point::from_coords(tumour.centre),
        tumour_diameter_mm: tumour.diameter(),
        tumour_voxels: tumour.voxels.len(),
        indication,
        candidates: entries.len(),
        path_feasible,
        zone_evaluated: stage.evaluated,
        feasible: stage.feasible,
        high_risk: stage.high_risk,
        failures_by_rule: failures,
        plans,
        skin_source,
        tumour_surface: zr.surface.iter().copied().map(Point::from_coords).collect(),
        tumour_voxel_indices: tumour.voxels.clone(),
    })
}
