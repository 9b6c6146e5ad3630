//! The zone rules (MAR-1, OAR-1..3) on an ablation zone or a union of zones, and the stage that
//! places one zone per candidate direction.

use std::collections::BTreeMap;

use nalgebra::Vector3;
use stylet_core::frame::{Ct, Point, Vector};

use super::grid::Grid;
use super::path::Cand;
use super::rank::make_plan;
use super::{check, Plan, RuleCheck, Status};
use crate::config::{Class, Rules, Zone};
use crate::geometry::Spheroid;

/// What the zone rules measure against: the tumour's surface and the organs at risk near it.
pub(super) struct ZoneRules<'a> {
    pub(super) rules: &'a Rules,
    pub(super) zone: &'a Zone,
    grid: &'a Grid,
    classes: &'a [Class],
    /// The tumour's centre: every single zone is centred there.
    pub(super) centre: Vector3<f64>,
    /// The tumour's surface points (about 400) the margin is measured on, LPS mm.
    pub(super) surface: Vec<Vector3<f64>>,
    /// Organ-at-risk voxels near the target, nearest first: bile ducts (OAR-1), gallbladder,
    /// bowel, heart and lung (OAR-2), vessels wide enough to be heat sinks (OAR-3).
    ducts: Vec<Vector3<f64>>,
    oar2: Vec<Vector3<f64>>,
    big_vessels: Vec<Vector3<f64>>,
}

impl<'a> ZoneRules<'a> {
    /// `surface`: the tumour's surface voxels; `heat_sinks`: the vessels OAR-3 counts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        grid: &'a Grid,
        classes: &'a [Class],
        heat_sinks: &[bool],
        surface: &[usize],
        centre: Vector3<f64>,
        radius: f64,
        zone: &'a Zone,
        rules: &'a Rules,
    ) -> Self {
        let stride = (surface.len() / 400).max(1);
        let tb: Vec<Vector3<f64>> = surface.iter().step_by(stride).map(|&i| grid.lps(i)).collect();
        let reach =
            zone.long_mm / 2.0 + rules.oar2_min_mm.max(rules.oar1_min_mm).max(rules.oar3_min_mm) + 10.0 + radius;
        let near: Vec<usize> = {
            let lo = grid.inv * (centre - Vector3::repeat(reach) - grid.origin);
            let hi = grid.inv * (centre + Vector3::repeat(reach) - grid.origin);
            let (a, b) = (lo.inf(&hi), lo.sup(&hi));
            let [nx, ny, nz] = grid.dims;
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
        // Nearest to the target first (every single zone is centred there, so the search in
        // `min_depth` stops early).
        let oar_points = |f: &dyn Fn(usize) -> bool| -> Vec<Vector3<f64>> {
            let mut pts: Vec<Vector3<f64>> = near.iter().copied().filter(|&i| f(i)).map(|i| grid.lps(i)).collect();
            pts.sort_by(|a, b| (a - centre).norm_squared().total_cmp(&(b - centre).norm_squared()));
            pts
        };
        let ducts = oar_points(&|i| classes[i] == Class::BileDuct);
        let oar2 =
            oar_points(&|i| matches!(classes[i], Class::Gallbladder | Class::Bowel | Class::Heart | Class::Lung));
        let big_vessels = oar_points(&|i| heat_sinks[i]);
        ZoneRules { rules, zone, grid, classes, centre, surface: tb, ducts, oar2, big_vessels }
    }

    /// The device's zone centred at `c` along `axis`.
    pub(super) fn spheroid(&self, c: Vector3<f64>, axis: Vector3<f64>) -> Spheroid {
        Spheroid { centre: c, axis, a: self.zone.long_mm / 2.0, b: self.zone.short_mm / 2.0 }
    }

    /// Smallest distance from the zone union to any of `pts` (negative when a point is inside),
    /// and the point.
    fn min_depth(&self, s: &[Spheroid], pts: &[Vector3<f64>]) -> (f64, Option<Vector3<f64>>) {
        // Points come nearest the target first; a point farther than (half long axis + best)
        // from every zone centre cannot do better, and neither can any later one when the
        // zones are centred on the target.
        let mut best = (f64::INFINITY, None);
        let centred = s.iter().all(|z| (z.centre - self.centre).norm() < 1e-9);
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
    }

    /// MAR-1: the smallest depth of a tumour surface point inside the zone that covers it deepest.
    pub(super) fn margin(&self, s: &[Spheroid]) -> f64 {
        self.surface
            .iter()
            .map(|p| s.iter().map(|z| z.depth(p)).fold(f64::NEG_INFINITY, f64::max))
            .fold(f64::INFINITY, f64::min)
    }

    /// MAR-1 and OAR-1..3 for a zone union with margin `margin`.
    pub(super) fn checks(&self, s: &[Spheroid], margin: f64) -> Vec<RuleCheck> {
        let mut v = Vec::new();
        v.push(check(
            "MAR-1",
            if margin < self.rules.mar1_fail_mm {
                Status::Fail
            } else if margin < self.rules.mar1_warn_mm {
                Status::Warn
            } else {
                Status::Pass
            },
            Some(margin),
            Some(self.rules.mar1_fail_mm),
            "smallest distance from the tumour surface to the ablation-zone surface",
        ));
        let (d1, _) = self.min_depth(s, &self.ducts);
        v.push(if self.ducts.is_empty() {
            check("OAR-1", Status::Pass, None, Some(self.rules.oar1_min_mm), "no bile duct near the zone")
        } else {
            check(
                "OAR-1",
                if d1 >= self.rules.oar1_min_mm { Status::Pass } else { Status::Fail },
                Some(d1),
                Some(self.rules.oar1_min_mm),
                "zone to the nearest bile duct",
            )
        });
        let (d2, at) = self.min_depth(s, &self.oar2);
        v.push(if self.oar2.is_empty() {
            check(
                "OAR-2",
                Status::Pass,
                None,
                Some(self.rules.oar2_min_mm),
                "no gallbladder, bowel, heart or lung near the zone",
            )
        } else {
            let what = at
                .and_then(|p| self.grid.index(&p).map(|i| self.classes[i]))
                .map_or("organ".to_string(), |c| format!("{c:?}"));
            check(
                "OAR-2",
                if d2 >= self.rules.oar2_min_mm { Status::Pass } else { Status::HighRisk },
                Some(d2),
                Some(self.rules.oar2_min_mm),
                if d2 >= self.rules.oar2_min_mm {
                    format!("zone to the nearest {what}")
                } else {
                    format!("HIGH RISK: zone {d2:.1} mm from the {what}; needs an explicit, logged override")
                },
            )
        });
        let (d3, _) = self.min_depth(s, &self.big_vessels);
        v.push(if self.big_vessels.is_empty() || d3 >= self.rules.oar3_min_mm {
            check(
                "OAR-3",
                Status::Pass,
                self.big_vessels.is_empty().then_some(f64::INFINITY).or(Some(d3)).filter(|x| x.is_finite()),
                Some(self.rules.oar3_min_mm),
                "no vessel >= 3 mm in or near the zone",
            )
        } else {
            check(
                "OAR-3",
                Status::Warn,
                Some(d3),
                Some(self.rules.oar3_min_mm),
                "heat sink: a vessel >= 3 mm in or near the zone; the margin on that side is unreliable",
            )
        });
        v
    }
}

/// The single-zone stage: plans, how many are feasible or high-risk, zone-rule failures, and how
/// many candidates were evaluated.
pub(super) struct ZoneStage {
    pub(super) plans: Vec<Plan>,
    pub(super) feasible: usize,
    pub(super) high_risk: usize,
    pub(super) failures: BTreeMap<&'static str, usize>,
    pub(super) evaluated: usize,
}

/// One zone per candidate, centred on the tumour along the candidate's axis; directions binned at
/// ~3 degrees share the zone result. The candidates are taken best path first (`cands` is left
/// in that order), in batches until enough plans are found.
pub(super) fn single_zones(zr: &ZoneRules<'_>, cands: &mut [Cand], max_plans: usize) -> ZoneStage {
    let mut cache: BTreeMap<(i64, i64, i64), (f64, Vec<RuleCheck>)> = BTreeMap::new();
    let mut plans: Vec<Plan> = Vec::new();
    let mut feasible = 0;
    let mut high_risk = 0;
    let mut failures: BTreeMap<&'static str, usize> = BTreeMap::new();
    let path_score =
        |c: &Cand| c.path.clearance.min(20.0) / 20.0 - c.path.depth / zr.rules.needle_length_mm - c.axis.z.abs();
    cands.sort_by(|a, b| path_score(b).total_cmp(&path_score(a)));
    let want = 4 * max_plans.max(1);
    let mut evaluated = 0;
    for batch in cands.chunks(256) {
        if plans.len() >= want {
            break;
        }
        for c in batch {
            evaluated += 1;
            let key = (c.axis * 20.0).map(|x| x.round() as i64);
            let (margin, zc) = cache
                .entry((key.x, key.y, key.z))
                .or_insert_with(|| {
                    let s = [zr.spheroid(zr.centre, c.axis)];
                    let m = zr.margin(&s);
                    (m, zr.checks(&s, m))
                })
                .clone();
            let mut failed = false;
            for z in &zc {
                if z.status == Status::Fail {
                    *failures.entry(z.rule).or_insert(0) += 1;
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
            let tip = zr.centre + c.axis * zr.zone.centre_from_tip_mm;
            let mut checks = c.checks.clone();
            checks.extend(zc);
            plans.push(make_plan(vec![(c.entry, tip, zr.centre, c.axis)], &c.path, margin, checks, zr.zone, zr.rules));
        }
    }
    ZoneStage { plans, feasible, high_risk, failures, evaluated }
}

/// MAR-1 margin of the ablation zones `zones` (each: its centre and unit axis, of a zone of
/// `zone`'s size) over the tumour surface `surface` (as in
/// [`super::PlanReport::tumour_surface`]): the smallest depth of a surface point inside the zone
/// that covers it deepest, mm (negative: a point lies outside every zone). What a plan's margin
/// is, for zones where they really are.
#[must_use]
pub fn margin_mm(surface: &[Point<Ct>], zone: &crate::Zone, zones: &[(Point<Ct>, Vector<Ct>)]) -> f64 {
    let spheroids: Vec<Spheroid> = zones
        .iter()
        .map(|(c, a)| Spheroid {
            centre: c.to_nalgebra().coords,
            axis: a.to_nalgebra().try_normalize(1e-12).unwrap_or_else(Vector3::z),
            a: zone.long_mm / 2.0,
            b: zone.short_mm / 2.0,
        })
        .collect();
    surface
        .iter()
        .map(|p| {
            let p = p.to_nalgebra().coords;
            spheroids.iter().map(|z| z.depth(&p)).fold(f64::NEG_INFINITY, f64::max)
        })
        .fold(f64::INFINITY, f64::min)
}
