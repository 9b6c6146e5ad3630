//! Before the needle moves: the planning CT, registration, the plan, the arm enabled and home.

use std::sync::Arc;

use stylet_core::frame::{Ct, Point, Robot, Transform};
use stylet_protocol::Status;
use stylet_safety::{Command, MotionState};

use super::{Chosen, Driver, DriverError, Shared};
use crate::ports::{Answer, Event, PlanOption, Prompt, World};
use crate::Input;

impl<W: World> Driver<'_, W> {
    /// Waits for the planning CT; the surrogate's level at its breath-hold is the reference
    /// (RESP-3).
    pub(super) fn planning_ct(&mut self) -> Result<Shared, DriverError> {
        let planning = loop {
            if let Some(p) = self.world.planning()? {
                break Arc::new(p);
            }
            self.tick()?;
        };
        let v = &planning.ct.volume;
        self.note(&format!(
            "planning CT: {:?} voxels of {:?} mm ({}), taken at {:.1} s",
            v.dims, v.spacing_mm, planning.ct.source, planning.ct.acquired_s
        ));
        self.re_reference_at = Some(planning.ct.acquired_s);
        self.workflow(&Input::CtAcquired)?;
        let now = self.world.now_s();
        self.sink.event(now, Event::PlanningCt(&planning));
        Ok(planning)
    }

    /// Fiducials found in the planning CT, matched to the marker frame, registered under the
    /// quality gates.
    pub(super) fn register(
        &mut self,
        planning: &Shared,
        target: Point<Ct>,
    ) -> Result<Transform<Robot, Ct>, DriverError> {
        let cfg = Arc::clone(&self.cfg);
        let p = Arc::clone(planning);
        let settings = fiducial_settings(&cfg.registration.fiducials);
        let found = self.compute(move || stylet_imaging::detect(&p.ct.volume, &settings).0)?;
        let points: Vec<Point<Ct>> = found.iter().map(|m| m.center).collect();
        let now = self.world.now_s();
        self.sink.event(now, Event::Fiducials(&points));
        let reg = stylet_registration::match_markers(
            &points,
            &cfg.marker_frame,
            cfg.registration.matching_tolerance_mm,
            cfg.registration.gates.min_markers,
        )
        .and_then(|pairs| {
            let ct: Vec<Point<Ct>> = pairs.iter().map(|(i, _)| points[*i]).collect();
            let robot: Vec<Point<Robot>> = pairs.iter().map(|(_, k)| cfg.marker_frame[*k]).collect();
            stylet_registration::register(&ct, &robot, Some(target), &cfg.registration.gates)
        });
        match reg {
            Ok(r) => {
                self.report.registration = Some(super::RegistrationReport {
                    markers: r.n,
                    fre_rms_mm: r.fre_rms_mm,
                    predicted_tre_mm: r.predicted_tre_mm,
                });
                let reason = format!(
                    "{} markers, FRE {:.2} mm RMS, predicted TRE {:.2} mm at the tumour",
                    r.n,
                    r.fre_rms_mm,
                    r.predicted_tre_mm.unwrap_or(f64::NAN)
                );
                self.workflow(&Input::RegistrationDone { accepted: true, reason })?;
                let now = self.world.now_s();
                self.sink.event(now, Event::Registered(r.robot_from_ct));
                Ok(r.robot_from_ct)
            }
            Err(e) => {
                self.workflow(&Input::RegistrationDone { accepted: false, reason: e.to_string() })?;
                Err(DriverError::Registration(e.to_string()))
            }
        }
    }

    /// The registration from the operator's side (3D Slicer's calibration, checked rigid where
    /// it was received): asked for, and waited on until given or the operator aborts. Stylet
    /// has no fiducial residual for it: the log says where it came from.
    pub(super) fn operator_registration(&mut self) -> Result<Transform<Robot, Ct>, DriverError> {
        loop {
            match self.ask(&Prompt::Registration)? {
                Answer::Yes => {
                    if let Some(robot_from_ct) = self.world.registration() {
                        let reason = "from 3D Slicer's calibration (CLB_), rigid; no fiducial residual: the site takes it from there".to_string();
                        self.workflow(&Input::RegistrationDone { accepted: true, reason })?;
                        let now = self.world.now_s();
                        self.sink.event(now, Event::Registered(robot_from_ct));
                        return Ok(robot_from_ct);
                    }
                }
                Answer::Abort => return Err(DriverError::Aborted(self.wf.phase())),
                _ => {}
            }
        }
    }

    /// The planner's plans for the tumour (the registration is not needed for them).
    pub(super) fn plans(&mut self, planning: &Shared) -> Result<stylet_planning::PlanReport, DriverError> {
        let cfg = Arc::clone(&self.cfg);
        let p = Arc::clone(planning);
        let report = self
            .compute(move || {
                stylet_planning::plan(&stylet_planning::PlanInput {
                    ct: &p.ct.volume,
                    labels: &p.labels,
                    table: &p.table,
                    tumour: p.tumour.clone(),
                    zone: cfg.zone.clone(),
                    rules: cfg.rules.clone(),
                    max_plans: cfg.max_plans,
                })
            })?
            .map_err(|e| DriverError::Planning(e.to_string()))?;
        self.report.target = Some(report.tumour_centre);
        self.report.tumour_voxels.clone_from(&report.tumour_voxel_indices);
        Ok(report)
    }

    /// Keeps the plans whose every position the arm reaches, and asks the operator to choose; a
    /// high-risk plan (OAR-2) needs an explicit override.
    pub(super) fn choose_plan(
        &mut self,
        report: &stylet_planning::PlanReport,
        robot_from_ct: Transform<Robot, Ct>,
    ) -> Result<Chosen, DriverError> {
        let _ = self.wf.handle(self.world.now_s(), &Input::PlansReady { feasible: report.feasible });
        let cfg = Arc::clone(&self.cfg);
        let plans = report.plans.clone();
        let reachable = self.compute(move || {
            plans.iter().map(|p| p.positions.iter().all(|pos| reaches(&cfg, robot_from_ct, pos))).collect::<Vec<_>>()
        })?;
        let options: Vec<PlanOption> = report
            .plans
            .iter()
            .enumerate()
            .filter(|(k, _)| reachable[*k])
            .filter_map(|(index, p)| {
                let first = p.positions.first()?;
                Some(PlanOption {
                    index,
                    positions: p.positions.len(),
                    margin_mm: p.margin_mm,
                    high_risk: p.high_risk,
                    entry: first.entry,
                    tip: first.tip,
                })
            })
            .collect();
        if options.is_empty() {
            return Err(DriverError::Planning(format!(
                "no plan the arm reaches ({} feasible, {} high-risk, {} in all; `stylet plan` shows them)",
                report.feasible,
                report.high_risk,
                report.plans.len()
            )));
        }
        let target = report.tumour_centre;
        let mut options = options;
        loop {
            let index = match self.ask(&Prompt::ChoosePlan { options: options.clone() })? {
                Answer::Choose { index } if options.iter().any(|o| o.index == index) => index,
                Answer::Abort => return Err(DriverError::Aborted(self.wf.phase())),
                other => {
                    self.note(&format!("not a plan on the list: {other:?}"));
                    continue;
                }
            };
            let plan = report.plans[index].clone();
            if plan.high_risk {
                let rules: Vec<String> = plan.high_risk_rules().map(|c| format!("{}: {}", c.rule, c.detail)).collect();
                match self.ask(&Prompt::OverrideHighRisk { index, rules: rules.clone() })? {
                    Answer::Yes => {
                        let now = self.world.now_s();
                        let detail = format!("plan {index}, {}", rules.join("; "));
                        self.sink.event(now, Event::Operator { action: "override", detail: &detail });
                        self.note(&format!("operator override of a high-risk plan: {}", rules.join("; ")));
                    }
                    Answer::Abort => return Err(DriverError::Aborted(self.wf.phase())),
                    _ => {
                        options.retain(|o| o.index != index);
                        if options.is_empty() {
                            return Err(DriverError::Planning(
                                "the operator declined every high-risk plan, and no other is reachable".into(),
                            ));
                        }
                        continue;
                    }
                }
            }
            self.workflow(&Input::SelectPlan { index, positions: plan.positions.len() })?;
            self.zones = plan.positions.iter().map(|p| (p.zone_centre, p.axis)).collect();
            self.surface = report.tumour_surface.clone();
            self.report.plan = Some(super::PlanChosen { index, plan: plan.clone() });
            let pos = &plan.positions[0];
            self.note(&format!(
                "plan {index}: {} position(s); first entry ({:.1}, {:.1}, {:.1}) depth {:.1} mm, margin {:.1} mm, clearance {:.1} mm",
                plan.positions.len(),
                pos.entry.to_array()[0],
                pos.entry.to_array()[1],
                pos.entry.to_array()[2],
                pos.depth_mm,
                plan.margin_mm,
                plan.clearance_mm
            ));
            return Ok(Chosen { index, plan, target });
        }
    }

    /// Waits for the controller, homes it, enables the drives, and brings the needle home on its
    /// own (INS-1) and then the arm.
    pub(super) fn enable_and_home(&mut self) -> Result<(), DriverError> {
        self.wait_until("the controller's greeting", 5.0, |s| s.state == MotionState::Connected)?;
        let mut tries = 0;
        while let Err(e) = self.command(Command::StartHoming) {
            tries += 1;
            if tries > 50 {
                return Err(e);
            }
            self.dwell(0.02)?;
        }
        self.wait_until("drives enabled", 5.0, |s| s.drives_on && s.status.has(Status::DRIVES_ENABLED))?;
        let home = self.world.safety().robot.home();
        let ins = self.insertion_joint()?;
        let mut needle_home = self.world.snapshot()?.commanded.as_slice().to_vec();
        needle_home[ins] = home[ins];
        self.move_to(&needle_home, 0.25)?;
        self.move_to(&home, 0.25)?;
        self.command(Command::Complete)?;
        self.note("controller connected, drives enabled, arm at home");
        Ok(())
    }
}

/// The detector's settings for the marker frame's fiducials.
#[must_use]
pub fn fiducial_settings(f: &stylet_registration::FiducialConfig) -> stylet_imaging::FiducialSettings {
    stylet_imaging::FiducialSettings {
        threshold_hu: f.threshold_hu as f32,
        diameter_mm: f.diameter_mm,
        volume_fraction: f.volume_fraction,
        max_elongation: f.max_elongation,
    }
}

/// Whether the arm reaches `pos` (IK with keep-outs from the arm's home).
fn reaches(cfg: &super::DriverConfig, robot_from_ct: Transform<Robot, Ct>, pos: &stylet_planning::Position) -> bool {
    let line = needle_line(robot_from_ct, pos.entry, pos.tip);
    stylet_kinematics::ik::solve_first(&cfg.arm, &line, &cfg.ik_seed, &cfg.keepouts, &cfg.ik).is_ok()
}

/// A needle line from `entry` to `tip` (CT) in the robot frame.
pub(super) fn needle_line(
    robot_from_ct: Transform<Robot, Ct>,
    entry: Point<Ct>,
    tip: Point<Ct>,
) -> stylet_kinematics::NeedleLine {
    stylet_kinematics::NeedleLine { entry: robot_from_ct * entry, target: robot_from_ct * tip }
}
