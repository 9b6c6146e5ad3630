//! The supervisor core: a pure state machine stepped once per cycle with the cycle's time.
//!
//! It owns the commanded joint state and emits exactly one [`SupervisedCommand`] (or nothing) per
//! cycle. Nothing here allocates, blocks or reads a clock: the runner (or a test) passes `now`.
//!
//! The envelope it guarantees for every emitted setpoint (checked by property tests and,
//! independently, by the simulated controller's wire monitor):
//! - every joint within its hard limits;
//! - finite-difference velocity and velocity feed-forward within the joint's velocity limit;
//! - finite-difference acceleration within the joint's acceleration limit;
//! - orientation and insertion joints never move in the same setpoint, and orientation joints never
//!   move while the needle is in tissue (INS-1);
//! - the insertion joint never advances outside `Inserting` (INS-2, RESP-2) nor beyond the depth
//!   limit (PATH-6).
//!
//! Requests that would break the jerk limit, or the braking condition that keeps a controlled stop
//! inside the soft stops, are refused with a latched fault, so the envelope holds by induction:
//! every admitted state can stop at the stop deceleration before its soft stop.

use stylet_core::config::{JointKind, JointRole, RobotConfig};
use stylet_core::Nanos;
use stylet_protocol::{ControllerInfo, JointArray, JointSetpoint, Message, Status, MAX_JOINTS};

use crate::command::SupervisedCommand;
use crate::config::SafetyConfig;
use crate::fault::{Fault, Reaction};
use crate::state::{Command, MotionState};

mod commands;
mod envelope;
mod inputs;
mod report;

pub use report::{Cycle, Event, Refusal, Snapshot};

/// How long the controller may take to report drives enabled after `Enable`.
const ENABLE_GRACE: Nanos = Nanos::from_millis(200);
/// How long a reset may wait for the controller to clear its latched faults.
const RESET_TIMEOUT: Nanos = Nanos::from_millis(500);
/// While the drives are off after a brake-hold fault, `Disable` is repeated this often (cycles).
const DISABLE_RESEND_CYCLES: u32 = 50;
/// Capacity of the event ring between two drains.
const EVENT_CAPACITY: usize = 64;
/// How far past a soft stop the braking condition lets a stop's predicted end lie, rad or mm:
/// floating-point noise only. A move planned to end exactly on a stop arrives with the last
/// sample's finite-difference velocity (the mean over its final period, not the zero it ends
/// with), whose stop would end some 1e-11 mm beyond; a nanometre is a thousandth of the
/// encoder's count.
const BRAKING_NOISE: f64 = 1e-9;

#[derive(Clone, Copy, Debug)]
struct JointLimits {
    lo: f64,
    hi: f64,
    soft_lo: f64,
    soft_hi: f64,
    vmax: f64,
    amax: f64,
    jmax: f64,
    a_stop: f64,
    following: f64,
    jump: f64,
    current_a: f64,
    orientation: bool,
}

/// The supervisor. See the module documentation for what it guarantees.
#[derive(Debug)]
pub struct Supervisor {
    cfg: SafetyConfig,
    n: usize,
    ins: Option<usize>,
    depth_bound: bool,
    limits: [JointLimits; MAX_JOINTS],
    dt: f64,
    state: MotionState,
    fault: Option<Fault>,
    reaction: Option<Reaction>,
    drives_on: bool,
    drives_seen_enabled: bool,
    enabled_at: Nanos,
    q: [f64; MAX_JOINTS],
    v: [f64; MAX_JOINTS],
    a: [f64; MAX_JOINTS],
    was_moving: bool,
    controller: Option<ControllerInfo>,
    state_at: Option<Nanos>,
    max_state_gap: Nanos,
    connected_at: Nanos,
    measured: [f64; MAX_JOINTS],
    measured_valid: bool,
    controller_time_us: u64,
    state_seq: Option<u16>,
    /// Frames from the controller other than states (faults, acks, nacks) since the last state:
    /// each took a number of the controller's one sequence, so they are no gap in the states'.
    frames_since_state: u16,
    status: Status,
    status_joint_faults: u16,
    overcurrent: [u32; MAX_JOINTS],
    operator_at: Option<Nanos>,
    gate: Option<(Nanos, bool)>,
    link_window_start: Nanos,
    link_errors: u32,
    link_errors_total: u64,
    pending: Option<Message>,
    awaiting_reply: Option<(u8, Nanos)>,
    disable_resend: u32,
    reset_since: Option<Nanos>,
    cycles: u64,
    events: [Option<Event>; EVENT_CAPACITY],
    event_head: usize,
    event_len: usize,
    events_dropped: u64,
}

impl Supervisor {
    /// A supervisor for this config, in `Disconnected`: only from a config that came through its
    /// checked loader ([`SafetyConfig::load_dir`]) and is still within its bounds
    /// ([`SafetyConfig::verify`]).
    ///
    /// # Errors
    /// The limit out of bounds.
    pub fn new(cfg: SafetyConfig) -> Result<Self, String> {
        cfg.verify()?;
        Ok(Self::checked(cfg))
    }

    fn checked(cfg: SafetyConfig) -> Self {
        let n = cfg.robot.joints.len().min(MAX_JOINTS);
        let ins = cfg.robot.insertion_joint();
        let mut limits = [JointLimits {
            lo: 0.0,
            hi: 0.0,
            soft_lo: 0.0,
            soft_hi: 0.0,
            vmax: 0.0,
            amax: 0.0,
            jmax: 0.0,
            a_stop: 0.0,
            following: 0.0,
            jump: 0.0,
            current_a: 0.0,
            orientation: false,
        }; MAX_JOINTS];
        let ranges = cfg.soft_ranges();
        for ((l, j), range) in limits.iter_mut().zip(&cfg.robot.joints).zip(&ranges) {
            let (following, jump) = match j.kind {
                JointKind::Revolute => (cfg.following_error_rad, cfg.encoder_jump_rad),
                JointKind::Prismatic => (cfg.following_error_mm, cfg.encoder_jump_mm),
            };
            *l = JointLimits {
                lo: j.min,
                hi: j.max,
                soft_lo: range.lo,
                soft_hi: range.hi,
                vmax: j.max_velocity,
                amax: j.max_acceleration,
                jmax: j.max_jerk,
                a_stop: j.max_acceleration * cfg.stop_deceleration_fraction,
                following,
                jump,
                current_a: j.max_current_a,
                orientation: j.role == JointRole::Orientation,
            };
        }
        // PATH-6: the depth limit is the insertion joint's upper soft stop when it is the tighter one.
        let depth_bound = ranges.iter().any(|r| r.depth_bound);
        let dt = cfg.dt();
        Supervisor {
            cfg,
            n,
            ins,
            depth_bound,
            limits,
            dt,
            state: MotionState::Disconnected,
            fault: None,
            reaction: None,
            drives_on: false,
            drives_seen_enabled: false,
            enabled_at: Nanos::ZERO,
            q: [0.0; MAX_JOINTS],
            v: [0.0; MAX_JOINTS],
            a: [0.0; MAX_JOINTS],
            was_moving: false,
            controller: None,
            state_at: None,
            max_state_gap: Nanos::ZERO,
            connected_at: Nanos::ZERO,
            measured: [0.0; MAX_JOINTS],
            measured_valid: false,
            controller_time_us: 0,
            state_seq: None,
            frames_since_state: 0,
            status: Status::default(),
            status_joint_faults: 0,
            overcurrent: [0; MAX_JOINTS],
            operator_at: None,
            gate: None,
            link_window_start: Nanos::ZERO,
            link_errors: 0,
            link_errors_total: 0,
            pending: None,
            awaiting_reply: None,
            disable_resend: 0,
            reset_since: None,
            cycles: 0,
            events: [None; EVENT_CAPACITY],
            event_head: 0,
            event_len: 0,
            events_dropped: 0,
        }
    }

    /// The config in force.
    #[must_use]
    pub fn config(&self) -> &SafetyConfig {
        &self.cfg
    }

    /// The robot.
    #[must_use]
    pub fn robot(&self) -> &RobotConfig {
        &self.cfg.robot
    }

    /// The motion state.
    #[must_use]
    pub fn state(&self) -> MotionState {
        self.state
    }

    /// The latched fault.
    #[must_use]
    pub fn fault(&self) -> Option<Fault> {
        self.fault
    }

    /// Commanded positions of every joint.
    #[must_use]
    pub fn commanded(&self) -> &[f64] {
        &self.q[..self.n]
    }

    /// Whether every joint's commanded velocity is zero.
    #[must_use]
    pub fn is_still(&self) -> bool {
        self.v[..self.n].iter().all(|v| *v == 0.0)
    }

    /// The insertion depth the supervisor assumes: the larger of commanded and measured (mm).
    #[must_use]
    pub fn depth_mm(&self) -> f64 {
        match self.ins {
            Some(i) => {
                let cmd = if self.drives_on { self.q[i] } else { f64::NEG_INFINITY };
                let meas = if self.measured_valid { self.measured[i] } else { f64::NEG_INFINITY };
                let d = cmd.max(meas);
                if d.is_finite() {
                    d
                } else {
                    0.0
                }
            }
            None => 0.0,
        }
    }

    /// A snapshot for displays.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let arr = |x: &[f64; MAX_JOINTS]| JointArray::from_slice(&x[..self.n]).unwrap_or_default();
        Snapshot {
            state: self.state,
            fault: self.fault,
            drives_on: self.drives_on,
            commanded: arr(&self.q),
            velocity: arr(&self.v),
            measured: arr(&self.measured),
            status: self.status,
            pedal: self.status.has(Status::PEDAL_INPUT),
            gate_open: self.gate.is_some_and(|(_, open)| open),
            link_errors_total: self.link_errors_total,
            cycles: self.cycles,
            events_dropped: self.events_dropped,
            max_state_gap_ms: self.max_state_gap.as_secs_f64() * 1e3,
        }
    }

    /// Takes the oldest undrained event.
    pub fn pop_event(&mut self) -> Option<Event> {
        if self.event_len == 0 {
            return None;
        }
        let e = self.events[self.event_head].take();
        self.event_head = (self.event_head + 1) % EVENT_CAPACITY;
        self.event_len -= 1;
        e
    }

    fn push_event(&mut self, e: Event) {
        if self.event_len == EVENT_CAPACITY {
            // Keep the newest: drop the oldest.
            self.event_head = (self.event_head + 1) % EVENT_CAPACITY;
            self.event_len -= 1;
            self.events_dropped += 1;
        }
        let at = (self.event_head + self.event_len) % EVENT_CAPACITY;
        self.events[at] = Some(e);
        self.event_len += 1;
    }

    fn transition(&mut self, at: Nanos, to: MotionState, cause: &'static str) {
        if self.state != to {
            let from = self.state;
            self.state = to;
            self.push_event(Event::Transition { at, from, to, cause });
        }
    }

    /// Latches `fault` and applies its reaction. A later fault only escalates a controlled stop
    /// to a brake hold or a fault to an e-stop.
    pub fn latch(&mut self, now: Nanos, fault: Fault) {
        let reaction = fault.reaction();
        if self.fault.is_some() {
            let escalate_brake = reaction == Reaction::BrakeHold && self.reaction == Some(Reaction::ControlledStop);
            let escalate_estop = fault.is_estop() && self.state != MotionState::EStop;
            if escalate_brake || escalate_estop {
                self.push_event(Event::FaultEscalated { at: now, fault });
                if escalate_brake {
                    self.reaction = Some(Reaction::BrakeHold);
                    self.brake(fault.is_estop());
                }
                if escalate_estop {
                    self.fault = Some(fault);
                    self.transition(now, MotionState::EStop, "e-stop");
                }
            }
            return;
        }
        self.fault = Some(fault);
        self.reaction = Some(reaction);
        self.reset_since = None;
        self.push_event(Event::FaultLatched { at: now, fault, reaction });
        if reaction == Reaction::BrakeHold {
            self.brake(fault.is_estop());
        }
        let to = if fault.is_estop() { MotionState::EStop } else { MotionState::Fault };
        self.transition(now, to, fault.name());
    }

    fn brake(&mut self, estop: bool) {
        self.pending = Some(if estop { Message::EStop } else { Message::Disable });
        self.drives_on = false;
        self.drives_seen_enabled = false;
        self.disable_resend = 0;
        self.v = [0.0; MAX_JOINTS];
        self.a = [0.0; MAX_JOINTS];
    }

    /// The operator's software e-stop.
    pub fn estop(&mut self, now: Nanos) {
        self.latch(now, Fault::OperatorEStop);
    }

    /// The operator console is alive.
    pub fn heartbeat(&mut self, now: Nanos) {
        self.operator_at = Some(now);
    }

    /// The respiratory gate input (RESP-2).
    pub fn gate(&mut self, now: Nanos, open: bool) {
        self.gate = Some((now, open));
    }

    fn fresh(at: Option<Nanos>, now: Nanos, deadline: Nanos) -> bool {
        at.is_some_and(|t| now.saturating_sub(t) <= deadline)
    }

    fn gate_open(&self, now: Nanos) -> bool {
        self.gate.is_some_and(|(t, open)| open && now.saturating_sub(t) <= self.cfg.gate_deadline)
    }

    fn pedal_ok(&self) -> bool {
        !self.cfg.require_pedal || self.status.has(Status::PEDAL_INPUT)
    }

    fn controller_clear(&self) -> bool {
        !self.status.has(Status::ESTOP_INPUT)
            && !self.status.has(Status::WATCHDOG_TRIPPED)
            && !self.status.has(Status::FAULT)
            && self.status_joint_faults == 0
    }

    /// Steps one cycle. `now` is the cycle's nominal time (it stamps the setpoint), `lateness` how
    /// late the cycle actually started, `request` the motion generator's setpoint for this cycle
    /// (one entry per joint) when it has one. Returns the one command to send this cycle.
    pub fn cycle(&mut self, now: Nanos, lateness: Nanos, request: Option<&[JointSetpoint]>) -> Cycle {
        let mut consumed = false;
        let command = self.cycle_inner(now, lateness, request, &mut consumed);
        Cycle { command, consumed }
    }

    fn cycle_inner(
        &mut self,
        now: Nanos,
        lateness: Nanos,
        request: Option<&[JointSetpoint]>,
        consumed: &mut bool,
    ) -> Option<SupervisedCommand> {
        self.cycles += 1;
        if self.state == MotionState::Disconnected {
            return None;
        }
        self.check_inputs(now, lateness);
        if let Some((msg_type, sent)) = self.awaiting_reply {
            if now.saturating_sub(sent) > self.cfg.reply_deadline {
                self.awaiting_reply = None;
                let deadline_ms = self.cfg.reply_deadline.as_secs_f64() * 1e3;
                self.latch(now, Fault::MissedReply { msg_type, deadline_ms });
            }
        }
        if let Some(since) = self.reset_since {
            if self.controller_clear() && !self.pending.is_some_and(|m| m == Message::ResetFaults) {
                self.finish_reset(now);
            } else if now.saturating_sub(since) > RESET_TIMEOUT {
                self.reset_since = None;
                self.push_event(Event::Refused {
                    at: now,
                    command: Command::Reset,
                    reason: Refusal::ControllerNotClear,
                });
            }
        }
        // E-stop goes out at once, whatever else is happening.
        if self.pending == Some(Message::EStop) {
            return self.take_pending(now);
        }
        if !self.drives_on {
            if self.pending.is_some() {
                return self.take_pending(now);
            }
            self.disable_resend += 1;
            if self.fault.is_some() && self.disable_resend >= DISABLE_RESEND_CYCLES {
                self.disable_resend = 0;
                let m = if self.state == MotionState::EStop { Message::EStop } else { Message::Disable };
                self.expect_reply(now, &m);
                return Some(SupervisedCommand::new(m));
            }
            return Some(SupervisedCommand::new(Message::Heartbeat { host_time_us: now.as_micros() }));
        }
        if self.pending.is_some() && self.is_still() {
            return self.take_pending(now);
        }
        let request = if self.state.accepts_motion() && self.fault.is_none() { request } else { None };
        match request {
            Some(r) => {
                *consumed = true;
                if let Err(fault) = self.admit(now, r) {
                    self.latch(now, fault);
                    if !self.drives_on {
                        return self.take_pending(now);
                    }
                    self.ramp_down(now);
                }
            }
            None if self.state.accepts_motion() && self.fault.is_none() && !self.is_still() => {
                // No sample: hold where we are if that is itself a valid continuation (the tail of
                // a finished move); otherwise the motion stream stalled mid-move.
                let hold = JointArray::from_fn(self.n, |i| JointSetpoint { position: self.q[i], velocity: 0.0 })
                    .unwrap_or_default();
                if self.admit(now, hold.as_slice()).is_err() {
                    self.latch(now, Fault::StaleMotion);
                    self.ramp_down(now);
                }
            }
            None => self.ramp_down(now),
        }
        Some(self.setpoint(now))
    }

    fn take_pending(&mut self, now: Nanos) -> Option<SupervisedCommand> {
        let m = self.pending.take()?;
        self.expect_reply(now, &m);
        Some(SupervisedCommand::new(m))
    }

    /// Command frames (not setpoints or heartbeats) must be answered within the reply deadline.
    fn expect_reply(&mut self, now: Nanos, m: &Message) {
        if self.awaiting_reply.is_none() {
            self.awaiting_reply = Some((m.message_type() as u8, now));
        }
    }

    fn check_inputs(&mut self, now: Nanos, lateness: Nanos) {
        let ms = |n: Nanos| n.as_secs_f64() * 1e3;
        if lateness > self.cfg.max_lateness && self.drives_on {
            self.latch(now, Fault::CycleOverrun { lateness_ms: ms(lateness), limit_ms: ms(self.cfg.max_lateness) });
        }
        // The first state is due one deadline after the handshake.
        let state_age = now.saturating_sub(self.state_at.unwrap_or(self.connected_at));
        if state_age > self.cfg.controller_state_deadline && (self.drives_on || self.state != MotionState::Fault) {
            let deadline_ms = ms(self.cfg.controller_state_deadline);
            self.latch(now, Fault::StaleControllerState { age_ms: ms(state_age).min(1e9), deadline_ms });
        }
        if self.drives_on {
            let op_age = self.operator_at.map_or(Nanos(u64::MAX), |t| now.saturating_sub(t));
            if op_age > self.cfg.operator_deadline {
                let deadline_ms = ms(self.cfg.operator_deadline);
                self.latch(now, Fault::StaleOperator { age_ms: ms(op_age).min(1e9), deadline_ms });
            }
        }
        if self.state == MotionState::Inserting {
            let gate_age = self.gate.map_or(Nanos(u64::MAX), |(t, _)| now.saturating_sub(t));
            if gate_age > self.cfg.gate_deadline {
                let deadline_ms = ms(self.cfg.gate_deadline);
                self.latch(now, Fault::StaleGate { age_ms: ms(gate_age).min(1e9), deadline_ms });
            } else if !self.gate_open(now) {
                self.transition(now, MotionState::Holding, "respiratory gate closed (RESP-2)");
            } else if !self.pedal_ok() {
                self.transition(now, MotionState::Holding, "operator enable released (INS-2)");
            }
        }
    }
}
