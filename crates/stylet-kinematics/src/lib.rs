//! Arm kinematics for needle placement.
//!
//! - [`model::Arm`]: any serial chain of a URDF between two named links (revolute, continuous and
//!   prismatic joints; meshes ignored), in millimetres, with forward kinematics and the geometric
//!   Jacobian.
//! - [`ik`]: the needle-axis IK: tip at a stand-off before the skin entry, needle axis on the
//!   entry->target line, roll free; every distinct solution ranked, or the reason none exists.
//! - [`robot::RobotModel`]: the robot from one description: `robot.toml` checked against the URDF
//!   at load, any disagreement refused by joint, field and value.
//! - [`keepout`]: keep-out volumes (CT gantry ring, table, skin height field) and clearance.
//! - [`path_clearance`]: clearance along a joint-space path, so a motion is checked all the way and
//!   not only at its end.

pub mod baseline;
pub mod config;
pub mod ik;
mod insertion;
pub mod keepout;
pub mod model;
pub mod robot;

pub use config::{KinematicsConfig, Needle};
pub use ik::{
    check, insertion_path, manipulability, random_reachable_lines, solve_all, solve_first, IkFailure, IkOptions,
    InsertionError, NeedleLine, Solution,
};
pub use keepout::{KeepOut, KeepOuts};
pub use model::{Arm, ModelError, Motion};
pub use robot::{RobotModel, RobotModelError};

/// The smallest clearance (mm) of the arm along a sequence of configurations, with the index of
/// the configuration and the volume where it occurs.
#[must_use]
pub fn path_clearance<'a>(
    arm: &Arm,
    keepout: &KeepOuts,
    path: impl IntoIterator<Item = &'a [f64]>,
) -> (f64, usize, String) {
    let mut points = Vec::new();
    let mut jac = nalgebra::Matrix6xX::zeros(arm.dof());
    let mut best = (f64::INFINITY, 0, String::new());
    for (k, q) in path.into_iter().enumerate() {
        arm.isometry_and_jacobian(q, &mut points, &mut jac);
        let (c, name) = keepout.clearance_coords(&points);
        if c < best.0 {
            best = (c, k, name);
        }
    }
    best
}
