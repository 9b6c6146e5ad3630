//! The CT suite as the driver's world: each port delegated to its device.

use stylet_core::frame::{Ct, Point, Robot, Transform};
use stylet_procedure::ports::{
    Ablation, AblationStatus, Acquired, Answer, Clock, CtPurpose, CtSource, Motion, Operator, PlanningCt, PortError,
    Prompt, Request, Respiration,
};
use stylet_respiration::Sample;

use crate::clock::WallClock;

/// The devices of the CT suite behind the procedure's ports.
#[derive(Debug)]
pub struct SuiteWorld<M, C, R, O, A> {
    /// The arm (the supervisor's runner over the controller's serial link).
    pub motion: M,
    /// The scanner.
    pub ct: C,
    /// The respiratory sensor.
    pub respiration: R,
    /// The console.
    pub operator: O,
    /// The ablation device.
    pub ablation: A,
    /// The procedure clock.
    pub clock: WallClock,
}

impl<M: Motion, C, R, O, A> Motion for SuiteWorld<M, C, R, O, A> {
    stylet_procedure::forward_motion!(motion);
}

impl<M, C: CtSource, R, O, A> CtSource for SuiteWorld<M, C, R, O, A> {
    fn planning(&mut self) -> Result<Option<PlanningCt>, PortError> {
        self.ct.planning()
    }
    fn request_ct(&mut self, purpose: CtPurpose) -> Result<(), PortError> {
        self.ct.request_ct(purpose)
    }
    fn poll_ct(&mut self) -> Result<Option<Acquired>, PortError> {
        self.ct.poll_ct()
    }
    fn notices(&mut self, sink: &mut dyn FnMut(String)) {
        self.ct.notices(sink);
    }
}

impl<M, C, R: Respiration, O, A> Respiration for SuiteWorld<M, C, R, O, A> {
    fn samples(&mut self, now_s: f64, sink: &mut dyn FnMut(Sample)) {
        self.respiration.samples(now_s, sink);
    }
    fn respiration_notices(&mut self, sink: &mut dyn FnMut(String)) {
        self.respiration.respiration_notices(sink);
    }
}

impl<M, C, R, O: Operator, A> Operator for SuiteWorld<M, C, R, O, A> {
    fn answer(&mut self, prompt: &Prompt) -> Option<Answer> {
        self.operator.answer(prompt)
    }
    fn request(&mut self) -> Option<Request> {
        self.operator.request()
    }
    fn operator_notices(&mut self, sink: &mut dyn FnMut(String)) {
        self.operator.operator_notices(sink);
    }
    fn registration(&mut self) -> Option<Transform<Robot, Ct>> {
        self.operator.registration()
    }
}

impl<M, C, R, O, A: Ablation> Ablation for SuiteWorld<M, C, R, O, A> {
    fn start_ablation(&mut self, setting: &stylet_planning::Zone, tip: Point<Ct>) -> Result<(), PortError> {
        self.ablation.start_ablation(setting, tip)
    }
    fn ablation_status(&mut self) -> AblationStatus {
        self.ablation.ablation_status()
    }
    fn stop_ablation(&mut self) {
        self.ablation.stop_ablation();
    }
}

impl<M, C, R, O, A> Clock for SuiteWorld<M, C, R, O, A> {
    fn now_s(&self) -> f64 {
        self.clock.now_s()
    }
    fn wait(&mut self, dt_s: f64) {
        Clock::wait(&mut self.clock, dt_s);
    }
    fn runs_while_computing(&self) -> bool {
        true
    }
}
