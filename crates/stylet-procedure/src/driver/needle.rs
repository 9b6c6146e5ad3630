//! One needle position: alignment outside the skin, the confirmation CT and re-alignment (INS-1),
//! gated insertion steps with the operator's enable (INS-2, RESP-2), checkpoint CTs with the
//! needle found in the image and the path corrected (INS-3), until ACC-1 accepts the tip.

use std::sync::Arc;

use nalgebra::Vector3;
use stylet_core::frame::{Ct, Point, Robot, Transform};
use stylet_imaging::NeedleSettings;
use stylet_safety::{Command, MotionState};

use super::setup::needle_line;
use super::{Chosen, Driver, DriverError, PositionReport, Shared};
use crate::ports::{CtPurpose, Event, Request, World};
use crate::{Input, Phase};

/// How an insertion ended.
#[derive(Clone, Debug, PartialEq)]
pub enum InsertionEnd {
    /// ACC-1 accepted the tip measured in the last CT.
    AtTarget {
        /// The tip, CT.
        measured_tip: Point<Ct>,
    },
    /// The supervisor latched a fault (or an e-stop) and the arm stopped.
    Stopped {
        /// The supervisor's state.
        state: MotionState,
        /// The fault.
        fault: Option<String>,
        /// Depth past the skin, mm (measured joints).
        inserted_mm: f64,
    },
}

/// How one insertion attempt ended.
enum Attempt {
    End(InsertionEnd),
    /// At depth but off to the side by this much (CT): retract and re-align (INS-1).
    Missed(Vector3<f64>),
}

/// What a CT with the needle showed.
struct Measured {
    /// The tip in the planning CT's anatomy, CT mm.
    tip: Vector3<f64>,
    /// How far the liver has moved since the planning CT, CT mm (zero when not measured).
    liver: Vector3<f64>,
}

/// The line of one position and what the insertion needs of it.
struct Line {
    entry: Vector3<f64>,
    tip: Vector3<f64>,
    axis: Vector3<f64>,
    depth_mm: f64,
    /// Which position of the plan.
    k: usize,
}

impl<W: World> Driver<'_, W> {
    /// Executes position `k` of the plan up to ACC-1 (or a stop).
    pub(super) fn position(
        &mut self,
        planning: &Shared,
        chosen: &Chosen,
        k: usize,
        robot_from_ct: Transform<Robot, Ct>,
    ) -> Result<InsertionEnd, DriverError> {
        let pos = &chosen.plan.positions[k];
        let line = Line {
            entry: pos.entry.to_nalgebra().coords,
            tip: pos.tip.to_nalgebra().coords,
            axis: pos.axis.to_nalgebra(),
            depth_mm: pos.depth_mm,
            k,
        };
        let now = self.world.now_s();
        let zone = self.cfg.zone.clone();
        self.sink.event(
            now,
            Event::Plan {
                entry: pos.entry,
                tip: pos.tip,
                zone_centre: pos.zone_centre,
                zone_mm: (zone.long_mm, zone.short_mm),
            },
        );
        if chosen.plan.positions.len() > 1 {
            self.note(&format!("needle position {} of {}", k + 1, chosen.plan.positions.len()));
        }
        self.report.positions.push(PositionReport {
            entry: pos.entry,
            planned_tip: pos.tip,
            axis: pos.axis,
            measured_tip: None,
            cts_with_needle: 0,
            reinsertions: 0,
            verified_margin_mm: None,
            ablated_zone_centre: None,
            liver_at_cts_mm: Vec::new(),
        });
        let ins = self.insertion_joint()?;
        let home = self.world.safety().robot.home();
        // Onto the planned line, needle retracted, outside the patient.
        let mut correction = Vector3::zeros();
        self.align(robot_from_ct, &line, (correction, Vector3::zeros()), (ins, home[ins]), 0.8)?;
        let liver;
        (correction, liver) = self.confirmation_ct(planning, &line)?;
        self.align(robot_from_ct, &line, (correction, liver), (ins, home[ins]), 0.8)?;
        self.workflow(&Input::Aligned)?;
        loop {
            match self.insert(planning, &line, ins)? {
                Attempt::End(end) => return Ok(end),
                Attempt::Missed(lateral) => {
                    let reinsertions = self.position_report().reinsertions;
                    if reinsertions >= self.cfg.max_reinsertions {
                        return Err(DriverError::Imaging(format!(
                            "still off the target after {reinsertions} re-insertion(s)"
                        )));
                    }
                    self.position_report().reinsertions += 1;
                    self.retract_needle(home[ins])?;
                    self.workflow(&Input::Retracted)?;
                    correction -= lateral;
                    self.align(robot_from_ct, &line, (correction, liver), (ins, home[ins]), 0.8)?;
                    self.workflow(&Input::Aligned)?;
                }
            }
        }
    }

    fn position_report(&mut self) -> &mut PositionReport {
        let n = self.report.positions.len();
        &mut self.report.positions[n.saturating_sub(1)]
    }

    /// The planned line shifted by `correction` (CT mm) and its tip end aimed `liver` further
    /// (where the liver, and the target in it, has moved since the planning CT), in the robot
    /// frame, and the arm moved onto it with the needle retracted (an alignment move, outside
    /// tissue: INS-1).
    fn align(
        &mut self,
        robot_from_ct: Transform<Robot, Ct>,
        line: &Line,
        (correction, liver): (Vector3<f64>, Vector3<f64>),
        (ins, retracted): (usize, f64),
        fraction: f64,
    ) -> Result<(), DriverError> {
        let shifted = needle_line(
            robot_from_ct,
            Point::from_coords(line.entry + correction),
            Point::from_coords(line.tip + correction + liver),
        );
        let seed = self.world.snapshot()?.commanded.as_slice().to_vec();
        let cfg = Arc::clone(&self.cfg);
        let sol = self
            .compute(move || stylet_kinematics::ik::solve_first(&cfg.arm, &shifted, &seed, &cfg.keepouts, &cfg.ik))?
            .map_err(|e| DriverError::Kinematics(format!("alignment on the planned line: {e}")))?;
        let mut q = sol.joints.clone();
        q[ins] = retracted;
        self.command(Command::BeginAlign)?;
        self.move_to(&q, fraction)?;
        self.command(Command::Complete)?;
        Ok(())
    }

    /// A CT of `purpose`, asked for and waited for (ticking); how far the liver has moved since
    /// the planning CT (matched on its own voxels near the target), and the needle found in it,
    /// its tip in the planning CT's anatomy (a tip in the liver moved with it; one in air did not).
    fn needle_ct(
        &mut self,
        planning: &Shared,
        purpose: CtPurpose,
        line: &Line,
        settings: NeedleSettings,
    ) -> Result<Measured, DriverError> {
        self.world.request_ct(purpose)?;
        self.note(&format!("{purpose:?} CT asked for: waiting for the series"));
        let t0 = self.world.now_s();
        let ct = loop {
            let polled = self.world.poll_ct()?;
            let mut notices = Vec::new();
            self.world.notices(&mut |n| notices.push(n));
            for n in notices {
                self.note(&format!("{purpose:?} CT: {n}"));
            }
            if let Some(ct) = polled {
                break ct;
            }
            if self.world.now_s() - t0 > self.cfg.ct_timeout_s {
                return Err(DriverError::Timeout(format!("{purpose:?} CT")));
            }
            // A CT can take minutes: the operator may abort while it is awaited (other requests
            // wait for the insertion to take them).
            if self.abort_asked() {
                return Err(DriverError::Aborted(self.wf.phase()));
            }
            self.tick()?;
        };
        self.position_report().cts_with_needle += 1;
        let now = self.world.now_s();
        self.sink.event(now, Event::NeedleCt { purpose, volume: &ct.volume });
        let acquired = ct.acquired_s;
        let in_tissue = purpose != CtPurpose::Confirmation;
        let p = Arc::clone(planning);
        let organ = self.cfg.organ.clone();
        let target = Point::from_coords(line.tip);
        let (entry, tip) = (line.entry, line.tip);
        let (liver, found) = self.compute(move || {
            let moves = |v: f32| {
                matches!(
                    p.table.class(v as u32),
                    Some(
                        stylet_planning::Class::Liver | stylet_planning::Class::Tumour | stylet_planning::Class::Vessel
                    )
                )
            };
            let liver = stylet_imaging::organ_shift(&p.ct.volume, &p.labels, &moves, &ct.volume, target, &organ);
            let carried = match (&liver, in_tissue) {
                (Ok(l), true) => l.shift.to_nalgebra(),
                _ => Vector3::zeros(),
            };
            let expected = (Point::from_coords(entry + carried), Point::from_coords(tip + carried));
            let found = stylet_imaging::detect_needle(&ct.volume, Some(expected), &settings)
                .map(|f| (f.tip.to_nalgebra().coords - carried, f));
            (liver, found)
        })?;
        self.position_report().liver_at_cts_mm.push(liver.as_ref().ok().map(|l| l.shift));
        let liver = match liver {
            Ok(l) => {
                let d = l.shift.to_nalgebra();
                self.note(&format!(
                    "{purpose:?} CT: the liver is {:.1} mm from where the planning CT saw it ({:.1}, {:.1}, {:.1}; {} voxels matched, {:.0} -> {:.0} HU RMS)",
                    d.norm(),
                    d.x,
                    d.y,
                    d.z,
                    l.voxels,
                    l.rms_unshifted_hu,
                    l.rms_hu
                ));
                d
            }
            Err(e) => {
                self.note(&format!("{purpose:?} CT: the liver's motion not measured ({e}); taken as none"));
                Vector3::zeros()
            }
        };
        let (tip, _) = found.map_err(|e| DriverError::Imaging(format!("{purpose:?} CT: {e}")))?;
        // RESP-3: the breath-hold the CT was taken in is the new reference level.
        self.re_reference_at = Some(acquired);
        let now = self.world.now_s();
        self.sink.event(now, Event::TipMeasured(Point::from_coords(tip)));
        self.position_report().measured_tip = Some(Point::from_coords(tip));
        Ok(Measured { tip, liver })
    }

    /// The confirmation CT with the needle outside the skin: how far its tip really is off the
    /// planned line (the correction to re-align by), and where the liver has moved since the
    /// planning CT (the target with it: the line's tip end is aimed there).
    fn confirmation_ct(&mut self, planning: &Shared, line: &Line) -> Result<(Vector3<f64>, Vector3<f64>), DriverError> {
        // In air the thin shaft's partial-volume voxels stay below the in-tissue metal
        // threshold; nothing else near the line outside the body is that dense.
        let in_air = NeedleSettings { threshold_hu: 1500.0, ..NeedleSettings::default() };
        let m = self.needle_ct(planning, CtPurpose::Confirmation, line, in_air)?;
        let at_skin = line.entry - line.axis * self.cfg.ik.standoff_mm;
        let correction = at_skin - m.tip;
        self.workflow(&Input::AlignmentChecked { offset_mm: correction.norm() })?;
        Ok((correction, m.liver))
    }

    /// Inserts to the planned depth in gated steps, with checkpoint CTs, until ACC-1 accepts,
    /// the tip is off to the side at depth, or the supervisor stops the arm.
    fn insert(&mut self, planning: &Shared, line: &Line, ins: usize) -> Result<Attempt, DriverError> {
        let standoff = self.cfg.ik.standoff_mm;
        // The deepest the supervisor lets the needle go (its soft stop, or PATH-6's limit).
        let max_depth = self.world.safety().soft_ranges().get(ins).map_or(0.0, |r| r.hi);
        let mut goal_depth = standoff + line.depth_mm;
        let mut first = true;
        loop {
            if let Some(stop) = self.step_to(goal_depth, ins, &mut first)? {
                return Ok(Attempt::End(stop));
            }
            self.command(Command::Hold).ok();
            let snap = self.world.snapshot()?;
            let commanded = snap.commanded.as_slice()[ins];
            self.workflow(&Input::StepDone { depth_mm: commanded - standoff })?;
            let measured = self.needle_ct(planning, CtPurpose::Checkpoint, line, NeedleSettings::default())?.tip;
            let remaining = (line.tip - measured).dot(&line.axis);
            // The zone where this tip would place it, with the others: MAR-1 on the tumour.
            let margin = self.margin_with(line.k, measured, line.axis);
            let tip_error = (measured - line.tip).norm();
            self.note(&format!(
                "checkpoint CT: needle tip found at ({:.1}, {:.1}, {:.1}) mm, {tip_error:.2} mm from the planned tip, {remaining:.1} mm to go",
                measured.x, measured.y, measured.z
            ));
            let at_depth = remaining <= 1.0;
            let acceptable = tip_error <= self.cfg.rules.acc1_max_tip_error_mm && margin >= self.cfg.rules.mar1_fail_mm;
            self.workflow(&Input::CheckpointMeasured {
                tip_error_mm: tip_error,
                margin_mm: margin,
                // At depth but off to the side: only a new orientation corrects it (INS-1).
                needs_reorientation: at_depth && !acceptable,
                remaining_mm: if at_depth { 0.0 } else { remaining },
            })?;
            match self.wf.phase() {
                Phase::AtTarget => {
                    return Ok(Attempt::End(InsertionEnd::AtTarget { measured_tip: Point::from_coords(measured) }))
                }
                Phase::Insertion => goal_depth = (commanded + remaining.max(0.0)).min(max_depth),
                Phase::Retraction => {
                    let miss = measured - line.tip;
                    return Ok(Attempt::Missed(miss - line.axis * miss.dot(&line.axis)));
                }
                Phase::Paused => {
                    self.checkpoints_exhausted()?;
                    goal_depth = (commanded + remaining.max(0.0)).min(max_depth);
                }
                other => return Err(DriverError::Motion(format!("workflow stopped in {other:?}"))),
            }
        }
    }

    /// INS-3 used up: the workflow pauses and waits for the operator, who goes on (another step
    /// along the axis, and the question again after its CT) or aborts.
    fn checkpoints_exhausted(&mut self) -> Result<(), DriverError> {
        let taken = self.wf.checkpoints();
        match self.ask(&crate::ports::Prompt::CheckpointsExhausted { taken })? {
            crate::ports::Answer::Yes => {
                self.workflow(&Input::Resume)?;
                self.workflow(&Input::Confirm)?;
                Ok(())
            }
            _ => Err(DriverError::Aborted(Phase::CheckpointCt)),
        }
    }

    /// One gated step of the insertion joint to `goal_depth`: the bulk in any gated window, the
    /// final approach only near the reference level (RESP-2), each start with the pedal held
    /// (INS-2: the supervisor refuses without it). `Some` when the supervisor stopped the arm.
    fn step_to(&mut self, goal_depth: f64, ins: usize, first: &mut bool) -> Result<Option<InsertionEnd>, DriverError> {
        let standoff = self.cfg.ik.standoff_mm;
        let approach_mm = self.cfg.respiration.final_approach_mm;
        let t_step = self.world.now_s();
        let (mut moving, mut sub_goal) = (false, f64::NAN);
        self.gate_counting = true;
        let r = loop {
            let snap = self.tick()?;
            let mut goal = snap.commanded.as_slice().to_vec();
            let commanded = goal[ins];
            let still = snap.velocity.as_slice().iter().all(|v| *v == 0.0);
            if (commanded - goal_depth).abs() < 1e-9 && still {
                break None;
            }
            if self.world.now_s() - t_step > self.cfg.step_timeout_s {
                self.gate_counting = false;
                return Err(DriverError::Timeout(format!(
                    "insertion step to {:.1} mm (gate open {:.0} % of the time)",
                    goal_depth - standoff,
                    100.0 * self.gate_stats.1 as f64 / self.gate_stats.0.max(1) as f64
                )));
            }
            if let Some(r) = self.take_request() {
                self.during_insertion(r)?;
                moving = false;
                continue;
            }
            let next = if commanded < goal_depth - approach_mm - 1e-6 { goal_depth - approach_mm } else { goal_depth };
            if moving && still && (commanded - sub_goal).abs() < 1e-9 {
                moving = false;
            }
            let may_start = next < goal_depth || self.approach_ok;
            goal[ins] = next;
            match snap.state {
                MotionState::Aligned | MotionState::Holding if may_start => {
                    let cmd = if *first { Command::BeginInsert } else { Command::Resume };
                    moving = false;
                    if self.world.command(cmd).is_ok() {
                        *first = false;
                        let now = self.world.now_s();
                        self.sink.event(
                            now,
                            Event::Operator { action: &format!("{cmd:?}"), detail: "pedal held, gate open" },
                        );
                        moving = self.start_move(&goal, 0.9)?;
                        sub_goal = next;
                    }
                }
                MotionState::Aligned | MotionState::Holding => moving = false,
                MotionState::Inserting if !moving && still && may_start => {
                    moving = self.start_move(&goal, 0.9)?;
                    sub_goal = next;
                }
                MotionState::Fault | MotionState::EStop => {
                    // The supervisor stopped the arm: let it come to rest, then say where.
                    self.gate_counting = false;
                    let s = self.settle(0.5)?;
                    let inserted = s.measured.as_slice()[ins] - standoff;
                    break Some(InsertionEnd::Stopped {
                        state: s.state,
                        fault: s.fault.map(|f| f.to_string()),
                        inserted_mm: inserted,
                    });
                }
                _ => {}
            }
        };
        self.gate_counting = false;
        Ok(r)
    }

    /// Ticks for `dt_s` whatever the supervisor does (faults included); the last snapshot.
    pub(super) fn settle(&mut self, dt_s: f64) -> Result<stylet_safety::Snapshot, DriverError> {
        let t0 = self.world.now_s();
        loop {
            let s = self.tick()?;
            if self.world.now_s() - t0 >= dt_s {
                return Ok(s);
            }
        }
    }

    /// A pause or an abort during an insertion step: the arm holds; a pause waits for resume.
    fn during_insertion(&mut self, r: Request) -> Result<(), DriverError> {
        match r {
            Request::Pause => {
                self.stop_and_hold();
                self.workflow(&Input::Pause)?;
                loop {
                    self.tick()?;
                    match self.take_request() {
                        Some(Request::Resume) => {
                            self.workflow(&Input::Resume)?;
                            return Ok(());
                        }
                        Some(Request::Abort) => return Err(DriverError::Aborted(Phase::Insertion)),
                        _ => {}
                    }
                }
            }
            Request::Abort | Request::Leave => Err(DriverError::Aborted(self.wf.phase())),
            Request::Resume | Request::Retract | Request::EStop => Ok(()),
        }
    }

    /// The needle withdrawn along its axis to `to` (insertion joint), under the supervisor's
    /// retraction state.
    pub(super) fn retract_needle(&mut self, to: f64) -> Result<(), DriverError> {
        let ins = self.insertion_joint()?;
        self.command(Command::BeginRetract)?;
        let mut back = self.world.snapshot()?.commanded.as_slice().to_vec();
        back[ins] = to;
        self.move_to(&back, 0.9)?;
        self.command(Command::Complete)?;
        Ok(())
    }
}
