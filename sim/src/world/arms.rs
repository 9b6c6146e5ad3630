//! The arms of the simulated world: in lockstep virtual time, over a real pty on the wall clock,
//! or driven by a host in another process.

use std::time::Instant;

use stylet_procedure::ports::{Motion, PortError};
use stylet_procedure::runner_motion::RunnerMotion;
use stylet_safety::runner::{RunnerEvent, Timing};
use stylet_safety::trajectory::Trajectory;
use stylet_safety::{Actuator, Command, SafetyConfig, Snapshot};

use crate::faults::FaultKind;
use crate::lockstep::Lockstep;

/// The arm of the simulated world: the [`Motion`] port, the clock it runs on, and the truth of
/// the simulated controller (which the driver never sees).
pub trait SimArm: Motion {
    /// The controller's true joint positions.
    fn true_joints(&self) -> Vec<f64>;
    /// Whether the controller's drives are on.
    fn true_drives_on(&self) -> bool;
    /// Injects a controller fault now.
    fn inject(&mut self, kind: FaultKind);
    /// The arm's clock, s.
    fn clock_s(&self) -> f64;
    /// Lets `dt_s` pass.
    fn advance(&mut self, dt_s: f64);
    /// Virtual time (computations take none).
    fn is_virtual(&self) -> bool;
}

/// The supervisor and the simulated controller in lockstep, in virtual time.
#[derive(Debug)]
pub struct VirtualArm {
    /// The loop.
    pub lockstep: Lockstep,
    safety: SafetyConfig,
}

impl VirtualArm {
    /// The arm of `safety`'s robot on `controller`.
    ///
    /// # Errors
    /// The safety config is out of its bounds, or the controller does not answer the handshake.
    pub fn new(safety: SafetyConfig, controller: crate::Controller) -> Result<Self, String> {
        let sup = stylet_safety::Supervisor::new(safety.clone())?;
        Ok(VirtualArm { lockstep: Lockstep::new(sup, controller).map_err(|e| e.to_string())?, safety })
    }
}

impl Motion for VirtualArm {
    fn safety(&self) -> &SafetyConfig {
        &self.safety
    }
    fn snapshot(&mut self) -> Result<Snapshot, PortError> {
        Ok(self.lockstep.snapshot())
    }
    fn command(&mut self, c: Command) -> Result<(), PortError> {
        self.lockstep.command(c).map_err(|r| PortError::Refused(format!("{c:?}: {r}")))
    }
    fn execute(&mut self, t: Trajectory) -> Result<(), PortError> {
        self.lockstep.execute(t).map_err(|r| PortError::Refused(r.to_string()))
    }
    fn stop(&mut self) {
        self.lockstep.send(stylet_safety::runner::Operator::Abort);
    }
    fn estop(&mut self) {
        self.lockstep.send(stylet_safety::runner::Operator::EStop);
    }
    fn pump(&mut self, gate_open: bool, events: &mut dyn FnMut(RunnerEvent)) {
        // The console sends its heartbeat and the gate with every cycle (Lockstep::step).
        self.lockstep.step(gate_open);
        for e in self.lockstep.take_events() {
            events(e);
        }
    }
    fn take_timing(&mut self) -> Timing {
        self.lockstep.timing()
    }
}

impl SimArm for VirtualArm {
    fn true_joints(&self) -> Vec<f64> {
        self.lockstep.controller().controller().positions()
    }
    fn true_drives_on(&self) -> bool {
        self.lockstep.controller().controller().drives()
    }
    fn inject(&mut self, kind: FaultKind) {
        self.lockstep.controller_mut().inject(kind);
    }
    fn clock_s(&self) -> f64 {
        self.lockstep.now().as_secs_f64()
    }
    fn advance(&mut self, dt_s: f64) {
        let end = self.clock_s() + dt_s;
        let gate = self.lockstep.snapshot().gate_open;
        while self.clock_s() + 1e-9 < end {
            self.lockstep.step(gate);
        }
    }
    fn is_virtual(&self) -> bool {
        true
    }
}

/// The [`SimArm`] items of an arm on the wall clock whose truth is a [`TrueController`] in
/// `self.controller` and whose clock started at `self.started`: time passes by sleeping.
macro_rules! wall_clock_truth {
    () => {
        fn true_joints(&self) -> Vec<f64> {
            self.controller.true_joints()
        }
        fn true_drives_on(&self) -> bool {
            self.controller.drives_on()
        }
        fn inject(&mut self, kind: FaultKind) {
            self.controller.inject(kind);
        }
        fn clock_s(&self) -> f64 {
            self.started.elapsed().as_secs_f64()
        }
        fn advance(&mut self, dt_s: f64) {
            std::thread::sleep(std::time::Duration::from_secs_f64(dt_s.max(0.0)));
        }
        fn is_virtual(&self) -> bool {
            false
        }
    };
}

/// The truth of a simulated controller running on its own thread (a pty's far end).
pub trait TrueController {
    /// Its true joint positions.
    fn true_joints(&self) -> Vec<f64>;
    /// Whether its drives are on.
    fn drives_on(&self) -> bool;
    /// Injects a fault now.
    fn inject(&self, kind: FaultKind);
}

/// The supervisor's runner thread over a real pty to a simulated controller, on the wall clock.
#[derive(Debug)]
pub struct RealtimeArm<A, T> {
    /// The runner behind the motion port.
    pub motion: RunnerMotion<A>,
    /// The controller's truth.
    pub controller: T,
    started: Instant,
}

impl<A, T> RealtimeArm<A, T> {
    /// The arm; its clock starts now.
    pub fn new(motion: RunnerMotion<A>, controller: T) -> Self {
        RealtimeArm { motion, controller, started: Instant::now() }
    }
}

impl<A, T> Motion for RealtimeArm<A, T> {
    stylet_procedure::forward_motion!(motion);
}

impl<A: Actuator, T: TrueController> SimArm for RealtimeArm<A, T> {
    wall_clock_truth!();
}

/// The arm as the world process sees it (`stylet sim world`): a simulated controller on a pty
/// that the host's procedure drives from its own process. The world reads the controller's
/// truth and injects its faults; it never moves it, so its motion port refuses everything.
#[derive(Debug)]
pub struct HostDrivenArm<T> {
    /// The controller's truth.
    pub controller: T,
    safety: SafetyConfig,
    started: Instant,
}

impl<T> HostDrivenArm<T> {
    /// The arm under `safety`'s robot; its clock starts now.
    pub fn new(controller: T, safety: SafetyConfig) -> Self {
        HostDrivenArm { controller, safety, started: Instant::now() }
    }
}

fn host_drives() -> PortError {
    PortError::Refused("the host drives this arm over its pty, not the world".into())
}

impl<T> Motion for HostDrivenArm<T> {
    fn safety(&self) -> &SafetyConfig {
        &self.safety
    }
    fn snapshot(&mut self) -> Result<Snapshot, PortError> {
        Err(host_drives())
    }
    fn command(&mut self, _: Command) -> Result<(), PortError> {
        Err(host_drives())
    }
    fn execute(&mut self, _: Trajectory) -> Result<(), PortError> {
        Err(host_drives())
    }
    fn stop(&mut self) {}
    fn estop(&mut self) {}
    fn pump(&mut self, _: bool, _: &mut dyn FnMut(RunnerEvent)) {}
    fn take_timing(&mut self) -> Timing {
        Timing::default()
    }
}

impl<T: TrueController> SimArm for HostDrivenArm<T> {
    wall_clock_truth!();
}
