//! The path rules (PATH-1..6): one shaft from a skin entry to the tip, walked through the maps.

use std::collections::BTreeMap;

use nalgebra::Vector3;

use super::grid::Grid;
use super::maps::Maps;
use super::{check, RuleCheck, Status};
use crate::config::{Class, Rules, Zone};

pub(super) struct PathResult {
    pub(super) depth: f64,
    pub(super) clearance: f64,
    /// Vessel when a vessel is nearest; otherwise resolved from `closest` for reported plans.
    pub(super) nearest: Option<Class>,
    /// The shaft point nearest a structure it must avoid.
    pub(super) closest: Vector3<f64>,
    pub(super) liver_before_tumour: f64,
    pub(super) lung_min: f64,
    pub(super) intercostal: bool,
    pub(super) lateral_from_spine: Option<f64>,
    pub(super) closer_to_upper_rib: Option<bool>,
}

/// What a shaft evaluation reads.
pub(super) struct Shaft<'a> {
    pub(super) grid: &'a Grid,
    pub(super) classes: &'a [Class],
    pub(super) maps: &'a Maps,
    /// LPS x of the spine's midline.
    pub(super) spine_x: Option<f64>,
    /// Sampling step along the shaft, mm.
    pub(super) step: f64,
    /// Bone this close to the first 40 mm makes the entry intercostal (PATH-3), mm.
    pub(super) bone_detect: f64,
    /// PATH-1's required clearance, mm.
    pub(super) needed: f64,
}

/// Exact distance from `p` to the nearest blocking voxel centre, searched within `r` mm
/// (`r` when none is closer).
pub(super) fn exact_clearance(maps: &Maps, grid: &Grid, p: &Vector3<f64>, r: f64) -> f64 {
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
pub(super) fn walk(sh: &Shaft<'_>, entry: &Vector3<f64>, tip: &Vector3<f64>) -> PathResult {
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
pub(super) fn nearest_blocking_class(
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

/// PATH-1..6 for one shaft.
pub(super) struct PathRules<'a> {
    rules: &'a Rules,
    /// PATH-1's required clearance: the needle's radius plus the targeting error, mm.
    pub(super) clearance_needed: f64,
    /// PATH-6's deepest insertion: the usable length less the reserve, mm.
    pub(super) max_depth: f64,
}

impl<'a> PathRules<'a> {
    pub(super) fn new(rules: &'a Rules) -> Self {
        PathRules {
            rules,
            clearance_needed: rules.needle_radius_mm + rules.targeting_error_mm,
            max_depth: rules.needle_length_mm - rules.path6_reserve_mm,
        }
    }

    /// Every path rule's verdict on a walked shaft.
    pub(super) fn checks(&self, p: &PathResult) -> Vec<RuleCheck> {
        let mut v = Vec::new();
        v.push(check(
            "PATH-1",
            if p.clearance >= self.clearance_needed { Status::Pass } else { Status::Fail },
            Some(p.clearance),
            Some(self.clearance_needed),
            match p.nearest {
                Some(c) => format!("shaft clearance to the nearest {c:?} (needle radius + targeting error required)"),
                None => "shaft clearance to the nearest structure to avoid (needle radius + targeting error required)"
                    .to_string(),
            },
        ));
        v.push(check(
            "PATH-2",
            if p.liver_before_tumour >= self.rules.path2_min_liver_mm { Status::Pass } else { Status::Fail },
            Some(p.liver_before_tumour),
            Some(self.rules.path2_min_liver_mm),
            "normal liver crossed before the tumour",
        ));
        v.push(match (p.intercostal, p.lateral_from_spine) {
            (false, _) => check("PATH-3", Status::Pass, None, None, "not an intercostal entry"),
            (true, None) => {
                check("PATH-3", Status::NotAssessed, None, None, "intercostal entry; no spine in the label map")
            }
            (true, Some(l)) => check(
                "PATH-3",
                if l < self.rules.path3_fail_mm {
                    Status::Fail
                } else if l < self.rules.path3_warn_mm {
                    Status::Warn
                } else {
                    Status::Pass
                },
                Some(l),
                Some(self.rules.path3_warn_mm),
                "intercostal entry: lateral distance from the spinous process",
            ),
        });
        v.push(match (self.rules.path4_enabled, p.closer_to_upper_rib) {
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
            check("PATH-5", Status::Fail, Some(0.0), Some(self.rules.path5_warn_within_mm), "crosses the lung")
        } else if p.lung_min < self.rules.path5_warn_within_mm {
            check(
                "PATH-5",
                Status::Warn,
                Some(p.lung_min),
                Some(self.rules.path5_warn_within_mm),
                "trans-pleural: passes close to the lung",
            )
        } else {
            check(
                "PATH-5",
                Status::Pass,
                Some(p.lung_min.min(1e6)),
                Some(self.rules.path5_warn_within_mm),
                "distance to the lung",
            )
        });
        v.push(check(
            "PATH-6",
            if p.depth <= self.max_depth { Status::Pass } else { Status::Fail },
            Some(p.depth),
            Some(self.max_depth),
            "insertion depth (usable length minus reserve)",
        ));
        v
    }
}

/// A candidate line that passes every path rule.
pub(super) struct Cand {
    pub(super) entry: Vector3<f64>,
    pub(super) axis: Vector3<f64>,
    pub(super) path: PathResult,
    pub(super) checks: Vec<RuleCheck>,
}

/// The path stage: the path-feasible candidates, and how many failed each rule.
pub(super) struct PathStage {
    pub(super) feasible: Vec<Cand>,
    pub(super) failures: BTreeMap<&'static str, usize>,
}

/// Walks the line from every entry to the tip that puts the zone's centre on `centre` (the
/// lines are independent: split over the cores) and keeps the ones that pass every path rule.
pub(super) fn evaluate(
    shaft: &Shaft<'_>,
    rules: &PathRules<'_>,
    entries: &[Vector3<f64>],
    centre: Vector3<f64>,
    zone: &Zone,
) -> PathStage {
    let max_depth = rules.max_depth;
    let mut failures: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut feasible: Vec<Cand> = Vec::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
    let per = entries.len().div_ceil(threads).max(1);
    let evaluated: Vec<(Vector3<f64>, Vector3<f64>, Option<PathResult>)> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(per)
            .map(|part| {
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
        let checks = rules.checks(&p);
        let mut failed = false;
        for c in &checks {
            if c.status == Status::Fail {
                *failures.entry(c.rule).or_insert(0) += 1;
                failed = true;
            }
        }
        if !failed {
            feasible.push(Cand { entry: e, axis, path: p, checks });
        }
    }
    PathStage { feasible, failures }
}
