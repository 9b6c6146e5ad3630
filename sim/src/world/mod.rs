//! The simulated world: one patient, one arm, one CT scanner, one belt, one ablation device and
//! a scripted operator, behind the procedure driver's ports (`stylet_procedure::ports`). The
//! driver sees what a CT suite would show it; the truth stays here, and the errors of a run are
//! computed from it afterwards ([`SimWorld::truth`]).
//!
//! The arm is a [`SimArm`]: [`VirtualArm`] steps the simulated controller in lockstep with the
//! supervisor on a [`MockClock`](stylet_core::MockClock) (virtual time: as fast as the CPU
//! allows, the same run for a seed); [`RealtimeArm`] is the supervisor's runner thread over a
//! real pty, on the wall clock.
//!
//! [`arms`]: the three arms; [`ports`]: the world behind each port.

use std::collections::VecDeque;

use nalgebra::Vector3;
use serde_json::{json, Value};
use stylet_core::frame::{Ct, Point, Robot, Transform, Vector};
use stylet_procedure::ports::{Acquired, CtPurpose, Request};

use crate::patient::{end_exhale_before, Patient};
use crate::phantom::Phantom;
use crate::scenario::{EventKind, OperatorScript, ProcedureEvent, Scenario};

mod arms;
mod ports;

pub use arms::{HostDrivenArm, RealtimeArm, SimArm, TrueController, VirtualArm};

/// Breathing time at procedure time 0: the patient breathed for a minute before (the processor
/// has adapted), and the planning CT was the end-exhale breath-hold just before.
const BREATHING_BEFORE_S: f64 = 60.0;
/// The scanner takes a CT in the next end-exhale breath-hold; it arrives this long after.
const CT_DELIVERY_S: f64 = 2.0;
/// The belt's sample period when its sensor gives no rate, s.
const BELT_PERIOD_S: f64 = 0.1;

/// What a CT request became.
struct CtJob {
    purpose: CtPurpose,
    take_at_s: f64,
    ready_at_s: f64,
    render: Option<std::thread::JoinHandle<stylet_imaging::Volume>>,
}

/// The truth behind one CT or one ablation.
#[derive(Clone, Debug)]
struct Imaged {
    t_s: f64,
    tip: Vector3<f64>,
    budget: Value,
}

/// How the world was set up besides the scenario.
#[derive(Clone, Debug)]
pub struct WorldSetup {
    /// The label table of the phantom's labels.
    pub table: stylet_planning::LabelTable,
    /// The needle holder's stand-off from the skin entry, mm (the needle's visible length outside).
    pub standoff_mm: f64,
    /// The ablation programme: power, W, and duration, s, played out in `ablation_sim_s`.
    pub ablation_w_s: (f64, f64),
    /// How long the simulated ablation takes, s.
    pub ablation_sim_s: f64,
    /// The arm's nominal model (what the stack believes), to tell the hidden calibration's share.
    pub nominal_arm: stylet_kinematics::Arm,
}

/// The simulated world behind every port.
pub struct SimWorld<A> {
    /// The arm.
    pub arm: A,
    seed: u64,
    phantom: Phantom,
    /// The planning CT the scanner draws each CT's needle into (shared with its render thread,
    /// which makes the copy: a 70 MB copy on the driver's thread would hold up its heartbeat).
    planning_ct: std::sync::Arc<stylet_imaging::Volume>,
    /// The planning CT's labels (which voxels breathing carries), shared with the render thread.
    labels: std::sync::Arc<stylet_imaging::Volume>,
    /// The liver's true displacement since the planning CT in each CT with the needle.
    liver_at_cts: Vec<Vector3<f64>>,
    patient: Patient,
    setup: WorldSetup,
    noise: (f64, f64),
    ins: usize,
    planning_given: bool,
    belt: crate::breathing::Breathing,
    next_sample_s: f64,
    belt_silent_until: Option<f64>,
    pending: VecDeque<ProcedureEvent>,
    due_at: Option<f64>,
    /// What the scenario's events did, in order.
    pub fired: Vec<String>,
    ct: Option<CtJob>,
    cts: u64,
    ready: Option<Acquired>,
    last_depth: f64,
    stopped_at: f64,
    /// The joints of the last imaging in tissue and the tip then.
    last_tip: Option<(Vec<f64>, Vector3<f64>)>,
    imaged: Vec<Imaged>,
    /// When the running ablation started.
    ablation: Option<f64>,
    ablated: Vec<(Imaged, Vector3<f64>, stylet_planning::Zone)>,
    script: OperatorScript,
    requests: VecDeque<Request>,
    /// Set from outside (a signal): the scripted operator leaves ([`Request::Leave`]).
    leave: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl<A> std::fmt::Debug for SimWorld<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimWorld").field("seed", &self.seed).field("cts", &self.cts).finish_non_exhaustive()
    }
}

impl<A: SimArm> SimWorld<A> {
    /// The world of `scenario` with `seed`, its planning CT `phantom` and its truth `patient`.
    pub fn new(arm: A, scenario: &Scenario, seed: u64, phantom: Phantom, patient: Patient, setup: WorldSetup) -> Self {
        let ins = arm.safety().robot.insertion_joint().unwrap_or(0);
        let belt = patient.breathing.clone();
        let mut events = scenario.events.clone();
        events.sort_by(|a, b| a.at_inserted_mm.total_cmp(&b.at_inserted_mm));
        let home = arm.safety().robot.home();
        SimWorld {
            arm,
            seed,
            planning_ct: std::sync::Arc::new(phantom.volume.clone()),
            labels: std::sync::Arc::new(phantom.labels.clone()),
            liver_at_cts: Vec::new(),
            phantom,
            patient,
            noise: (scenario.phantom.noise_hu, scenario.errors.checkpoint_dose_fraction),
            setup,
            ins,
            planning_given: false,
            belt,
            next_sample_s: -BREATHING_BEFORE_S,
            belt_silent_until: None,
            pending: events.into(),
            due_at: None,
            fired: Vec::new(),
            ct: None,
            cts: 0,
            ready: None,
            last_depth: home.get(ins).copied().unwrap_or(0.0),
            stopped_at: 0.0,
            last_tip: None,
            imaged: Vec::new(),
            ablation: None,
            ablated: Vec::new(),
            script: scenario.operator,
            requests: VecDeque::new(),
            leave: None,
        }
    }

    fn breathing_s(t_s: f64) -> f64 {
        BREATHING_BEFORE_S + t_s
    }

    /// How far the needle really is past the skin, mm.
    fn inserted_mm(&self) -> f64 {
        self.arm.true_joints().get(self.ins).copied().unwrap_or(0.0) - self.setup.standoff_mm
    }

    /// The true needle axis (CT), from the true arm.
    fn true_axis(&self, q: &[f64]) -> Vector3<f64> {
        let mut q2 = q.to_vec();
        q2[self.ins] += 1.0;
        let p = |q: &[f64]| (self.patient.ct_from_robot * self.patient.arm.tip_in_robot(q)).to_nalgebra().coords;
        (p(&q2) - p(q)).try_normalize(1e-9).unwrap_or_else(Vector3::z)
    }

    /// Where the tip really is in the tissue, as imaged at `t_s` (a step that did not advance
    /// leaves the tip in the tissue it was in).
    fn tip_now(&mut self, t_s: f64) -> Imaged {
        let q = self.arm.true_joints();
        let inserted = (q[self.ins] - self.setup.standoff_mm).max(0.0);
        let axis = self.true_axis(&q);
        let cut = Self::breathing_s(self.stopped_at);
        let imaged = Self::breathing_s(t_s).max(cut);
        let still_there = self
            .last_tip
            .as_ref()
            .is_some_and(|(q0, _)| inserted > 0.0 && q0.iter().zip(&q).all(|(a, b)| (a - b).abs() < 1e-6));
        let tip = match &self.last_tip {
            Some((_, tip)) if still_there => *tip,
            _ => {
                self.patient
                    .tip_in_tissue(&q, inserted, (cut, imaged), Vector::from_nalgebra(axis))
                    .to_nalgebra()
                    .coords
            }
        };
        self.last_tip = (inserted > 0.0).then(|| (q.clone(), tip));
        let nominal = self.setup_nominal_tip(&q);
        let budget = json!({
            "liver_since_planning_ct_mm": self.patient.liver_offset(cut).norm_mm(),
            "hidden_calibration_at_tip_mm": (self.patient.arm.tip_in_robot(&q).to_nalgebra().coords - nominal).norm(),
            "needle_deflection_mm": self.patient.deflection_per_mm * inserted * inserted / 100.0_f64.max(inserted),
            "tissue_push_mm": self.patient.push.push_mm(),
            "patient_shift_mm": self.patient.shift.now().norm_mm(),
        });
        Imaged { t_s, tip, budget }
    }

    fn setup_nominal_tip(&self, q: &[f64]) -> Vector3<f64> {
        self.setup.nominal_arm.tip_in_robot(q).to_nalgebra().coords
    }

    /// After time passed: the scenario's events, the scanner, the needle's motion.
    fn after_wait(&mut self) {
        let now = self.arm.clock_s();
        let depth = self.arm.true_joints().get(self.ins).copied().unwrap_or(0.0);
        if (depth - self.last_depth).abs() > 1e-9 {
            self.stopped_at = now;
            self.last_depth = depth;
        }
        self.scenario_events(now);
        let take = self.ct.as_ref().is_some_and(|j| j.render.is_none() && now >= j.take_at_s);
        if take {
            self.take_ct(now);
        }
        // On a wall clock the render runs in the background (SCHED_IDLE) and may take longer
        // than the scanner's delivery time under load: the CT is delivered once it is done, so
        // that the caller (the driver's thread, which sends the heartbeat) never waits on it. In
        // virtual time the render is joined when due, whatever its progress, for one run per seed.
        let virtual_time = self.arm.is_virtual();
        let ready = self
            .ct
            .as_ref()
            .is_some_and(|j| now >= j.ready_at_s && j.render.as_ref().is_some_and(|r| virtual_time || r.is_finished()));
        if ready {
            if let Some(job) = self.ct.take() {
                if let Some(Ok(volume)) = job.render.map(std::thread::JoinHandle::join) {
                    self.ready = Some(Acquired {
                        volume,
                        acquired_s: job.take_at_s,
                        source: format!("simulated {:?} CT {}", job.purpose, self.cts),
                    });
                }
            }
        }
    }

    fn scenario_events(&mut self, now: f64) {
        let inserted = self.inserted_mm();
        let Some(ev) = self.pending.front().copied() else { return };
        if inserted >= ev.at_inserted_mm && self.due_at.is_none() {
            self.due_at = Some(now + ev.after_s);
        }
        if !self.due_at.is_some_and(|d| now >= d) {
            return;
        }
        self.pending.pop_front();
        self.due_at = None;
        let what = match ev.what {
            EventKind::Controller(kind) => {
                self.arm.inject(kind);
                format!("controller fault injected: {kind:?}")
            }
            EventKind::BeltSilent(secs) => {
                self.belt_silent_until = Some(now + secs);
                format!("respiratory belt silent for {secs} s")
            }
            EventKind::Operator(r) => {
                self.requests.push_back(r);
                format!("operator asks: {r:?}")
            }
        };
        self.fired.push(format!("at {inserted:.1} mm inserted: {what}"));
    }

    /// The CT is taken now: the needle drawn into a copy of the planning CT along its true
    /// line, at the dose of a checkpoint CT (rendered on a worker).
    fn take_ct(&mut self, now: f64) {
        self.patient.shift.next_ct();
        let imaged = self.tip_now(now);
        let q = self.arm.true_joints();
        let axis = self.true_axis(&q);
        let inserted = (q[self.ins] - self.setup.standoff_mm).max(0.0);
        let purpose = self.ct.as_ref().map_or(CtPurpose::Checkpoint, |j| j.purpose);
        let back = if purpose == CtPurpose::Confirmation { 40.0 } else { inserted + self.setup.standoff_mm + 20.0 };
        // The liver is where this breath-hold carries it, and a needle in it with it (the marker
        // frame on the skin, and so the CT's frame, stays put).
        let liver = self.patient.liver_offset(Self::breathing_s(now)).to_nalgebra();
        self.liver_at_cts.push(liver);
        let carried = if inserted > 0.0 { liver } else { Vector3::zeros() };
        let tip = imaged.tip + carried;
        let from = tip - axis * back;
        let base = std::sync::Arc::clone(&self.planning_ct);
        let labels = std::sync::Arc::clone(&self.labels);
        let (noise, dose) = self.noise;
        let seed = self.seed.wrapping_add(self.cts);
        self.cts += 1;
        self.imaged.push(imaged);
        if let Some(job) = self.ct.as_mut() {
            let background = !self.arm.is_virtual();
            job.render = Some(std::thread::spawn(move || {
                if background {
                    // The kernel's workers that carry the serial line come first.
                    stylet_rt::background_current_thread();
                }
                let mut ct = (*base).clone();
                crate::phantom::displace_liver(&mut ct, &base, &labels, Vector::from_nalgebra(liver));
                crate::phantom::render_needle(&mut ct, Point::from_coords(from), Point::from_coords(tip), 1.5);
                crate::phantom::lower_dose(&mut ct, noise, dose, seed);
                ct
            }));
        }
    }

    /// The scripted operator leaves ([`Request::Leave`]) once `flag` is set: a run that was
    /// asked to end from outside (a signal) ends as when a console closes.
    pub fn leave_when(&mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.leave = Some(flag);
    }

    /// What the world knows at the end without the driver's report (the world process of
    /// `stylet sim world`): the true tip at the last CT with the needle in tissue, its distance
    /// and that of the zone centre (`centre_from_tip_mm` behind it on the true axis) to the
    /// nearest true tumour centre, the CTs taken, the scenario's events.
    #[must_use]
    pub fn world_truth(&self, centre_from_tip_mm: f64) -> Value {
        let last = self.last_tip.as_ref().map(|(q, tip)| (*tip, self.true_axis(q)));
        let nearest = |p: Vector3<f64>| {
            self.phantom.tumours_in_ct.iter().map(|(c, _)| (c.to_nalgebra().coords - p).norm()).min_by(f64::total_cmp)
        };
        let q = self.arm.true_joints();
        json!({
            "tip_at_last_ct_lps_mm": last.map(|(t, _)| [t.x, t.y, t.z]),
            "tip_to_tumour_centre_mm": last.and_then(|(t, _)| nearest(t)),
            "zone_centre_to_tumour_centre_mm": last.and_then(|(t, axis)| nearest(t - axis * centre_from_tip_mm)),
            "error_sources_at_the_tip": self.imaged.last().map(|i| i.budget.clone()),
            "cts": self.cts,
            "controller_drives_off": !self.arm.true_drives_on(),
            "inserted_mm": (q.get(self.ins).copied().unwrap_or(0.0) - self.setup.standoff_mm).max(0.0),
            "scenario_events": self.fired,
        })
    }

    /// The planning CT the scanner gave the driver (what the procedure's results are drawn on).
    #[must_use]
    pub fn planning_volume(&self) -> std::sync::Arc<stylet_imaging::Volume> {
        std::sync::Arc::clone(&self.planning_ct)
    }

    /// The errors of the run, from the truth, for the driver's `report`.
    #[must_use]
    pub fn truth(&mut self, report: &stylet_procedure::Report) -> Value {
        let planned_margin = report.plan.as_ref().map(|p| p.plan.margin_mm);
        let mut positions = Vec::new();
        for (k, (imaged, axis, zone)) in self.ablated.iter().enumerate() {
            let Some(p) = report.positions.get(k) else { continue };
            let (planned_tip, p_axis) = (p.planned_tip.to_nalgebra().coords, p.axis.to_nalgebra());
            let planned_centre = planned_tip - p_axis * zone.centre_from_tip_mm;
            let achieved_centre = imaged.tip - axis * zone.centre_from_tip_mm;
            let error = imaged.tip - planned_tip;
            let along = error.dot(&p_axis);
            positions.push(json!({
                "ablated_at_s": imaged.t_s,
                "tip_error_mm": error.norm(),
                // Deeper than planned is positive.
                "tip_error_along_axis_mm": along,
                "tip_error_across_axis_mm": (error - p_axis * along).norm(),
                "zone_centre_error_mm": (achieved_centre - planned_centre).norm(),
                "measured_tip_error_mm": p.measured_tip.map(|m| (m.to_nalgebra().coords - planned_tip).norm()),
                "error_sources_at_the_tip": imaged.budget,
            }));
        }
        let worst = |key: &str| {
            positions
                .iter()
                .filter_map(|p| p[key].as_f64())
                .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))))
        };
        let zone_error = worst("zone_centre_error_mm");
        // The true tumour (a sphere in the phantom) nearest the planner's target, and the true
        // zones: the margin the ablations really achieved.
        let tumour = report.target.and_then(|t| {
            self.phantom
                .tumours_in_ct
                .iter()
                .copied()
                .min_by(|a, b| (a.0 - t).norm_mm().total_cmp(&(b.0 - t).norm_mm()))
        });
        let achieved_margin = tumour.filter(|_| !self.ablated.is_empty()).map(|(c, d)| {
            let surface = sphere_points(c.to_nalgebra().coords, d / 2.0, 400);
            let zones: Vec<(Point<Ct>, Vector<Ct>)> = self
                .ablated
                .iter()
                .map(|(i, axis, zone)| {
                    (Point::from_coords(i.tip - axis * zone.centre_from_tip_mm), Vector::from_nalgebra(*axis))
                })
                .collect();
            let zone = &self.ablated[0].2;
            let planned: Vec<(Point<Ct>, Vector<Ct>)> = report
                .positions
                .iter()
                .map(|p| {
                    let (tip, axis) = (p.planned_tip.to_nalgebra().coords, p.axis.to_nalgebra());
                    (Point::from_coords(tip - axis * zone.centre_from_tip_mm), p.axis)
                })
                .collect();
            (stylet_planning::margin_mm(&surface, zone, &zones), stylet_planning::margin_mm(&surface, zone, &planned))
        });
        let q = self.arm.true_joints();
        let last = self.imaged.last().map(|i| i.tip);
        json!({
            "positions": positions,
            "tip_error_mm": worst("tip_error_mm"),
            "zone_centre_error_mm": zone_error,
            "achieved_margin_mm": achieved_margin.map(|m| m.0),
            "planned_zones_margin_on_true_tumour_mm": achieved_margin.map(|m| m.1),
            "planned_margin_mm": planned_margin,
            "planner_target_to_true_centre_mm": report.target.zip(tumour).map(|(a, b)| (a - b.0).norm_mm()),
            "controller_drives_off": !self.arm.true_drives_on(),
            "inserted_mm": (q[self.ins] - self.setup.standoff_mm).max(0.0),
            "last_imaged_tip_to_planned_tip_mm": last.zip(report.positions.last()).map(|(t, p)| (t - p.planned_tip.to_nalgebra().coords).norm()),
            "checkpoint_cts": self.cts,
            "liver_at_cts_mm": self.liver_at_cts.iter().map(|l| [l.x, l.y, l.z]).collect::<Vec<_>>(),
            "scenario_events": self.fired,
        })
    }
}

/// The truth of one run of `scenario` with `seed`: the arm as built (its hidden calibration
/// error drawn from the scenario's bounds), the needle's bending, the breathing, the tissue's push
/// and the patient's shift; `ct_from_robot` is where the phantom put the robot.
#[must_use]
pub fn draw_patient(
    scenario: &Scenario,
    seed: u64,
    nominal: &stylet_kinematics::Arm,
    ct_from_robot: Transform<Ct, Robot>,
) -> Patient {
    let errors = scenario.errors;
    let mut rng_state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        (rng_state >> 11) as f64 / (1u64 << 53) as f64
    };
    // A direction uniform on the sphere (its part across the needle bends it).
    let z = 2.0 * uniform() - 1.0;
    let th = std::f64::consts::TAU * uniform();
    let r = (1.0 - z * z).max(0.0).sqrt();
    let deflect_dir = Vector::new(r * th.cos(), r * th.sin(), z);
    let deflection_per_mm = errors.needle_deflection_mm_per_100mm / 100.0 * uniform();
    let push_mm = errors.tissue_push_mm[0] + (errors.tissue_push_mm[1] - errors.tissue_push_mm[0]) * uniform();
    let breathing =
        crate::breathing::Breathing::new(crate::breathing::BreathingSpec { seed, ..scenario.breathing.clone() });
    let mut patient = Patient {
        arm: crate::truth::HiddenCalibration::draw(
            nominal,
            errors.link_length_error_mm,
            errors.joint_offset_error_deg,
            seed,
        )
        .true_arm(nominal),
        ct_from_robot,
        deflect_dir,
        deflection_per_mm,
        breathing,
        liver_at_planning_ct: Vector::zeros(),
        liver_motion: errors.liver_motion,
        push: crate::patient::TissuePush::new(push_mm, errors.tissue_relax_s),
        shift: crate::patient::PatientShift::new(errors.patient_shift_mm, seed),
    };
    // The planning CT was taken in the end-exhale breath-hold just before the procedure began.
    let t = end_exhale_before(&mut patient.breathing, BREATHING_BEFORE_S);
    let [x, y, z] = patient.breathing.liver_offset_mm(t);
    patient.liver_at_planning_ct = Vector::new(x, y, z);
    patient
}

/// `n` points spread evenly over the sphere at `centre` with `radius_mm` (a Fibonacci lattice).
fn sphere_points(centre: Vector3<f64>, radius_mm: f64, n: usize) -> Vec<Point<Ct>> {
    let golden = std::f64::consts::PI * (3.0 - 5.0_f64.sqrt());
    (0..n)
        .map(|i| {
            let z = 1.0 - 2.0 * (i as f64 + 0.5) / n as f64;
            let r = (1.0 - z * z).max(0.0).sqrt();
            let th = golden * i as f64;
            Point::from_coords(centre + Vector3::new(r * th.cos(), r * th.sin(), z) * radius_mm)
        })
        .collect()
}
