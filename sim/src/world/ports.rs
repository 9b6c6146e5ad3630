//! The simulated world behind each of the driver's ports.

use stylet_core::frame::{Ct, Point};
use stylet_procedure::ports::{
    Ablation, AblationStatus, Acquired, Answer, Clock, CtPurpose, CtSource, Motion, Operator, PlanningCt, PortError,
    Prompt, Request, Respiration,
};
use stylet_respiration::Sample;
use stylet_safety::runner::{RunnerEvent, Timing};
use stylet_safety::trajectory::Trajectory;
use stylet_safety::{Command, SafetyConfig, Snapshot};

use crate::patient::end_exhale_before;

use super::{CtJob, SimArm, SimWorld, BELT_PERIOD_S, BREATHING_BEFORE_S, CT_DELIVERY_S};

impl<A: SimArm> Motion for SimWorld<A> {
    fn safety(&self) -> &SafetyConfig {
        self.arm.safety()
    }
    fn snapshot(&mut self) -> Result<Snapshot, PortError> {
        self.arm.snapshot()
    }
    fn command(&mut self, c: Command) -> Result<(), PortError> {
        let r = self.arm.command(c);
        self.after_wait();
        r
    }
    fn execute(&mut self, t: Trajectory) -> Result<(), PortError> {
        self.arm.execute(t)
    }
    fn stop(&mut self) {
        self.arm.stop();
    }
    fn estop(&mut self) {
        self.arm.estop();
    }
    fn pump(&mut self, gate_open: bool, events: &mut dyn FnMut(RunnerEvent)) {
        self.arm.pump(gate_open, events);
    }
    fn take_timing(&mut self) -> Timing {
        self.arm.take_timing()
    }
}

impl<A: SimArm> Clock for SimWorld<A> {
    fn now_s(&self) -> f64 {
        self.arm.clock_s()
    }
    fn wait(&mut self, dt_s: f64) {
        self.arm.advance(dt_s);
        self.after_wait();
    }
    fn runs_while_computing(&self) -> bool {
        !self.arm.is_virtual()
    }
}

impl<A: SimArm> CtSource for SimWorld<A> {
    fn planning(&mut self) -> Result<Option<PlanningCt>, PortError> {
        if self.planning_given {
            return Err(PortError::Ct("the planning CT was handed out already".into()));
        }
        self.planning_given = true;
        let t = end_exhale_before(&mut self.patient.breathing, BREATHING_BEFORE_S) - BREATHING_BEFORE_S;
        Ok(Some(PlanningCt {
            ct: Acquired { volume: self.phantom.volume.clone(), acquired_s: t, source: "simulated planning CT".into() },
            labels: self.phantom.labels.clone(),
            table: self.setup.table.clone(),
            tumour: stylet_planning::TumourSpec::Label { value: 3, component: 0 },
        }))
    }

    fn request_ct(&mut self, purpose: CtPurpose) -> Result<(), PortError> {
        if self.ct.is_some() {
            return Err(PortError::Ct("a CT is being taken already".into()));
        }
        let now = self.arm.clock_s();
        // The next end-exhale breath-hold within 6 s.
        let b = end_exhale_before(&mut self.patient.breathing, Self::breathing_s(now) + 6.0);
        let take_at_s = (b - BREATHING_BEFORE_S).max(now);
        self.ready = None;
        self.ct = Some(CtJob { purpose, take_at_s, ready_at_s: take_at_s + CT_DELIVERY_S, render: None });
        Ok(())
    }

    fn poll_ct(&mut self) -> Result<Option<Acquired>, PortError> {
        Ok(self.ready.take())
    }
}

impl<A: SimArm> Respiration for SimWorld<A> {
    fn samples(&mut self, now_s: f64, sink: &mut dyn FnMut(Sample)) {
        while self.next_sample_s <= now_s {
            let t = self.next_sample_s;
            let sensor = self.belt.sensor().clone();
            self.next_sample_s += if sensor.rate_hz > 0.0 { 1.0 / sensor.rate_hz } else { BELT_PERIOD_S };
            if self.belt_silent_until.is_some_and(|u| t < u) {
                continue;
            }
            // In the sensor's unit (`value_mm` is the port's name for it).
            sink(Sample { t_s: t, value_mm: sensor.reading(self.belt.surrogate(Self::breathing_s(t))) });
        }
    }
}

impl<A: SimArm> Operator for SimWorld<A> {
    fn answer(&mut self, prompt: &Prompt) -> Option<Answer> {
        let s = self.script;
        Some(match prompt {
            Prompt::Start | Prompt::StartAblation { .. } => Answer::Yes,
            Prompt::ChoosePlan { options } => {
                let safe = options.iter().find(|o| !o.high_risk);
                let risky = options.iter().find(|o| o.high_risk).filter(|_| s.override_high_risk);
                match safe.or(risky) {
                    Some(o) => Answer::Choose { index: o.index },
                    None => Answer::Abort,
                }
            }
            Prompt::OverrideHighRisk { .. } => {
                if s.override_high_risk {
                    Answer::Yes
                } else {
                    Answer::No
                }
            }
            Prompt::AfterFault { .. } => {
                if s.reset_after_fault {
                    Answer::Yes
                } else {
                    Answer::Abort
                }
            }
            Prompt::CheckpointsExhausted { .. } => Answer::Abort,
            // The simulated site registers on its fiducials; nobody gives one.
            Prompt::Registration => Answer::Abort,
            Prompt::RetractNeedle { .. } => {
                if s.hold_after_stop {
                    Answer::No
                } else {
                    Answer::Yes
                }
            }
        })
    }
    fn request(&mut self) -> Option<Request> {
        if self.leave.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed)) {
            self.leave = None;
            self.fired.push("operator leaves (asked from outside)".into());
            return Some(Request::Leave);
        }
        self.requests.pop_front()
    }
}

impl<A: SimArm> Ablation for SimWorld<A> {
    fn start_ablation(&mut self, setting: &stylet_planning::Zone, _tip: Point<Ct>) -> Result<(), PortError> {
        if self.ablation.is_some() {
            return Err(PortError::Ablation("already running".into()));
        }
        let now = self.arm.clock_s();
        let imaged = self.tip_now(now);
        let axis = self.true_axis(&self.arm.true_joints());
        self.ablated.push((imaged, axis, setting.clone()));
        self.ablation = Some(now);
        Ok(())
    }
    fn ablation_status(&mut self) -> AblationStatus {
        let (w, s) = self.setup.ablation_w_s;
        let Some(t0) = self.ablation else {
            return AblationStatus { elapsed_s: 0.0, energy_j: 0.0, done: false };
        };
        let f = ((self.arm.clock_s() - t0) / self.setup.ablation_sim_s.max(1e-3)).clamp(0.0, 1.0);
        AblationStatus { elapsed_s: f * s, energy_j: f * w * s, done: f >= 1.0 }
    }
    fn stop_ablation(&mut self) {
        self.ablation = None;
    }
}
