//! Plans from placements, their rank score, and the final ranking.

use nalgebra::Vector3;
use stylet_core::frame::{Point, Vector};

use super::grid::Grid;
use super::path::{nearest_blocking_class, PathResult};
use super::{Plan, Position, RuleCheck, Status};
use crate::config::{Class, Rules, Zone};

/// One needle placement: entry, tip, zone centre, axis.
pub(super) type Placement = (Vector3<f64>, Vector3<f64>, Vector3<f64>, Vector3<f64>);

/// A plan from its needle placements, its worst path, its margin and its rule checks, with its
/// rank score (docs/planning.md, "Ranking").
pub(super) fn make_plan(
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
                entry: Point::from_coords(*e),
                tip: Point::from_coords(*t),
                zone_centre: Point::from_coords(*c),
                axis: Vector::from_nalgebra(*a),
                depth_mm: (t - e).norm(),
            })
            .collect(),
        zone_long_mm: zone.long_mm,
        zone_short_mm: zone.short_mm,
        margin_mm: margin,
        clearance_mm: path.clearance,
        nearest_structure: path.nearest,
        closest: Some(Point::from_coords(path.closest)),
        angle_to_axial_deg: angle,
        checks,
        high_risk,
    }
}

/// Safe plans first, each group best first, at most `max_plans`; a reported plan whose nearest
/// structure the coarse clearance map left open is resolved from the voxels near its shaft.
pub(super) fn best(
    mut plans: Vec<Plan>,
    grid: &Grid,
    classes: &[Class],
    major: &[bool],
    spacing: [f64; 3],
    max_plans: usize,
) -> Vec<Plan> {
    let min_spacing = spacing.iter().copied().fold(f64::INFINITY, f64::min);
    plans.sort_by(|a, b| a.high_risk.cmp(&b.high_risk).then(b.score.total_cmp(&a.score)));
    plans.truncate(max_plans.max(1));
    for p in &mut plans {
        if p.nearest_structure.is_none() && p.clearance_mm <= 20.0 {
            if let Some(at) = p.closest {
                p.nearest_structure = nearest_blocking_class(
                    grid,
                    classes,
                    major,
                    spacing,
                    &at.to_nalgebra().coords,
                    p.clearance_mm + 2.0 * min_spacing,
                );
            }
            if let (Some(c), Some(check)) = (p.nearest_structure, p.checks.iter_mut().find(|c| c.rule == "PATH-1")) {
                check.detail =
                    format!("shaft clearance to the nearest {c:?} (needle radius + targeting error required)");
            }
        }
    }
    plans
}
