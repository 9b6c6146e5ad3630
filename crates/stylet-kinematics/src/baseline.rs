//! The `k` crate's Jacobian IK on the same chain: the baseline Stylet's solver is measured
//! against (`stylet bench ik`, `cargo bench -p stylet-kinematics`). Not used for control.
//!
//! `k` solves the full 6-D pose (its constraint flags act in the world frame and cannot free the
//! needle roll); prismatic joints are held, as in Stylet's solver. `k` works in metres.

use nalgebra::{Isometry3, Translation3};
use stylet_core::frame::{Needle, Robot, Transform};

use crate::model::{Arm, Motion};

/// Why the baseline could not be set up. The doc comment is the message.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum BaselineError {
    /// k cannot read {path}: {reason}
    Urdf {
        /// The URDF.
        path: String,
        /// k's message.
        reason: String,
    },
    /// k's chain has no link {link:?}
    NoLink {
        /// The tip link.
        link: String,
    },
}

/// `k::JacobianIkSolver(1e-5 m, 0.01 deg, 0.5, 100)` on the URDF chain to `tip`.
#[derive(Debug)]
pub struct KBaseline {
    serial: k::SerialChain<f64>,
    solver: k::JacobianIkSolver<f64>,
    constraints: k::Constraints,
    prismatic: Vec<bool>,
}

impl KBaseline {
    /// Loads the chain with `k`.
    ///
    /// # Errors
    /// A [`BaselineError`].
    pub fn new(urdf: &std::path::Path, arm: &Arm) -> Result<Self, BaselineError> {
        let chain = k::Chain::<f64>::from_urdf_file(urdf)
            .map_err(|e| BaselineError::Urdf { path: urdf.display().to_string(), reason: e.to_string() })?;
        let end = chain.find_link(&arm.tip).ok_or_else(|| BaselineError::NoLink { link: arm.tip.clone() })?;
        let serial = k::SerialChain::from_end(end);
        let constraints = k::Constraints {
            ignored_joint_names: arm
                .joints
                .iter()
                .filter(|j| j.motion == Motion::Prismatic)
                .map(|j| j.name.clone())
                .collect(),
            ..k::Constraints::default()
        };
        Ok(KBaseline {
            serial,
            solver: k::JacobianIkSolver::new(1e-5, 0.01f64.to_radians(), 0.5, 100),
            constraints,
            prismatic: arm.joints.iter().map(|j| j.motion == Motion::Prismatic).collect(),
        })
    }

    /// Solves for the tip pose `target` (mm) from `seed` (rad / mm); returns the joints (rad / mm)
    /// when k reports success.
    #[must_use]
    pub fn solve(&self, seed: &[f64], target: &Transform<Robot, Needle>) -> Option<Vec<f64>> {
        let target = target.to_nalgebra();
        let si: Vec<f64> = seed.iter().zip(&self.prismatic).map(|(v, p)| if *p { v * 1e-3 } else { *v }).collect();
        self.serial.set_joint_positions_unchecked(&si);
        let t = Isometry3::from_parts(Translation3::from(target.translation.vector * 1e-3), target.rotation);
        k::InverseKinematicsSolver::solve_with_constraints(&self.solver, &self.serial, &t, &self.constraints).ok()?;
        Some(
            self.serial
                .joint_positions()
                .iter()
                .zip(&self.prismatic)
                .map(|(v, p)| if *p { v * 1e3 } else { *v })
                .collect(),
        )
    }
}
