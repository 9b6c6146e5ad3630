//! The robot from one description. The URDF (named by `robot/kinematics.toml`) says the chain: its
//! joints' names, order, kinds, position limits and velocity limits; `robot/robot.toml` says what a
//! URDF cannot (each joint's role, acceleration, jerk, current limit and home) and repeats the limits
//! the supervisor enforces. [`RobotModel::load`] checks the two against each other when it loads
//! them and refuses any disagreement, naming both files, the joint, the field and both values, so
//! that the supervisor, the trajectory generator and the IK cannot work from different arms.

use std::path::Path;

use stylet_core::config::{ConfigError, JointKind, RobotConfig};

use crate::config::KinematicsConfig;
use crate::model::{Arm, ModelError, Motion};

/// How far the two descriptions may differ, revolute joints (rad, rad/s): a URDF writes radians to
/// five or six decimals (3.14159 for 180 degrees is 2.7e-6 rad short).
const REVOLUTE_TOLERANCE: f64 = 1e-5;
/// The same for prismatic joints (mm, mm/s): a micrometre, the encoder's count.
const PRISMATIC_TOLERANCE: f64 = 1e-3;

/// The robot: its joints (`robot.toml`), its kinematics config and its chain (the URDF), checked
/// to agree.
#[derive(Clone, Debug)]
pub struct RobotModel {
    /// Joints in chain order with their roles and limits.
    pub robot: RobotConfig,
    /// The chain, IK settings, keep-outs and needle.
    pub kinematics: KinematicsConfig,
    /// The URDF chain from the base link to the needle tip, mm.
    pub arm: Arm,
}

/// Why the robot could not be loaded. The doc comment is the message.
#[derive(Debug, docsplay::Display, thiserror::Error)]
pub enum RobotModelError {
    /// {0}
    Config(#[from] ConfigError),
    /// {0}
    Model(#[from] ModelError),
    /// {robot} and {urdf} describe different arms: {problems}
    Disagree {
        /// `robot.toml`.
        robot: String,
        /// The URDF.
        urdf: String,
        /// Every disagreement, `;`-separated.
        problems: String,
    },
}

impl RobotModel {
    /// Loads `robot/robot.toml`, `robot/kinematics.toml` and the URDF it names from a config
    /// folder, and checks that `robot.toml` and the URDF agree ([`disagreements`]).
    ///
    /// # Errors
    /// A file that does not load, or the list of disagreements.
    pub fn load(config_dir: &Path) -> Result<Self, RobotModelError> {
        let robot_path = config_dir.join("robot").join("robot.toml");
        let robot = RobotConfig::load(&robot_path)?;
        let kinematics = KinematicsConfig::load(&config_dir.join("robot").join("kinematics.toml"))?;
        let arm = Arm::from_urdf_file(&kinematics.urdf, &kinematics.base_link, &kinematics.tip_link)?;
        Self::new(robot, &robot_path, kinematics, arm)
    }

    /// Puts loaded parts together if they agree; `robot_path` names `robot.toml` in the error.
    ///
    /// # Errors
    /// [`RobotModelError::Disagree`] with every disagreement.
    pub fn new(
        robot: RobotConfig,
        robot_path: &Path,
        kinematics: KinematicsConfig,
        arm: Arm,
    ) -> Result<Self, RobotModelError> {
        let problems = disagreements(&robot, &arm);
        if problems.is_empty() {
            Ok(RobotModel { robot, kinematics, arm })
        } else {
            Err(RobotModelError::Disagree {
                robot: robot_path.display().to_string(),
                urdf: kinematics.urdf.display().to_string(),
                problems: problems.join("; "),
            })
        }
    }
}

/// Where `robot.toml` and a URDF chain disagree, one line each (empty when they agree): the
/// movable joints by name and order, each joint's kind, position limits and, where the URDF gives
/// one, velocity limit (within 1e-5 rad or 1e-3 mm, per second for velocities).
#[must_use]
pub fn disagreements(robot: &RobotConfig, arm: &Arm) -> Vec<String> {
    let names = |v: Vec<&str>| v.join(", ");
    let ours: Vec<&str> = robot.joints.iter().map(|j| j.name.as_str()).collect();
    let theirs: Vec<&str> = arm.joints.iter().map(|j| j.name.as_str()).collect();
    if ours != theirs {
        return vec![format!("joints [{}] against the URDF chain's [{}]", names(ours), names(theirs))];
    }
    let mut out = Vec::new();
    for (r, a) in robot.joints.iter().zip(&arm.joints) {
        let (kind, unit, tolerance) = match a.motion {
            Motion::Revolute => (JointKind::Revolute, "rad", REVOLUTE_TOLERANCE),
            Motion::Prismatic => (JointKind::Prismatic, "mm", PRISMATIC_TOLERANCE),
        };
        if r.kind != kind {
            out.push(format!("{}: kind {:?} against the URDF's {:?}", r.name, r.kind, kind));
            continue;
        }
        let fields = [
            ("min", r.min, a.lower, ""),
            ("max", r.max, a.upper, ""),
            ("max_velocity", r.max_velocity, a.velocity, "/s"),
        ];
        for (field, ours, theirs, per) in fields {
            if field == "max_velocity" && theirs.is_infinite() {
                continue;
            }
            let gap = (ours - theirs).abs();
            if gap > tolerance || gap.is_nan() {
                out.push(format!("{}: {field} {ours} {unit}{per} against the URDF's {theirs} {unit}{per}", r.name));
            }
        }
    }
    out
}
