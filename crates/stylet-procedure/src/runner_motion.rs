//! The [`Motion`] port over the supervisor's real-time runner thread: what drives a real arm
//! (the runner over `stylet-link`'s serial [`Actuator`](stylet_safety::Actuator)) and the
//! wall-clock simulation (the same over a pty).

use stylet_safety::runner::{Operator, RunnerEvent, RunnerHandle, Timing};
use stylet_safety::trajectory::Trajectory;
use stylet_safety::{Command, SafetyConfig, Snapshot};

use crate::ports::{Motion, PortError};

/// The runner thread behind the [`Motion`] port.
#[derive(Debug)]
pub struct RunnerMotion<A> {
    /// The runner (its e-stop button, its shutdown).
    pub handle: RunnerHandle<A>,
    safety: SafetyConfig,
}

impl<A> RunnerMotion<A> {
    /// The port over `handle`, whose supervisor runs `safety`.
    pub fn new(handle: RunnerHandle<A>, safety: SafetyConfig) -> Self {
        RunnerMotion { handle, safety }
    }
}

impl<A> Motion for RunnerMotion<A> {
    fn safety(&self) -> &SafetyConfig {
        &self.safety
    }

    fn snapshot(&mut self) -> Result<Snapshot, PortError> {
        self.handle.snapshot().ok_or_else(|| PortError::Gone("the supervisor thread ended".into()))
    }

    fn command(&mut self, c: Command) -> Result<(), PortError> {
        match self.handle.command(c) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(r)) => Err(PortError::Refused(format!("{c:?}: {r}"))),
            Err(e) => Err(PortError::Gone(e.to_string())),
        }
    }

    fn execute(&mut self, t: Trajectory) -> Result<(), PortError> {
        match self.handle.execute(t) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(r)) => Err(PortError::Refused(r.to_string())),
            Err(e) => Err(PortError::Gone(e.to_string())),
        }
    }

    fn stop(&mut self) {
        let _ = self.handle.send(Operator::Abort);
    }

    fn estop(&mut self) {
        let _ = self.handle.send(Operator::EStop);
    }

    fn pump(&mut self, gate_open: bool, events: &mut dyn FnMut(RunnerEvent)) {
        let _ = self.handle.send(Operator::Heartbeat);
        let _ = self.handle.send(Operator::Gate(gate_open));
        while let Some(e) = self.handle.events.try_recv() {
            events(e);
        }
    }

    fn take_timing(&mut self) -> Timing {
        self.handle.take_timing()
    }
}
