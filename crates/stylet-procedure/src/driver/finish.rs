//! After ACC-1: ablation, verification, retraction. And the ways out that are not the end: a
//! stop by the supervisor, an operator's abort, an error. None of them leaves the drives enabled
//! without the supervisor: the arm stops and holds, and the needle comes out only on the
//! operator's command.

use stylet_core::frame::{Ct, Point};
use stylet_safety::{Command, MotionState};

use super::{Chosen, Driver, DriverError, Outcome};
use crate::ports::{Answer, Prompt, Request, World};
use crate::{Input, Phase, Workflow};

impl<W: World> Driver<'_, W> {
    /// The operator starts the ablation; the device runs its programme; the margin is verified
    /// with the tip the last CT measured.
    pub(super) fn ablate(&mut self, chosen: &Chosen, k: usize, measured_tip: Point<Ct>) -> Result<(), DriverError> {
        let zone = self.cfg.zone.clone();
        let setting = format!("{} {}", zone.device, zone.setting);
        let n = chosen.plan.positions.len();
        match self.ask(&Prompt::StartAblation { setting: setting.clone(), position: (k + 1, n) })? {
            Answer::Yes => {}
            _ => return Err(DriverError::Aborted(self.wf.phase())),
        }
        self.workflow(&Input::Confirm)?;
        self.world.start_ablation(&zone, measured_tip)?;
        let status = loop {
            let s = self.world.ablation_status();
            if s.done {
                break s;
            }
            if let Some(Request::Abort) = self.take_request() {
                self.world.stop_ablation();
                return Err(DriverError::Aborted(Phase::Ablation));
            }
            self.tick()?;
        };
        self.world.stop_ablation();
        self.note(&format!(
            "ablation: {setting}, {:.0} s, {:.1} kJ delivered",
            status.elapsed_s,
            status.energy_j / 1e3
        ));
        self.workflow(&Input::AblationDone)?;
        let axis = chosen.plan.positions[k].axis.to_nalgebra();
        let tip = measured_tip.to_nalgebra().coords;
        let margin = self.margin_with(k, tip, axis);
        let centre = tip - axis * zone.centre_from_tip_mm;
        if let Some(z) = self.zones.get_mut(k) {
            *z = (Point::from_coords(centre), stylet_core::frame::Vector::from_nalgebra(axis));
        }
        let now = self.world.now_s();
        self.sink.event(
            now,
            crate::ports::Event::Ablated {
                zone_centre: Point::from_coords(centre),
                axis: axis.into(),
                zone_mm: (zone.long_mm, zone.short_mm),
            },
        );
        if let Some(p) = self.report.positions.last_mut() {
            p.verified_margin_mm = Some(margin);
            p.ablated_zone_centre = Some(Point::from_coords(centre));
        }
        self.workflow(&Input::Verified { margin_mm: margin })?;
        Ok(())
    }

    /// The needle out after an ablation; after the last position the arm goes home and the
    /// drives off.
    pub(super) fn retract_after_ablation(&mut self, last: bool) -> Result<(), DriverError> {
        self.retract_needle(0.0)?;
        if last {
            // Out of the patient: the arm back home (an alignment move), drives off.
            let home = self.world.safety().robot.home();
            self.command(Command::BeginAlign)?;
            self.move_to(&home, 0.8)?;
            self.command(Command::Complete)?;
            self.command(Command::DisableDrives)?;
        }
        self.workflow(&Input::Retracted)?;
        Ok(())
    }

    /// The supervisor stopped the arm (mid-insertion, or in any other move or command): the
    /// workflow pauses for the operator, who
    /// resets (the supervisor's reset; the procedure then ends with the arm holding, the needle
    /// where it is) or ends the procedure. Either way the arm stays in the supervisor's safe
    /// state and the drives go off.
    pub(super) fn after_stop(&mut self, state: MotionState, fault: Option<String>, inserted_mm: f64) -> Outcome {
        let code = fault.clone().unwrap_or_else(|| state.name().to_string());
        let _ = self.workflow(&Input::Fault { code: code.clone() });
        let answer = self.ask(&Prompt::AfterFault { fault: code.clone() });
        if answer == Ok(Answer::Yes) {
            match self.command(Command::Reset) {
                Ok(()) => self.note("supervisor reset by the operator; the arm holds, the needle where it stopped"),
                Err(e) => self.note(&format!("reset refused: {e}")),
            }
        }
        let drives_off = self.drives_off(3.0);
        self.note(&format!(
            "safe stop: {code}; needle held at {inserted_mm:.1} mm, drives {} (operator reset required)",
            if drives_off { "off, brakes on" } else { "STILL ON" }
        ));
        let s = self.world.snapshot().ok();
        Outcome::Stopped { state: s.map_or(state, |s| s.state).name().to_string(), fault, inserted_mm }
    }

    /// Waits up to `timeout_s` for the drives to be off (asking for it when the supervisor
    /// takes the command); whether they are.
    fn drives_off(&mut self, timeout_s: f64) -> bool {
        let _ = self.world.command(Command::DisableDrives);
        self.wait_until("drives off", timeout_s, |s| !s.drives_on).is_ok()
            || self.world.snapshot().is_ok_and(|s| !s.drives_on)
    }

    /// The operator aborted: the arm stops and holds; with the needle in tissue it comes out only
    /// on the operator's retract command.
    pub(super) fn abort(&mut self, phase: Phase) -> Outcome {
        self.stop_and_hold();
        let _ = self.workflow(&Input::Abort);
        let in_tissue = Workflow::needle_may_be_in_tissue(phase) || self.needle_in_tissue();
        let retracted = if in_tissue { self.retract_on_command(&format!("aborted in {phase:?}")) } else { true };
        if retracted {
            let _ = self.drives_off(3.0);
        }
        if retracted && self.wf.phase() == Phase::Aborting {
            let _ = self.workflow(&Input::Retracted);
        }
        Outcome::Aborted { phase, retracted }
    }

    /// The procedure cannot go on: the arm stops and holds; the needle comes out on the
    /// operator's command; with the needle out the drives go off.
    pub(super) fn fail(&mut self, e: &DriverError) -> Outcome {
        self.note(&format!("the procedure stops: {e}"));
        self.stop_and_hold();
        let needle_out = if self.needle_in_tissue() { self.retract_on_command(&e.to_string()) } else { true };
        if needle_out {
            let _ = self.drives_off(3.0);
        }
        Outcome::Failed { error: e.to_string(), needle_out }
    }

    /// Whether the needle is past the stand-off (measured joints).
    fn needle_in_tissue(&mut self) -> bool {
        let Ok(ins) = self.insertion_joint() else { return false };
        let standoff = self.cfg.ik.standoff_mm;
        self.world.snapshot().is_ok_and(|s| s.measured.as_slice()[ins] > standoff + 0.5)
    }

    /// Holds until the operator commands the retraction (the prompt, or a retract request at any
    /// time), then retracts; or until the hold limit of the configuration passes. Whether the
    /// needle came out.
    fn retract_on_command(&mut self, why: &str) -> bool {
        self.note("the arm holds; the needle comes out on the operator's retract command");
        let t0 = self.world.now_s();
        let prompt = Prompt::RetractNeedle { why: why.to_string() };
        let mut asked_at = f64::NEG_INFINITY;
        loop {
            if self.tick().is_err() {
                return false;
            }
            if self.operator_left {
                // Nobody to decide: the software e-stop (drives off, brakes on, latched) rather
                // than a servo hold that lasts as long as this process.
                self.world.estop();
                let off = self.wait_until("drives off", 3.0, |s| !s.drives_on).is_ok();
                self.note(&format!(
                    "the operator has left: nobody to command the retraction; the needle stays where it stopped, \
                     software e-stop: drives {} (a reset is needed to move again)",
                    if off { "off, brakes on" } else { "STILL ON" }
                ));
                return false;
            }
            let now = self.world.now_s();
            let mut retract = matches!(self.take_request(), Some(Request::Retract));
            if !retract && now - asked_at >= 1.0 {
                asked_at = now;
                retract = self.world.answer(&prompt) == Some(Answer::Yes);
                if retract {
                    self.sink.event(now, crate::ports::Event::Operator { action: "retract", detail: why });
                }
            }
            if retract {
                let ok = self.world.snapshot().is_ok_and(|s| s.fault.is_none() && s.state != MotionState::EStop);
                if !ok {
                    self.note("retract refused: the supervisor holds a fault (reset first)");
                    continue;
                }
                return match self.retract_needle(0.0) {
                    Ok(()) => true,
                    Err(e) => {
                        self.note(&format!("retraction failed: {e}"));
                        false
                    }
                };
            }
            if self.cfg.hold_limit_s.is_some_and(|l| now - t0 > l) {
                self.note("no retract command: the run ends with the arm holding under the supervisor");
                return false;
            }
        }
    }
}
