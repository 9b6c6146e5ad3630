//! A serial chain read from a URDF, in millimetres, with a fast forward kinematics and Jacobian.
//!
//! URDF parsing is urdf-rs (the parser `k` is built on); the chain is walked from the tip link back
//! to the base link by name. Fixed joints are folded into the next joint's origin (or the tip
//! offset). URDF metres become millimetres here, once. `k`'s own chain (nodes behind
//! `Arc<Mutex<..>>`) is used to cross-check FK in tests and as the IK baseline in benchmarks, not
//! in the solver's inner loop.

use nalgebra::{Isometry3, Matrix6xX, Translation3, Unit, UnitQuaternion, Vector3};
use stylet_core::frame::{Needle, Point, Robot, Transform};
use stylet_core::units::mm_from_m;

/// The most movable joints a chain may have.
pub const MAX_DOF: usize = 16;

/// How a joint moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Motion {
    /// Rotates about its axis (radians); `continuous` joints have infinite limits.
    Revolute,
    /// Slides along its axis (millimetres).
    Prismatic,
}

/// One movable joint of the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainJoint {
    /// Joint name.
    pub name: String,
    /// Revolute or prismatic.
    pub motion: Motion,
    /// Transform from the previous joint's frame (after its motion) to this joint's frame, mm.
    pub origin: Isometry3<f64>,
    /// Unit axis in this joint's frame.
    pub axis: Unit<Vector3<f64>>,
    /// Lower limit (rad or mm).
    pub lower: f64,
    /// Upper limit (rad or mm).
    pub upper: f64,
    /// The URDF's velocity limit (rad/s or mm/s); infinite where the URDF gives none (0).
    pub velocity: f64,
}

/// A serial chain from a base link to a tip link.
#[derive(Clone, Debug, PartialEq)]
pub struct Arm {
    /// Robot name from the URDF.
    pub name: String,
    /// Base link.
    pub base: String,
    /// Tip link.
    pub tip: String,
    /// Movable joints, base to tip.
    pub joints: Vec<ChainJoint>,
    /// Fixed transform from the last joint's frame to the tip link, mm.
    pub tip_offset: Isometry3<f64>,
}

/// Why a URDF could not be turned into a chain. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum ModelError {
    /// cannot read URDF {path}: {reason}
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// cannot expand xacro {path} (Stylet runs `xacro`, e.g. `pip install xacro`): {reason}
    Xacro {
        /// The file.
        path: String,
        /// What xacro said, or why it could not run.
        reason: String,
    },
    /// URDF {path} is not valid: {reason}
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// URDF {path} has no link named {link:?}; links: {known}
    NoSuchLink {
        /// The file.
        path: String,
        /// The name asked for.
        link: String,
        /// The links it has.
        known: String,
    },
    /// URDF {path}: link {tip:?} is not below link {base:?}
    NotAChain {
        /// The file.
        path: String,
        /// Base link.
        base: String,
        /// Tip link.
        tip: String,
    },
    /// URDF {path}: joint {joint:?} is of type {kind}, which a serial arm chain cannot contain
    Unsupported {
        /// The file.
        path: String,
        /// The joint.
        joint: String,
        /// Its type.
        kind: String,
    },
    /// URDF {path}: joint {joint:?} has {what}
    BadJoint {
        /// The file.
        path: String,
        /// The joint.
        joint: String,
        /// What is wrong.
        what: String,
    },
}

fn pose_mm(p: &urdf_rs::Pose) -> Isometry3<f64> {
    let t = Translation3::new(mm_from_m(p.xyz[0]), mm_from_m(p.xyz[1]), mm_from_m(p.xyz[2]));
    Isometry3::from_parts(t, UnitQuaternion::from_euler_angles(p.rpy[0], p.rpy[1], p.rpy[2]))
}

impl Arm {
    /// Reads a URDF file, or a xacro file (`*.xacro`, expanded by the `xacro` program with its
    /// default arguments), and extracts the chain from `base` to `tip`.
    ///
    /// # Errors
    /// A [`ModelError`] naming the file and what is wrong.
    pub fn from_urdf_file(path: &std::path::Path, base: &str, tip: &str) -> Result<Arm, ModelError> {
        let name = path.display().to_string();
        let text = if path.extension().is_some_and(|e| e == "xacro") {
            if !path.is_file() {
                return Err(ModelError::Read { path: name, reason: "no such file".into() });
            }
            urdf_rs::utils::convert_xacro_to_urdf(path)
                .map_err(|e| ModelError::Xacro { path: name.clone(), reason: e.to_string() })?
        } else {
            std::fs::read_to_string(path).map_err(|e| ModelError::Read { path: name.clone(), reason: e.to_string() })?
        };
        Self::from_urdf_str(&name, &text, base, tip)
    }

    /// Parses URDF text (`path` names it in errors) and extracts the chain from `base` to `tip`.
    ///
    /// # Errors
    /// A [`ModelError`].
    pub fn from_urdf_str(path: &str, text: &str, base: &str, tip: &str) -> Result<Arm, ModelError> {
        let robot = urdf_rs::read_from_string(text)
            .map_err(|e| ModelError::Parse { path: path.to_string(), reason: e.to_string() })?;
        let known = || robot.links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ");
        for link in [base, tip] {
            if !robot.links.iter().any(|l| l.name == link) {
                return Err(ModelError::NoSuchLink { path: path.into(), link: link.into(), known: known() });
            }
        }
        // Walk from the tip up to the base.
        let mut path_joints = Vec::new();
        let mut at = tip.to_string();
        while at != base {
            let Some(j) = robot.joints.iter().find(|j| j.child.link == at) else {
                return Err(ModelError::NotAChain { path: path.into(), base: base.into(), tip: tip.into() });
            };
            if path_joints.len() > robot.joints.len() {
                return Err(ModelError::NotAChain { path: path.into(), base: base.into(), tip: tip.into() });
            }
            path_joints.push(j);
            at = j.parent.link.clone();
        }
        path_joints.reverse();
        let mut joints = Vec::new();
        let mut pending = Isometry3::identity();
        for j in path_joints {
            let origin = pending * pose_mm(&j.origin);
            let given = |v: f64| if v > 0.0 { v } else { f64::INFINITY };
            let (motion, lower, upper, velocity) = match j.joint_type {
                urdf_rs::JointType::Fixed => {
                    pending = origin;
                    continue;
                }
                urdf_rs::JointType::Revolute => {
                    (Motion::Revolute, j.limit.lower, j.limit.upper, given(j.limit.velocity))
                }
                urdf_rs::JointType::Continuous => {
                    (Motion::Revolute, f64::NEG_INFINITY, f64::INFINITY, given(j.limit.velocity))
                }
                urdf_rs::JointType::Prismatic => (
                    Motion::Prismatic,
                    mm_from_m(j.limit.lower),
                    mm_from_m(j.limit.upper),
                    given(mm_from_m(j.limit.velocity)),
                ),
                ref other => {
                    return Err(ModelError::Unsupported {
                        path: path.into(),
                        joint: j.name.clone(),
                        kind: format!("{other:?}").to_lowercase(),
                    })
                }
            };
            let axis = Vector3::new(j.axis.xyz[0], j.axis.xyz[1], j.axis.xyz[2]);
            let Some(axis) = Unit::try_new(axis, 1e-9) else {
                return Err(ModelError::BadJoint {
                    path: path.into(),
                    joint: j.name.clone(),
                    what: "a zero axis".into(),
                });
            };
            if lower.is_nan() || upper.is_nan() || lower > upper {
                return Err(ModelError::BadJoint {
                    path: path.into(),
                    joint: j.name.clone(),
                    what: format!("lower limit {lower} above upper limit {upper}"),
                });
            }
            if joints.len() == MAX_DOF {
                return Err(ModelError::BadJoint {
                    path: path.into(),
                    joint: j.name.clone(),
                    what: format!("more than {MAX_DOF} movable joints before the tip"),
                });
            }
            joints.push(ChainJoint { name: j.name.clone(), motion, origin, axis, lower, upper, velocity });
            pending = Isometry3::identity();
        }
        Ok(Arm { name: robot.name, base: base.into(), tip: tip.into(), joints, tip_offset: pending })
    }

    /// Number of movable joints.
    #[must_use]
    pub fn dof(&self) -> usize {
        self.joints.len()
    }

    /// The tip pose in the base frame (mm): `robot_from_needle`, the needle frame's origin at the
    /// tip and its z along the needle.
    #[must_use]
    pub fn tip_pose(&self, q: &[f64]) -> Transform<Robot, Needle> {
        Transform::from_nalgebra(self.tip_isometry(q))
    }

    /// Where the tip is in the base frame (mm).
    #[must_use]
    pub fn tip_in_robot(&self, q: &[f64]) -> Point<Robot> {
        Point::from_coords(self.tip_isometry(q).translation.vector)
    }

    /// [`Arm::tip_pose`] as an isometry, for the numerical work inside this crate.
    pub(crate) fn tip_isometry(&self, q: &[f64]) -> Isometry3<f64> {
        let mut t = Isometry3::identity();
        for (j, &qi) in self.joints.iter().zip(q) {
            t = t * j.origin * self.joint_motion(j, qi);
        }
        t * self.tip_offset
    }

    fn joint_motion(&self, j: &ChainJoint, q: f64) -> Isometry3<f64> {
        match j.motion {
            Motion::Revolute => {
                Isometry3::from_parts(Translation3::identity(), UnitQuaternion::from_axis_angle(&j.axis, q))
            }
            Motion::Prismatic => {
                Isometry3::from_parts(Translation3::from(j.axis.into_inner() * q), UnitQuaternion::identity())
            }
        }
    }

    /// The tip pose, the position of every joint frame (then the tip) in the base frame (into
    /// `points`, a buffer kept between calls), and the geometric Jacobian (rows: linear mm per unit,
    /// then angular rad per unit) in the base frame.
    pub fn tip_and_jacobian(
        &self,
        q: &[f64],
        points: &mut Vec<Point<Robot>>,
        jac: &mut Matrix6xX<f64>,
    ) -> Transform<Robot, Needle> {
        let mut coords = Vec::with_capacity(self.joints.len() + 1);
        let tip = self.isometry_and_jacobian(q, &mut coords, jac);
        points.clear();
        points.extend(coords.into_iter().map(Point::from_coords));
        Transform::from_nalgebra(tip)
    }

    /// [`Arm::tip_and_jacobian`] with the tip as an isometry, for the numerical work inside this crate.
    pub(crate) fn isometry_and_jacobian(
        &self,
        q: &[f64],
        points: &mut Vec<Vector3<f64>>,
        jac: &mut Matrix6xX<f64>,
    ) -> Isometry3<f64> {
        let n = self.joints.len();
        if jac.ncols() != n {
            *jac = Matrix6xX::zeros(n);
        }
        points.clear();
        let mut axes = [Vector3::zeros(); MAX_DOF];
        let mut t = Isometry3::identity();
        for (i, (j, &qi)) in self.joints.iter().zip(q).enumerate() {
            t *= j.origin;
            points.push(t.translation.vector);
            if let Some(a) = axes.get_mut(i) {
                *a = t.rotation * j.axis.into_inner();
            }
            t *= self.joint_motion(j, qi);
        }
        let tip = t * self.tip_offset;
        points.push(tip.translation.vector);
        let p_tip = tip.translation.vector;
        for (i, j) in self.joints.iter().enumerate() {
            let a = axes.get(i).copied().unwrap_or_else(Vector3::zeros);
            let (lin, ang) = match j.motion {
                Motion::Revolute => (a.cross(&(p_tip - points[i])), a),
                Motion::Prismatic => (a, Vector3::zeros()),
            };
            jac.fixed_slice_mut::<3, 1>(0, i).copy_from(&lin);
            jac.fixed_slice_mut::<3, 1>(3, i).copy_from(&ang);
        }
        tip
    }

    /// Whether `q` is within every joint's limits.
    #[must_use]
    pub fn within_limits(&self, q: &[f64]) -> bool {
        self.joints.iter().zip(q).all(|(j, v)| *v >= j.lower && *v <= j.upper)
    }
}
