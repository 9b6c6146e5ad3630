//! The simulated patient and robot as they really are (docs/demo.md, "error sources"): what the
//! checkpoint CTs image and what the accuracy is measured against. Stylet never reads this; it
//! sees only the CTs and the controller's encoders.

use nalgebra::{Isometry3, Point3, Vector3};
use stylet_kinematics::Arm;
use stylet_sim::breathing::Breathing;

/// Ground truth of one run.
pub(crate) struct Truth {
    /// The arm as built (hidden calibration error).
    pub(crate) arm: Arm,
    /// Where the robot really is in the planning CT.
    pub(crate) ct_from_robot: Isometry3<f64>,
    /// Needle bending: direction (unit, across the axis) and mm per mm inserted at 100 mm.
    pub(crate) deflect_dir: Vector3<f64>,
    pub(crate) deflection_per_mm: f64,
    /// The patient's breathing (the same model the belt reads).
    pub(crate) breathing: Breathing,
    /// The liver's displacement when the planning CT was taken (end-exhale breath-hold).
    pub(crate) liver_at_planning_ct: Vector3<f64>,
    pub(crate) liver_motion: bool,
}

impl Truth {
    /// The liver's displacement at breathing time `t_s` from where the planning CT imaged it.
    pub(crate) fn liver_offset(&mut self, t_s: f64) -> Vector3<f64> {
        if !self.liver_motion {
            return Vector3::zeros();
        }
        Vector3::from(self.breathing.liver_offset_mm(t_s)) - self.liver_at_planning_ct
    }

    /// The tissue point the tip sits in, in planning-CT coordinates, when it stopped at breathing
    /// time `t_s` with the arm's true joints `q` and `inserted_mm` past the skin: the true
    /// tip, bent by the deflection, less the liver's displacement at that moment (the tip cut
    /// into tissue that had moved by that much; the tissue carries it back when it returns).
    pub(crate) fn tip_in_tissue(&mut self, q: &[f64], inserted_mm: f64, t_s: f64) -> Vector3<f64> {
        let tip_robot = self.arm.tip_pose(q).translation.vector;
        let tip_ct = (self.ct_from_robot * Point3::from(tip_robot)).coords;
        let inserted = inserted_mm.max(0.0);
        let bend = self.deflect_dir * (self.deflection_per_mm * inserted * inserted / 100.0_f64.max(inserted));
        tip_ct + bend - self.liver_offset(t_s)
    }
}

/// The end-exhale time nearest before `t_s` (lowest surrogate in the 6 s before it).
pub(crate) fn end_exhale_before(b: &mut Breathing, t_s: f64) -> f64 {
    let mut best = (t_s, f64::INFINITY);
    for i in 0..600 {
        let t = t_s - f64::from(i) * 0.01;
        let v = b.surrogate(t);
        if v < best.1 {
            best = (t, v);
        }
    }
    best.0
}
