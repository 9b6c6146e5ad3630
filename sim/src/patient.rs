//! The simulated patient and robot as they really are (docs/demo.md, "Error sources"): what the
//! checkpoint CTs image and what the accuracy is measured against. Stylet never reads this; it
//! sees only the CTs and the controller's encoders.
//!
//! Besides the arm's hidden calibration, the needle's deflection and the breathing liver, two
//! error sources of a CT suite act between the CTs:
//! - **Tissue push**: the advancing needle pushes the liver ahead of its tip (a stiffness drawn
//!   per run up to `push_mm`); when the needle stops, the tissue relaxes back over it with time
//!   constant `relax_s`, to a residual third of the push (friction holds the rest).
//! - **Patient shift**: at each CT the patient has moved on the table by a bounded random walk
//!   (steps of half the bound, never more than `shift_mm` from where the planning CT found them).

use nalgebra::Vector3;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stylet_core::frame::{Ct, Point, Robot, Transform, Vector};
use stylet_kinematics::Arm;

use crate::breathing::Breathing;

/// The residual fraction of a push once the tissue has relaxed.
const RESIDUAL: f64 = 1.0 / 3.0;

/// The liver pushed ahead of the advancing needle, relaxing once it stops.
#[derive(Clone, Debug, PartialEq)]
pub struct TissuePush {
    /// Most the tissue is pushed, mm (this run's draw).
    pub max_mm: f64,
    /// Relaxation time constant after the needle stops, s.
    pub relax_s: f64,
    push_mm: f64,
    at_stop_mm: f64,
    depth_mm: f64,
    t_s: f64,
}

impl TissuePush {
    /// No push.
    #[must_use]
    pub fn none() -> Self {
        Self::new(0.0, 1.0)
    }

    /// Tissue that is pushed up to `max_mm`, relaxing with `relax_s`.
    #[must_use]
    pub fn new(max_mm: f64, relax_s: f64) -> Self {
        TissuePush {
            max_mm: max_mm.max(0.0),
            relax_s: relax_s.max(1e-3),
            push_mm: 0.0,
            at_stop_mm: 0.0,
            depth_mm: 0.0,
            t_s: 0.0,
        }
    }

    /// The needle is at `depth_mm` (inserted past the skin) at `t_s`: while it advances half of
    /// each millimetre goes into pushing the tissue (until the push reaches its most); while it
    /// stands or withdraws the push relaxes toward its residual. Returns the push now, mm along
    /// the needle's axis.
    pub fn update(&mut self, t_s: f64, depth_mm: f64) -> f64 {
        let advance = depth_mm - self.depth_mm;
        if advance > 1e-9 && depth_mm > 0.0 {
            self.push_mm = (self.push_mm + 0.5 * advance).min(self.max_mm);
            self.at_stop_mm = self.push_mm;
        } else if t_s > self.t_s {
            let floor = self.at_stop_mm * RESIDUAL;
            self.push_mm = floor + (self.push_mm - floor) * (-(t_s - self.t_s) / self.relax_s).exp();
        }
        if depth_mm <= 0.0 {
            // Out of the tissue: nothing pushes any more.
            self.push_mm = 0.0;
            self.at_stop_mm = 0.0;
        }
        self.depth_mm = depth_mm;
        self.t_s = self.t_s.max(t_s);
        self.push_mm
    }

    /// The push now, mm.
    #[must_use]
    pub fn push_mm(&self) -> f64 {
        self.push_mm
    }
}

/// The patient moving on the table between CTs.
#[derive(Clone, Debug)]
pub struct PatientShift {
    /// The bound, mm.
    pub max_mm: f64,
    now: Vector3<f64>,
    rng: SmallRng,
}

impl PatientShift {
    /// A patient who moves up to `max_mm` from where the planning CT found them.
    #[must_use]
    pub fn new(max_mm: f64, seed: u64) -> Self {
        PatientShift {
            max_mm: max_mm.max(0.0),
            now: Vector3::zeros(),
            rng: SmallRng::seed_from_u64(seed ^ 0x5417_f7ed),
        }
    }

    /// Where the patient is now relative to the planning CT, LPS mm.
    #[must_use]
    pub fn now(&self) -> Vector<Ct> {
        Vector::from_nalgebra(self.now)
    }

    /// The patient has moved again by the time of the next CT: one step of the walk, kept within
    /// the bound. Returns the shift at that CT.
    pub fn next_ct(&mut self) -> Vector<Ct> {
        if self.max_mm <= 0.0 {
            return self.now();
        }
        let step = Vector3::from_fn(|_, _| self.rng.gen_range(-1.0..1.0)) * (self.max_mm / 2.0 / 3f64.sqrt());
        let next = self.now + step;
        self.now = if next.norm() > self.max_mm { next * (self.max_mm / next.norm()) } else { next };
        self.now()
    }
}

/// Ground truth of one run.
#[derive(Clone, Debug)]
pub struct Patient {
    /// The arm as built (hidden calibration error).
    pub arm: Arm,
    /// Where the robot really is in the planning CT.
    pub ct_from_robot: Transform<Ct, Robot>,
    /// Needle bending: direction (unit; its part across the needle's axis is the bend's).
    pub deflect_dir: Vector<Ct>,
    /// Needle bending, mm per mm inserted at 100 mm.
    pub deflection_per_mm: f64,
    /// The patient's breathing (the same model the belt reads).
    pub breathing: Breathing,
    /// The liver's displacement when the planning CT was taken (end-exhale breath-hold).
    pub liver_at_planning_ct: Vector<Ct>,
    /// Whether the liver moves with breathing under the tip.
    pub liver_motion: bool,
    /// The liver pushed ahead of the needle.
    pub push: TissuePush,
    /// The patient moving between CTs.
    pub shift: PatientShift,
}

impl Patient {
    /// The liver's displacement at breathing time `t_s` from where the planning CT imaged it.
    pub fn liver_offset(&mut self, t_s: f64) -> Vector<Ct> {
        if !self.liver_motion {
            return Vector::zeros();
        }
        let [x, y, z] = self.breathing.liver_offset_mm(t_s);
        Vector::new(x, y, z) - self.liver_at_planning_ct
    }

    /// The tissue point the tip sits in, in planning-CT coordinates, as a CT at `imaged_s`
    /// images it, the needle having stopped at breathing time `cut_s` with the arm's true joints
    /// `q`, `inserted_mm` past the skin, along `axis`: the true tip, bent by the deflection, less
    /// the liver's displacement when it stopped (the tip cut into tissue that had moved by that
    /// much; the tissue carries it back when it returns; not outside the skin), less the
    /// tissue's push along the axis (relaxing until `imaged_s`) and the patient's shift.
    pub fn tip_in_tissue(
        &mut self,
        q: &[f64],
        inserted_mm: f64,
        (cut_s, imaged_s): (f64, f64),
        axis: Vector<Ct>,
    ) -> Point<Ct> {
        let tip_ct = self.ct_from_robot * self.arm.tip_in_robot(q);
        let inserted = inserted_mm.max(0.0);
        // The needle bends across its axis.
        let across = Vector::from_nalgebra(
            (self.deflect_dir - axis * self.deflect_dir.dot(axis))
                .to_nalgebra()
                .try_normalize(1e-9)
                .unwrap_or_else(Vector3::zeros),
        );
        let bend = across * (self.deflection_per_mm * inserted * inserted / 100.0_f64.max(inserted));
        self.push.update(cut_s, inserted);
        let push = self.push.update(imaged_s, inserted);
        // Outside the skin the tip is in no tissue: the liver's breathing does not carry it
        // (the patient's shift on the table still moves the anatomy under it).
        let liver = if inserted > 0.0 { self.liver_offset(cut_s) } else { Vector::zeros() };
        tip_ct + bend - liver - axis * push - self.shift.now()
    }
}

/// The end-exhale time nearest before `t_s` (lowest surrogate in the 6 s before it).
pub fn end_exhale_before(b: &mut Breathing, t_s: f64) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_builds_while_advancing_and_relaxes_to_a_third_when_stopped() {
        let mut p = TissuePush::new(2.0, 4.0);
        assert_eq!(p.update(0.0, 0.0), 0.0);
        assert!((p.update(1.0, 2.0) - 1.0).abs() < 1e-12);
        assert!((p.update(2.0, 10.0) - 2.0).abs() < 1e-12, "capped at its most");
        let after_one_tau = p.update(6.0, 10.0);
        let floor = 2.0 / 3.0;
        assert!((after_one_tau - (floor + (2.0 - floor) * (-1.0f64).exp())).abs() < 1e-12, "{after_one_tau}");
        assert!((p.update(1000.0, 10.0) - floor).abs() < 1e-9);
        assert_eq!(p.update(1001.0, 0.0), 0.0, "out of the tissue");
        assert_eq!(TissuePush::none().update(5.0, 50.0), 0.0);
    }

    #[test]
    fn the_patient_shift_stays_within_its_bound_and_is_the_same_for_a_seed() {
        let mut a = PatientShift::new(2.0, 7);
        let mut b = PatientShift::new(2.0, 7);
        let mut moved = 0.0f64;
        for _ in 0..200 {
            let s = a.next_ct();
            assert!(s.norm_mm() <= 2.0 + 1e-12, "{s:?}");
            assert_eq!(s, b.next_ct());
            moved = moved.max(s.norm_mm());
        }
        assert!(moved > 1.0, "the walk reaches out: {moved}");
        assert_eq!(PatientShift::new(0.0, 7).next_ct(), Vector::zeros());
    }
}
