//! A world with a live operator: its ports as they are, but the operator's, which a person (at a
//! console or in 3D Slicer) takes over; and when the world's clock is virtual, time paced to the
//! wall clock, so that the procedure unfolds at the speed the person sees it (and the
//! supervision stays the virtual world's lockstep, free of the host's scheduling).

use std::time::{Duration, Instant};

use stylet_core::frame::{Ct, Point, Robot, Transform};
use stylet_procedure::ports::{
    Ablation, AblationStatus, Acquired, Answer, Clock, CtPurpose, CtSource, Motion, Operator, PlanningCt, PortError,
    Prompt, Request, Respiration,
};
use stylet_respiration::Sample;

/// `world` with `operator` in place of its own.
#[derive(Debug)]
pub struct LiveWorld<'a, W, O> {
    /// The world.
    pub world: &'a mut W,
    /// The operator.
    pub operator: O,
    /// The wall-clock instant and the world's time when pacing began.
    pace: Option<(Instant, f64)>,
}

impl<'a, W: Clock, O> LiveWorld<'a, W, O> {
    /// `world` run by `operator`; paced to the wall clock when the world's clock is virtual
    /// (it does not run while the driver computes).
    pub fn new(world: &'a mut W, operator: O) -> Self {
        let pace = (!world.runs_while_computing()).then(|| (Instant::now(), world.now_s()));
        Self { world, operator, pace }
    }
}

impl<W: Motion, O> Motion for LiveWorld<'_, W, O> {
    stylet_procedure::forward_motion!(world);
}

impl<W: CtSource, O> CtSource for LiveWorld<'_, W, O> {
    fn planning(&mut self) -> Result<Option<PlanningCt>, PortError> {
        self.world.planning()
    }
    fn request_ct(&mut self, purpose: CtPurpose) -> Result<(), PortError> {
        self.world.request_ct(purpose)
    }
    fn poll_ct(&mut self) -> Result<Option<Acquired>, PortError> {
        self.world.poll_ct()
    }
    fn notices(&mut self, sink: &mut dyn FnMut(String)) {
        self.world.notices(sink);
    }
}

impl<W: Respiration, O> Respiration for LiveWorld<'_, W, O> {
    fn samples(&mut self, now_s: f64, sink: &mut dyn FnMut(Sample)) {
        self.world.samples(now_s, sink);
    }
    fn respiration_notices(&mut self, sink: &mut dyn FnMut(String)) {
        self.world.respiration_notices(sink);
    }
}

impl<W, O: Operator> Operator for LiveWorld<'_, W, O> {
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

impl<W: Ablation, O> Ablation for LiveWorld<'_, W, O> {
    fn start_ablation(&mut self, setting: &stylet_planning::Zone, tip: Point<Ct>) -> Result<(), PortError> {
        self.world.start_ablation(setting, tip)
    }
    fn ablation_status(&mut self) -> AblationStatus {
        self.world.ablation_status()
    }
    fn stop_ablation(&mut self) {
        self.world.stop_ablation();
    }
}

impl<W: Clock, O> Clock for LiveWorld<'_, W, O> {
    fn now_s(&self) -> f64 {
        self.world.now_s()
    }
    fn wait(&mut self, dt_s: f64) {
        self.world.wait(dt_s);
        if let Some((t0, s0)) = self.pace {
            if let Some(d) = behind_the_world(self.world.now_s() - s0, t0.elapsed()) {
                std::thread::sleep(d);
            }
        }
    }
    fn runs_while_computing(&self) -> bool {
        self.world.runs_while_computing()
    }
}

/// How long the wall clock must wait to catch up with the world, `world_s` after pacing began
/// and `wall` of the wall clock (at most a second at a time; none when the world is behind).
fn behind_the_world(world_s: f64, wall: Duration) -> Option<Duration> {
    let ahead_s = world_s - wall.as_secs_f64();
    (ahead_s > 0.0).then(|| Duration::from_secs_f64(ahead_s.min(1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_waits_for_the_world_never_the_reverse() {
        let ms = Duration::from_millis;
        assert_eq!(behind_the_world(0.25, ms(100)), Some(ms(150)));
        // A world behind the wall clock (a long computation) catches up without waiting.
        assert_eq!(behind_the_world(0.25, ms(400)), None);
        assert_eq!(behind_the_world(0.1, ms(100)), None);
        // Never more than a second at a time.
        assert_eq!(behind_the_world(30.0, ms(0)), Some(ms(1000)));
    }
}
