//! MAR-3: when no single zone covers the tumour with its margin, overlapping zones on parallel
//! tracks around the best path-feasible directions.

use nalgebra::Vector3;

use super::path::{walk, Cand, PathResult, PathRules, Shaft};
use super::rank::make_plan;
use super::zone::ZoneRules;
use super::{check, Plan, RuleCheck, Status};
use crate::geometry::Spheroid;

/// Multi-zone plans around the path-feasible candidates with the most clearance (at most 12
/// directions, binned at ~4 degrees); `radius`: the tumour's.
pub(super) fn plans(
    shaft: &Shaft<'_>,
    path_rules: &PathRules<'_>,
    zr: &ZoneRules<'_>,
    cands: &[Cand],
    radius: f64,
) -> Vec<Plan> {
    let mut out = Vec::new();
    let mut tracks: Vec<&Cand> = cands.iter().collect();
    tracks.sort_by(|a, b| b.path.clearance.total_cmp(&a.path.clearance));
    let mut tried = std::collections::HashSet::new();
    for c in tracks {
        let key = (c.axis * 15.0).map(|x| x.round() as i64);
        if !tried.insert((key.x, key.y, key.z)) || tried.len() > 12 {
            continue;
        }
        out.extend(cover(shaft, path_rules, zr, c.entry, c.axis, radius));
    }
    out
}

/// Greedy cover of the tumour plus margin by zones on parallel tracks around one direction.
fn cover(
    shaft: &Shaft<'_>,
    path_rules: &PathRules<'_>,
    zr: &ZoneRules<'_>,
    entry: Vector3<f64>,
    axis: Vector3<f64>,
    radius: f64,
) -> Option<Plan> {
    let (centre, zone, rules) = (zr.centre, zr.zone, zr.rules);
    // Every tumour surface point must lie at least the MAR-1 margin deep inside one zone (the
    // union's margin is at least the largest single-zone depth: conservative).
    let need = &zr.surface;
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
            let s = zr.spheroid(*c, axis);
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
    let zones: Vec<Spheroid> = chosen.iter().map(|c| zr.spheroid(*c, axis)).collect();
    let margin = zr.margin(&zones);
    let zc = zr.checks(&zones, margin);
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
        let pc = path_rules.checks(&p);
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
