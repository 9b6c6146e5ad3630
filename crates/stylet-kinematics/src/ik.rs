//! Needle-axis inverse kinematics: a 5-DOF task (tip position + needle axis direction; roll
//! about the needle free), solved by damped least squares on the task error with restarts.
//!
//! Variables are the chain's revolute joints; prismatic joints (the needle driver) are held where
//! the seed puts them (retracted for alignment, INS-1). Each attempt iterates
//! `dq = J^T (J J^T + lambda^2 I)^-1 e` on the 5-row task Jacobian: the three position rows and the
//! two angular rows perpendicular to the current needle axis (rotation about the axis changes
//! nothing, so it is left to the solver). Joints are clamped to their limits after every step.
//! The first attempt starts from the given seed; later ones from seeded random in-limit
//! configurations, so the result is deterministic.

use nalgebra::{Isometry3, Matrix5, Matrix6xX, SMatrix, SVector, Vector3};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stylet_core::frame::{Point, Robot};

use crate::keepout::KeepOuts;
use crate::model::{Arm, Motion};

pub use crate::insertion::{insertion_path, InsertionError};

/// Solver settings.
#[derive(Clone, Debug, PartialEq)]
pub struct IkOptions {
    /// Tip distance before the skin entry along the line, mm.
    pub standoff_mm: f64,
    /// Position tolerance, mm.
    pub position_tolerance_mm: f64,
    /// Axis tolerance, rad.
    pub axis_tolerance_rad: f64,
    /// Iterations per attempt.
    pub max_iterations: usize,
    /// Attempts (the first from the seed).
    pub max_attempts: usize,
    /// Attempts to run when collecting every distinct solution.
    pub solution_attempts: usize,
    /// Solutions whose joint frames all lie within this of each other (mm) are the same branch.
    pub distinct_mm: f64,
    /// Refuse solutions whose task manipulability is below this.
    pub min_manipulability: f64,
    /// Length that weighs angular error against position error (mm per rad).
    pub characteristic_length_mm: f64,
    /// Random seed for restarts.
    pub seed: u64,
}

impl Default for IkOptions {
    fn default() -> Self {
        IkOptions {
            standoff_mm: 10.0,
            position_tolerance_mm: 1e-4,
            axis_tolerance_rad: 1e-6,
            max_iterations: 80,
            max_attempts: 100,
            solution_attempts: 16,
            distinct_mm: 1.0,
            min_manipulability: 1e-3,
            characteristic_length_mm: 300.0,
            seed: 0x0571_71e7,
        }
    }
}

/// A needle line in the robot base frame, mm. A line planned in the CT comes here through the
/// registration (`robot_from_ct * entry`): a CT point does not fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NeedleLine {
    /// Skin entry point.
    pub entry: Point<Robot>,
    /// Target point.
    pub target: Point<Robot>,
}

impl NeedleLine {
    /// The entry's raw coordinates (the solver's own arithmetic).
    pub(crate) fn entry_mm(&self) -> Vector3<f64> {
        self.entry.to_nalgebra().coords
    }

    /// The target's raw coordinates.
    pub(crate) fn target_mm(&self) -> Vector3<f64> {
        self.target.to_nalgebra().coords
    }
}

/// One solution with its checks and score.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Solution {
    /// Joint values in chain order (rad or mm).
    pub joints: Vec<f64>,
    /// FK check: tip distance from the stand-off point, mm.
    pub position_error_mm: f64,
    /// FK check: angle between the needle axis and the line, degrees.
    pub axis_error_deg: f64,
    /// Smallest distance to a joint limit, as a fraction of the joint's range (0..0.5).
    pub limit_margin: f64,
    /// Task manipulability sqrt(det(J J^T)) of the 5-row task Jacobian (angular rows scaled by the
    /// characteristic length).
    pub manipulability: f64,
    /// Smallest clearance to a keep-out volume, mm (infinite without volumes).
    pub clearance_mm: f64,
    /// Ranking score: higher is better (see `score`).
    pub score: f64,
}

/// Why no solution exists. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum IkFailure {
    /// the entry and target coincide: no needle direction
    DegenerateLine,
    /// the stand-off point is {distance_mm:.1} mm from the base, beyond the arm's reach of {reach_mm:.1} mm
    OutOfReach {
        /// Distance from the base.
        distance_mm: f64,
        /// Sum of the link lengths.
        reach_mm: f64,
    },
    /// no configuration within the joint limits reaches the line (best attempt {best_mm:.3} mm, {best_deg:.3} deg off)
    JointLimits {
        /// Best position error.
        best_mm: f64,
        /// Best axis error.
        best_deg: f64,
    },
    /// every configuration found is near a singularity (manipulability {best:.2e} < {limit:.2e})
    Singular {
        /// Best manipulability found.
        best: f64,
        /// Threshold.
        limit: f64,
    },
    /// every configuration found collides with keep-out volume {volume:?} ({penetration_mm:.1} mm inside)
    Collision {
        /// The volume.
        volume: String,
        /// How deep.
        penetration_mm: f64,
    },
    /// the seed has {got} joints, the chain has {want}
    SeedLength {
        /// Seed length.
        got: usize,
        /// Chain dof.
        want: usize,
    },
}

/// The stand-off pose the tip must reach: position and needle direction.
pub(crate) fn task(line: &NeedleLine, standoff_mm: f64) -> Option<(Vector3<f64>, Vector3<f64>)> {
    let d = line.target_mm() - line.entry_mm();
    let len = d.norm();
    if len.is_nan() || len <= 1e-9 {
        return None;
    }
    let u = d / len;
    Some((line.entry_mm() - u * standoff_mm, u))
}

/// Errors of the tip pose against the task: position error vector, axis rotation vector.
fn errors(tip: &Isometry3<f64>, p_goal: &Vector3<f64>, u: &Vector3<f64>) -> (Vector3<f64>, Vector3<f64>, f64) {
    let z = tip.rotation * Vector3::z();
    let e_p = p_goal - tip.translation.vector;
    let c = z.cross(u);
    let s = c.norm();
    let angle = s.atan2(z.dot(u));
    let e_r = if s > 1e-12 {
        c * (angle / s)
    } else if angle > 1.0 {
        // Antiparallel: any perpendicular axis.
        let any = if z.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
        z.cross(&any).normalize() * angle
    } else {
        Vector3::zeros()
    };
    (e_p, e_r, angle)
}

/// Two unit vectors perpendicular to `z` (and to each other).
fn perpendiculars(z: &Vector3<f64>) -> (Vector3<f64>, Vector3<f64>) {
    let any = if z.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
    let b1 = z.cross(&any).normalize();
    let b2 = z.cross(&b1);
    (b1, b2)
}

/// Scratch space so an attempt does not allocate per iteration.
#[derive(Debug)]
pub(crate) struct Scratch {
    pub(crate) points: Vec<Vector3<f64>>,
    pub(crate) jac: Matrix6xX<f64>,
}

/// Outcome of one attempt.
pub(crate) struct Attempt {
    pub(crate) q: Vec<f64>,
    pub(crate) converged: bool,
    pub(crate) pos_err: f64,
    pub(crate) angle: f64,
}

pub(crate) fn attempt(
    arm: &Arm,
    opts: &IkOptions,
    p_goal: &Vector3<f64>,
    u: &Vector3<f64>,
    seed: &[f64],
    s: &mut Scratch,
) -> Attempt {
    let mut q = seed.to_vec();
    let l = opts.characteristic_length_mm;
    for _ in 0..opts.max_iterations {
        let tip = arm.isometry_and_jacobian(&q, &mut s.points, &mut s.jac);
        let (e_p, e_r, angle) = errors(&tip, p_goal, u);
        let pos_err = e_p.norm();
        if pos_err <= opts.position_tolerance_mm && angle <= opts.axis_tolerance_rad {
            return Attempt { q, converged: true, pos_err, angle };
        }
        let z = tip.rotation * Vector3::z();
        let (b1, b2) = perpendiculars(&z);
        // Task Jacobian: 3 linear rows, 2 angular rows perpendicular to the needle, scaled by l.
        let n = arm.dof();
        let mut jt = SMatrix::<f64, 5, 16>::zeros();
        for (i, j) in arm.joints.iter().enumerate().take(16) {
            if j.motion == Motion::Prismatic {
                continue; // held: the needle driver does not take part in alignment
            }
            let lin = s.jac.fixed_slice::<3, 1>(0, i);
            let ang = s.jac.fixed_slice::<3, 1>(3, i).into_owned();
            jt[(0, i)] = lin[0];
            jt[(1, i)] = lin[1];
            jt[(2, i)] = lin[2];
            jt[(3, i)] = l * b1.dot(&ang);
            jt[(4, i)] = l * b2.dot(&ang);
        }
        let e = SVector::<f64, 5>::new(e_p.x, e_p.y, e_p.z, l * b1.dot(&e_r), l * b2.dot(&e_r));
        // Damping grows with the error: Levenberg-Marquardt-like, small near the solution.
        let lambda2 = 1e-6 + 1e-4 * e.norm_squared().min(1e4);
        let jjt: Matrix5<f64> = jt * jt.transpose() + Matrix5::identity() * lambda2;
        let Some(y) = jjt.cholesky().map(|c| c.solve(&e)) else { break };
        let dq = jt.transpose() * y;
        let max_step = (0..n).map(|i| dq[i].abs()).fold(0.0, f64::max);
        let scale = if max_step > 0.5 { 0.5 / max_step } else { 1.0 };
        for (i, j) in arm.joints.iter().enumerate().take(16) {
            if j.motion == Motion::Prismatic {
                continue;
            }
            q[i] = (q[i] + dq[i] * scale).clamp(j.lower, j.upper);
        }
    }
    let tip = arm.tip_isometry(&q);
    let (e_p, _, angle) = errors(&tip, p_goal, u);
    let converged = e_p.norm() <= opts.position_tolerance_mm && angle <= opts.axis_tolerance_rad;
    Attempt { q, converged, pos_err: e_p.norm(), angle }
}

/// When the last revolute joint turns the tip about the needle axis itself (its axis is the tip's z
/// axis through the tip), the needle's roll is that joint alone: put it mid-range, as far from its
/// limits as it can be. The needle line does not change (checked).
fn centre_roll(arm: &Arm, mut q: Vec<f64>) -> Vec<f64> {
    let Some(last) = arm.joints.iter().rposition(|j| j.motion == Motion::Revolute) else { return q };
    let j = &arm.joints[last];
    if !(j.lower.is_finite() && j.upper.is_finite()) {
        return q;
    }
    let tip = arm.tip_isometry(&q);
    let z = tip.rotation * Vector3::z();
    let before = q.clone();
    q[last] = 0.5 * (j.lower + j.upper);
    let after = arm.tip_isometry(&q);
    let same_line = (after.translation.vector - tip.translation.vector).norm() < 1e-7
        && (after.rotation * Vector3::z() - z).norm() < 1e-10;
    if same_line {
        q
    } else {
        before
    }
}

fn random_seed(arm: &Arm, base: &[f64], rng: &mut SmallRng) -> Vec<f64> {
    arm.joints
        .iter()
        .zip(base)
        .map(|(j, b)| match j.motion {
            Motion::Prismatic => *b,
            Motion::Revolute => {
                let lo = if j.lower.is_finite() { j.lower } else { -std::f64::consts::PI };
                let hi = if j.upper.is_finite() { j.upper } else { std::f64::consts::PI };
                rng.gen_range(lo..=hi)
            }
        })
        .collect()
}

/// The arm's reach from its first joint, mm (sum of the origins' lengths plus the tip offset).
#[must_use]
pub fn reach_mm(arm: &Arm) -> f64 {
    arm.joints.iter().skip(1).map(|j| j.origin.translation.vector.norm()).sum::<f64>()
        + arm.tip_offset.translation.vector.norm()
        + arm
            .joints
            .iter()
            .filter(|j| j.motion == Motion::Prismatic)
            .map(|j| j.upper.abs().max(j.lower.abs()))
            .sum::<f64>()
}

/// Task manipulability of `q` (see [`Solution::manipulability`]); below
/// [`IkOptions::min_manipulability`] a configuration counts as singular.
#[must_use]
pub fn manipulability(arm: &Arm, q: &[f64], opts: &IkOptions) -> f64 {
    let mut s = Scratch { points: Vec::with_capacity(arm.dof() + 1), jac: Matrix6xX::zeros(arm.dof()) };
    let tip = arm.tip_isometry(q);
    let u = tip.rotation * Vector3::z();
    let p = tip.translation.vector;
    evaluate(arm, opts, q, &p, &u, &KeepOuts::default(), &mut s).manipulability
}

/// Evaluates a converged configuration: checks and score.
fn evaluate(
    arm: &Arm,
    opts: &IkOptions,
    q: &[f64],
    p_goal: &Vector3<f64>,
    u: &Vector3<f64>,
    keepout: &KeepOuts,
    s: &mut Scratch,
) -> Solution {
    let tip = arm.isometry_and_jacobian(q, &mut s.points, &mut s.jac);
    let (e_p, _, angle) = errors(&tip, p_goal, u);
    let z = tip.rotation * Vector3::z();
    let (b1, b2) = perpendiculars(&z);
    let l = opts.characteristic_length_mm;
    let mut jt = SMatrix::<f64, 5, 16>::zeros();
    for (i, j) in arm.joints.iter().enumerate().take(16) {
        if j.motion == Motion::Prismatic {
            continue;
        }
        let ang = s.jac.fixed_slice::<3, 1>(3, i).into_owned();
        for r in 0..3 {
            jt[(r, i)] = s.jac[(r, i)] / l;
        }
        jt[(3, i)] = b1.dot(&ang);
        jt[(4, i)] = b2.dot(&ang);
    }
    let manipulability = (jt * jt.transpose()).determinant().max(0.0).sqrt();
    let limit_margin = arm
        .joints
        .iter()
        .zip(q)
        .filter(|(j, _)| j.motion == Motion::Revolute && j.lower.is_finite() && j.upper.is_finite())
        .map(|(j, v)| ((v - j.lower).min(j.upper - v) / (j.upper - j.lower)).max(0.0))
        .fold(0.5, f64::min);
    let clearance_mm = keepout.clearance_coords(&s.points).0;
    // Score: joint-limit margin and manipulability first, clearance (saturating at 100 mm) next.
    let score = limit_margin + manipulability.min(1.0) + 0.2 * (clearance_mm.min(100.0) / 100.0);
    Solution {
        joints: q.to_vec(),
        position_error_mm: e_p.norm(),
        axis_error_deg: angle.to_degrees(),
        limit_margin,
        manipulability,
        clearance_mm,
        score,
    }
}

/// Solves for the first valid solution (fast path: from the seed, then restarts).
///
/// # Errors
/// An [`IkFailure`] saying why none was found.
pub fn solve_first(
    arm: &Arm,
    line: &NeedleLine,
    seed: &[f64],
    keepout: &KeepOuts,
    opts: &IkOptions,
) -> Result<Solution, IkFailure> {
    solve(arm, line, seed, keepout, opts, false).map(|mut v| v.remove(0))
}

/// Collects every distinct valid solution found, best first.
///
/// # Errors
/// An [`IkFailure`] saying why none was found.
pub fn solve_all(
    arm: &Arm,
    line: &NeedleLine,
    seed: &[f64],
    keepout: &KeepOuts,
    opts: &IkOptions,
) -> Result<Vec<Solution>, IkFailure> {
    solve(arm, line, seed, keepout, opts, true)
}

fn solve(
    arm: &Arm,
    line: &NeedleLine,
    seed: &[f64],
    keepout: &KeepOuts,
    opts: &IkOptions,
    all: bool,
) -> Result<Vec<Solution>, IkFailure> {
    if seed.len() != arm.dof() {
        return Err(IkFailure::SeedLength { got: seed.len(), want: arm.dof() });
    }
    let (p_goal, u) = task(line, opts.standoff_mm).ok_or(IkFailure::DegenerateLine)?;
    let first_origin = arm.joints.first().map_or(Vector3::zeros(), |j| j.origin.translation.vector);
    let reach = reach_mm(arm);
    let distance = (p_goal - first_origin).norm();
    if distance > reach {
        return Err(IkFailure::OutOfReach { distance_mm: distance, reach_mm: reach });
    }
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let mut s = Scratch { points: Vec::with_capacity(arm.dof() + 1), jac: Matrix6xX::zeros(arm.dof()) };
    let clamped: Vec<f64> = arm.joints.iter().zip(seed).map(|(j, v)| v.clamp(j.lower, j.upper)).collect();
    let attempts = if all { opts.solution_attempts.max(1) } else { opts.max_attempts.max(1) };
    let mut found: Vec<Solution> = Vec::new();
    let mut found_frames: Vec<Vec<Vector3<f64>>> = Vec::new();
    let mut best = (f64::INFINITY, f64::INFINITY);
    let mut best_singular: f64 = 0.0;
    let mut collision: Option<(String, f64)> = None;
    let mut any_converged = false;
    for k in 0..attempts {
        let start = if k == 0 { clamped.clone() } else { random_seed(arm, &clamped, &mut rng) };
        let a = attempt(arm, opts, &p_goal, &u, &start, &mut s);
        if !a.converged {
            if a.pos_err < best.0 {
                best = (a.pos_err, a.angle.to_degrees());
            }
            continue;
        }
        any_converged = true;
        let q = centre_roll(arm, a.q);
        let sol = evaluate(arm, opts, &q, &p_goal, &u, keepout, &mut s);
        let frames = s.points.clone();
        if sol.manipulability < opts.min_manipulability {
            best_singular = best_singular.max(sol.manipulability);
            continue;
        }
        if sol.clearance_mm < 0.0 {
            let (_, name) = keepout.clearance_coords(&s.points);
            collision = Some((name, -sol.clearance_mm));
            continue;
        }
        // Branches differ in where the arm's joints are, not in the needle roll.
        let distinct = found_frames
            .iter()
            .all(|f: &Vec<Vector3<f64>>| f.iter().zip(&frames).any(|(x, y)| (x - y).norm() > opts.distinct_mm));
        if distinct {
            found.push(sol);
            found_frames.push(frames);
        }
        if !all {
            break;
        }
    }
    if found.is_empty() {
        return Err(if let Some((volume, penetration_mm)) = collision {
            IkFailure::Collision { volume, penetration_mm }
        } else if any_converged {
            IkFailure::Singular { best: best_singular, limit: opts.min_manipulability }
        } else {
            IkFailure::JointLimits { best_mm: best.0, best_deg: best.1 }
        });
    }
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(found)
}

/// Random reachable needle lines for tests and benchmarks: random in-limit configurations with
/// prismatic joints at 0 whose task manipulability reaches the solver's threshold (so a valid
/// configuration exists), and the lines they reach (entry `standoff` beyond the tip along its z
/// axis, target 30-150 mm further). Returns each generating configuration with its line.
#[must_use]
pub fn random_reachable_lines(arm: &Arm, n: usize, opts: &IkOptions, seed: u64) -> Vec<(Vec<f64>, NeedleLine)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let q: Vec<f64> = arm
            .joints
            .iter()
            .map(|j| match j.motion {
                Motion::Prismatic => 0.0,
                Motion::Revolute => {
                    let lo = j.lower.max(-std::f64::consts::PI);
                    let hi = j.upper.min(std::f64::consts::PI);
                    rng.gen_range(lo..=hi)
                }
            })
            .collect();
        if manipulability(arm, &q, opts) < opts.min_manipulability {
            continue;
        }
        let tip = arm.tip_isometry(&q);
        let z = tip.rotation * Vector3::z();
        let entry = tip.translation.vector + z * opts.standoff_mm;
        let target = entry + z * rng.gen_range(30.0..150.0);
        out.push((q, NeedleLine { entry: Point::from_coords(entry), target: Point::from_coords(target) }));
    }
    out
}

/// The independent acceptance check of a solution by FK: tip distance from the stand-off point
/// (mm), axis angle from the line (deg), and whether the joints are within limits.
#[must_use]
pub fn check(arm: &Arm, q: &[f64], line: &NeedleLine, standoff_mm: f64) -> (f64, f64, bool) {
    let u = (line.target_mm() - line.entry_mm()).normalize();
    let goal = line.entry_mm() - u * standoff_mm;
    let tip = arm.tip_isometry(q);
    let z = tip.rotation * Vector3::z();
    let dp = (tip.translation.vector - goal).norm();
    let angle = z.dot(&u).clamp(-1.0, 1.0).acos().to_degrees();
    (dp, angle, arm.within_limits(q))
}
