//! Insertion along the needle line: the joint waypoints that move the tip from one depth to
//! another, by the needle driver alone where there is one (INS-1).

use nalgebra::{Matrix6xX, Vector3};

use crate::ik::{attempt, task, IkOptions, NeedleLine, Scratch};
use crate::model::{Arm, Motion};

/// Why an insertion path could not be made.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum InsertionError {
    /// the entry and target coincide: no needle direction
    DegenerateLine,
    /// at depth {depth_mm:.2} mm the arm cannot keep the tip on the line ({error_mm:.4} mm, {error_deg:.4} deg off)
    LostLine {
        /// Depth along the line from the entry.
        depth_mm: f64,
        /// Position error there.
        error_mm: f64,
        /// Axis error there.
        error_deg: f64,
    },
    /// at depth {depth_mm:.2} mm the insertion joint would leave its range
    DriverTravel {
        /// Depth along the line from the entry.
        depth_mm: f64,
    },
    /// at depth {depth_mm:.2} mm joint {joint} jumps by {jump_rad:.3} rad between two steps (a branch change)
    Discontinuous {
        /// Depth along the line from the entry.
        depth_mm: f64,
        /// Joint index.
        joint: usize,
        /// The jump.
        jump_rad: f64,
    },
}

/// Joint waypoints that move the needle tip along the line from depth `from_mm` to `to_mm`
/// (measured from the entry along entry -> target; the aligned stand-off is `-standoff_mm`), every
/// `step_mm`, starting from the aligned configuration `q_start`.
///
/// With a prismatic joint on the needle axis (the needle driver), only that joint moves (INS-1).
/// Without one, each waypoint is the IK solution for the tip at that depth seeded by the previous
/// waypoint (a Cartesian straight line); every waypoint holds the tip on the line within the
/// solver's tolerance and the step bounds the deviation between waypoints.
///
/// # Errors
/// An [`InsertionError`] naming the depth where it fails.
pub fn insertion_path(
    arm: &Arm,
    line: &NeedleLine,
    q_start: &[f64],
    from_mm: f64,
    to_mm: f64,
    step_mm: f64,
    opts: &IkOptions,
) -> Result<Vec<Vec<f64>>, InsertionError> {
    let (_, u) = task(line, 0.0).ok_or(InsertionError::DegenerateLine)?;
    let steps = ((to_mm - from_mm).abs() / step_mm.max(1e-6)).ceil().max(1.0) as usize;
    let depth = |k: usize| from_mm + (to_mm - from_mm) * k as f64 / steps as f64;
    // A needle driver: a prismatic joint whose world axis is the needle axis.
    let tip = arm.tip_isometry(q_start);
    let z = tip.rotation * Vector3::z();
    let driver = arm.joints.iter().enumerate().rposition(|(i, j)| {
        if j.motion != Motion::Prismatic {
            return false;
        }
        let mut q = q_start.to_vec();
        q[i] += 1.0;
        let moved = arm.tip_isometry(&q).translation.vector - tip.translation.vector;
        (moved - z).norm() < 1e-9
    });
    let mut path = Vec::with_capacity(steps + 1);
    if let Some(i) = driver {
        let (lo, hi) = (arm.joints[i].lower, arm.joints[i].upper);
        for k in 0..=steps {
            let mut q = q_start.to_vec();
            q[i] += depth(k) - from_mm;
            if q[i] < lo || q[i] > hi {
                return Err(InsertionError::DriverTravel { depth_mm: depth(k) });
            }
            path.push(q);
        }
        return Ok(path);
    }
    let mut s = Scratch { points: Vec::with_capacity(arm.dof() + 1), jac: Matrix6xX::zeros(arm.dof()) };
    let single = IkOptions { max_attempts: 1, ..opts.clone() };
    let mut q = q_start.to_vec();
    path.push(q.clone());
    for k in 1..=steps {
        let d = depth(k);
        let goal = line.entry_mm() + u * d;
        let a = attempt(arm, &single, &goal, &u, &q, &mut s);
        if !a.converged {
            return Err(InsertionError::LostLine { depth_mm: d, error_mm: a.pos_err, error_deg: a.angle.to_degrees() });
        }
        if let Some((joint, jump)) =
            a.q.iter().zip(&q).map(|(x, y)| (x - y).abs()).enumerate().max_by(|x, y| x.1.total_cmp(&y.1))
        {
            if jump > 0.2 {
                return Err(InsertionError::Discontinuous { depth_mm: d, joint, jump_rad: jump });
            }
        }
        q = a.q;
        path.push(q.clone());
    }
    Ok(path)
}
