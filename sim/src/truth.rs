//! The robot as built, not as modelled: a kinematic calibration error hidden from the controller
//! and from Stylet (link lengths and joint zeros a little off), drawn from a seed.

use nalgebra::{Translation3, UnitQuaternion};
use rand::{Rng, SeedableRng};
use stylet_kinematics::{Arm, Motion};

/// The true arm's differences from the model.
#[derive(Clone, Debug, PartialEq)]
pub struct HiddenCalibration {
    /// Per joint: how much longer the link leading to it is, mm.
    pub link_delta_mm: Vec<f64>,
    /// Per joint: the true zero's offset, rad (revolute joints; 0 for prismatic ones).
    pub joint_offset_rad: Vec<f64>,
}

impl HiddenCalibration {
    /// Draws each link's error uniformly in +-`link_mm` and each revolute joint's zero offset in
    /// +-`joint_deg`.
    #[must_use]
    pub fn draw(arm: &Arm, link_mm: f64, joint_deg: f64, seed: u64) -> Self {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ 0xCA11_B8A7_E000_0000);
        let mut link_delta_mm = Vec::new();
        let mut joint_offset_rad = Vec::new();
        for j in &arm.joints {
            link_delta_mm.push(if link_mm > 0.0 { rng.gen_range(-link_mm..=link_mm) } else { 0.0 });
            let off = if joint_deg > 0.0 { rng.gen_range(-joint_deg..=joint_deg).to_radians() } else { 0.0 };
            joint_offset_rad.push(if j.motion == Motion::Revolute { off } else { 0.0 });
        }
        Self { link_delta_mm, joint_offset_rad }
    }

    /// The arm as built: each joint origin's translation lengthened by its error along its own
    /// direction, each revolute joint's zero turned by its offset about its axis.
    #[must_use]
    pub fn true_arm(&self, nominal: &Arm) -> Arm {
        let mut arm = nominal.clone();
        for (i, j) in arm.joints.iter_mut().enumerate() {
            let t = j.origin.translation.vector;
            let len = t.norm();
            if len > 1e-9 {
                let d = self.link_delta_mm.get(i).copied().unwrap_or(0.0);
                j.origin.translation = Translation3::from(t * ((len + d) / len));
            }
            let off = self.joint_offset_rad.get(i).copied().unwrap_or(0.0);
            if off != 0.0 {
                j.origin.rotation *= UnitQuaternion::from_axis_angle(&j.axis, off);
            }
        }
        arm
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn arm() -> Arm {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/robot");
        Arm::from_urdf_file(&dir.join("stylet_arm.urdf"), "base_link", "needle_tip").unwrap()
    }

    #[test]
    fn the_true_arm_differs_within_the_drawn_bounds() {
        let nominal = arm();
        let cal = HiddenCalibration::draw(&nominal, 0.2, 0.05, 7);
        assert!(cal.link_delta_mm.iter().all(|d| d.abs() <= 0.2));
        assert!(cal.joint_offset_rad.iter().all(|d| d.abs() <= 0.05f64.to_radians() + 1e-15));
        assert!(cal.link_delta_mm.iter().any(|d| d.abs() > 0.01));
        let truth = cal.true_arm(&nominal);
        let q = vec![0.1; nominal.dof()];
        let e = (truth.tip_in_robot(&q) - nominal.tip_in_robot(&q)).norm_mm();
        // Six links and joints of this size move the tip by a fraction of a millimetre.
        assert!(e > 0.01 && e < 2.0, "{e}");
        // No error, same arm.
        let none = HiddenCalibration::draw(&nominal, 0.0, 0.0, 7).true_arm(&nominal);
        assert_eq!(none.tip_pose(&q), nominal.tip_pose(&q));
    }
}
