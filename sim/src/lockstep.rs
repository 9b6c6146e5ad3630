//! Virtual time: the simulated controller stepped in lockstep with the supervisor's cycles, in
//! one thread, on one [`MockClock`]. No pty, no sleeps: a run takes as long as the CPU needs, and
//! the same seed gives the same run.
//!
//! [`LockstepController`] is an [`Actuator`]: the supervisor's commands are framed and fed to the
//! controller's end of the line ([`ControllerEnd`], the same code the pty serves), and what the
//! controller answers comes back through a frame decoder, with the line faults of the scenario.
//! [`Lockstep`] is the loop around it: it advances the clock one period and runs one cycle of the
//! supervisor ([`Cycler`], the same code the runner thread runs).

use std::collections::VecDeque;

use stylet_core::{Clock, MockClock, Nanos};
use stylet_protocol::{encode_frame, ControllerInfo, FrameDecoder, Message, MAX_FRAME, PROTOCOL_VERSION};
use stylet_safety::runner::{Cycler, Operator, RunReport, RunnerEvent};
use stylet_safety::trajectory::Trajectory;
use stylet_safety::{Actuator, ActuatorInput, Command, Refusal, Snapshot, SupervisedCommand, Supervisor};

use crate::controller::Controller;
use crate::faults::{FaultKind, FaultSpec};
use crate::monitor::MonitorReport;
use crate::wire::ControllerEnd;

/// The simulated controller for `safety`'s robot, with its wire monitor checking against the
/// same envelope (what `stylet sim controller` and the lockstep world both run).
#[must_use]
pub fn controller_for(safety: &stylet_safety::SafetyConfig, sim: crate::SimConfig) -> Controller {
    let monitor = crate::WireMonitor::new(&safety.robot, safety.in_tissue_depth_mm, safety.max_depth_mm);
    Controller::new(sim, safety.robot.clone(), monitor)
}

/// The controller did not answer the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, docsplay::Display, thiserror::Error)]
pub struct NoAnswer;

/// The simulated controller behind the [`Actuator`] port, in virtual time.
#[derive(Debug)]
pub struct LockstepController {
    controller: Controller,
    end: ControllerEnd,
    clock: MockClock,
    host_seq: u16,
    decoder: FrameDecoder,
    inbox: VecDeque<ActuatorInput>,
}

impl LockstepController {
    /// Connects to `controller` at the clock's time: Hello, and its HelloAck (the first poll
    /// reports it, as the serial link does).
    ///
    /// # Errors
    /// [`NoAnswer`] when the controller does not greet back (its link is down).
    pub fn connect(controller: Controller, clock: MockClock) -> Result<Self, NoAnswer> {
        let mut me = LockstepController {
            controller,
            end: ControllerEnd::new(),
            clock,
            host_seq: 0,
            decoder: FrameDecoder::new(),
            inbox: VecDeque::new(),
        };
        me.transmit(&Message::Hello { protocol_version: PROTOCOL_VERSION, host_id: 1 });
        let now = me.now_s();
        me.end.step(&mut me.controller, now);
        me.collect(now);
        match me.inbox.iter().position(|i| matches!(i, ActuatorInput::Connected(_))) {
            Some(k) => {
                // From the greeting on, in order (what came before it is not news).
                me.inbox.drain(..k);
                Ok(me)
            }
            None => Err(NoAnswer),
        }
    }

    /// What the controller said in the handshake.
    #[must_use]
    pub fn info(&self) -> Option<ControllerInfo> {
        self.inbox.iter().find_map(|i| match i {
            ActuatorInput::Connected(info) => Some(*info),
            _ => None,
        })
    }

    fn now_s(&self) -> f64 {
        self.clock.now().as_secs_f64()
    }

    fn transmit(&mut self, m: &Message) {
        self.host_seq = self.host_seq.wrapping_add(1);
        let mut buf = [0u8; MAX_FRAME];
        if let Ok(n) = encode_frame(self.host_seq, m, &mut buf) {
            let now = self.now_s();
            self.end.receive(&mut self.controller, now, &buf[..n]);
        }
    }

    fn collect(&mut self, now: f64) {
        let (decoder, inbox) = (&mut self.decoder, &mut self.inbox);
        self.end.deliver(now, &mut |frame| {
            decoder.feed(frame, |r| match r {
                Ok(f) => inbox.extend(ActuatorInput::from_controller(f.seq, f.message)),
                Err(_) => inbox.push_back(ActuatorInput::LinkError),
            });
        });
    }

    /// The controller model (ground truth: true joints, drives, the wire monitor).
    #[must_use]
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Injects a fault now (times of a scenario's faults count from the first enable).
    pub fn inject(&mut self, kind: FaultKind) {
        self.controller.inject(FaultSpec { kind, at_s: 0.0 });
    }
}

impl Actuator for LockstepController {
    fn send(&mut self, command: SupervisedCommand) {
        self.transmit(command.message());
    }

    fn poll(&mut self, sink: &mut dyn FnMut(ActuatorInput)) {
        let now = self.now_s();
        self.end.step(&mut self.controller, now);
        self.collect(now);
        for input in self.inbox.drain(..) {
            sink(input);
        }
    }
}

/// The supervisor and the simulated controller in one loop on one clock.
#[derive(Debug)]
pub struct Lockstep {
    clock: MockClock,
    cycler: Cycler<LockstepController>,
    period: Nanos,
    k: u64,
    ops: VecDeque<Operator>,
    /// The gate input the console sends with each cycle.
    gate: bool,
    /// Every runner event, in order.
    pub events: Vec<RunnerEvent>,
}

impl Lockstep {
    /// Connects `supervisor` to `controller` at time zero.
    ///
    /// # Errors
    /// [`NoAnswer`] when the controller does not answer the handshake.
    pub fn new(supervisor: Supervisor, controller: Controller) -> Result<Self, NoAnswer> {
        let clock = MockClock::new();
        let period = supervisor.config().period;
        let actuator = LockstepController::connect(controller, clock.clone())?;
        Ok(Lockstep {
            clock,
            cycler: Cycler::new(supervisor, actuator),
            period,
            k: 0,
            ops: VecDeque::new(),
            gate: false,
            events: Vec::new(),
        })
    }

    /// The clock every part of the world reads.
    #[must_use]
    pub fn clock(&self) -> &MockClock {
        &self.clock
    }

    /// The time now.
    #[must_use]
    pub fn now(&self) -> Nanos {
        self.clock.now()
    }

    /// Queues an operator message for the next cycle.
    pub fn send(&mut self, m: Operator) {
        self.ops.push_back(m);
    }

    /// Advances one period and runs that cycle (the operator console's heartbeat and `gate`
    /// go with it, as a console pumping every cycle would send them).
    pub fn step(&mut self, gate: bool) {
        self.gate = gate;
        self.k += 1;
        let deadline = Nanos(self.period.0 * self.k);
        self.clock.set(deadline);
        self.ops.push_front(Operator::Gate(gate));
        self.ops.push_front(Operator::Heartbeat);
        let (ops, events) = (&mut self.ops, &mut self.events);
        self.cycler.cycle(deadline, Nanos::ZERO, &mut || ops.pop_front(), &mut |e| events.push(e));
    }

    /// Steps until `done` holds or `max` has passed; whether it held.
    pub fn run_until(&mut self, max: Nanos, gate: bool, mut done: impl FnMut(&Lockstep) -> bool) -> bool {
        let end = self.now().saturating_add(max);
        while self.now() < end {
            if done(self) {
                return true;
            }
            self.step(gate);
        }
        done(self)
    }

    /// Sends a workflow command and runs the cycle that answers it.
    ///
    /// # Errors
    /// The supervisor's refusal.
    pub fn command(&mut self, c: Command) -> Result<(), Refusal> {
        let now = self.now();
        let events = &mut self.events;
        let r = self.cycler.command(now, c, &mut |e| events.push(e));
        self.step(self.gate);
        r
    }

    /// Starts `t` (the cycles that follow execute it).
    ///
    /// # Errors
    /// The runner's rejection (not at the commanded position, or not in a motion state).
    pub fn execute(&mut self, t: Trajectory) -> Result<(), stylet_safety::runner::Rejected> {
        let events = &mut self.events;
        self.cycler.execute(t, &mut |e| events.push(e))
    }

    /// The runner's events since the last call.
    pub fn take_events(&mut self) -> Vec<RunnerEvent> {
        std::mem::take(&mut self.events)
    }

    /// The control loop's timing (in virtual time every cycle starts on its deadline).
    #[must_use]
    pub fn timing(&self) -> stylet_safety::runner::Timing {
        self.cycler.timing()
    }

    /// Runs `t` to its end (or until it is interrupted, or `max` passes): whether it finished.
    pub fn follow(&mut self, t: Trajectory, max: Nanos) -> bool {
        let events = &mut self.events;
        if self.cycler.execute(t, &mut |e| events.push(e)).is_err() {
            return false;
        }
        let from = self.events.len();
        self.run_until(max, true, |w| !w.cycler.is_moving());
        self.events[from..].contains(&RunnerEvent::TrajectoryDone)
    }

    /// The supervisor's snapshot.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.cycler.snapshot()
    }

    /// The simulated controller (ground truth).
    #[must_use]
    pub fn controller(&self) -> &LockstepController {
        self.cycler.actuator()
    }

    /// The simulated controller, to inject faults.
    pub fn controller_mut(&mut self) -> &mut LockstepController {
        self.cycler.actuator_mut()
    }

    /// Ends the run: the supervisor's report and the wire monitor's.
    #[must_use]
    pub fn finish(self) -> (RunReport<LockstepController>, MonitorReport) {
        let report = self.cycler.into_report(0);
        let monitor = report.actuator.controller().monitor().report().clone();
        (report, monitor)
    }
}
