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
use stylet_protocol::{
    ControllerInfo, ControllerState, FaultCode, JointArray, JointSetpoint, Message, Setpoint, Status, MAX_JOINTS,
};

use crate::command::{ActuatorInput, SupervisedCommand};
use crate::config::SafetyConfig;
use crate::fault::{Fault, Reaction};
use crate::state::{Command, MotionState};

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

/// Why a command was refused. The supervisor's state did not change.
#[derive(Clone, Copy, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum Refusal {
    /// {command:?} is not allowed in state {state:?}
    NotInState {
        /// The command.
        command: Command,
        /// The state it was given in.
        state: MotionState,
    },
    /// joints are still moving
    StillMoving,
    /// the needle is {depth_mm:.2} mm in tissue: orientation is frozen (INS-1)
    NeedleInTissue {
        /// Insertion depth.
        depth_mm: f64,
    },
    /// the operator's enable input (pedal) is not held (INS-2)
    PedalNotHeld,
    /// the respiratory gate is closed or its input is stale (RESP-2)
    GateNotOpen,
    /// the operator heartbeat is stale
    OperatorStale,
    /// no fresh controller state
    ControllerStale,
    /// the controller reports e-stop, watchdog or fault: clear the cause first
    ControllerNotClear,
    /// the e-stop circuit is still open
    EStopStillOpen,
    /// joint {joint} measures {value:.4}, outside its hard limits
    OutsideLimits {
        /// Joint index.
        joint: u8,
        /// Measured position.
        value: f64,
    },
    /// a reset is already waiting for the controller to clear its faults
    ResetPending,
}

/// Something the supervisor did, for the log (drained by the runner).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// A state transition.
    Transition {
        /// When.
        at: Nanos,
        /// From.
        from: MotionState,
        /// To.
        to: MotionState,
        /// Why, in words.
        cause: &'static str,
    },
    /// A fault latched.
    FaultLatched {
        /// When.
        at: Nanos,
        /// The fault.
        fault: Fault,
        /// The reaction applied.
        reaction: Reaction,
    },
    /// A second fault while latched that needs the stronger reaction.
    FaultEscalated {
        /// When.
        at: Nanos,
        /// The new fault.
        fault: Fault,
    },
    /// A command was refused.
    Refused {
        /// When.
        at: Nanos,
        /// The command.
        command: Command,
        /// Why.
        reason: Refusal,
    },
    /// The controller refused a frame.
    ControllerNack {
        /// When.
        at: Nanos,
        /// Its type byte.
        msg_type: u8,
        /// The controller's reason code.
        reason: u8,
    },
    /// A controlled stop finished: every joint is still.
    Stopped {
        /// When.
        at: Nanos,
    },
}

/// What one cycle produced (not `Clone`: its command is sent once).
#[derive(Debug, PartialEq)]
pub struct Cycle {
    /// The one command to send this cycle.
    pub command: Option<SupervisedCommand>,
    /// Whether the motion request was taken (admitted or refused); when not, the motion generator
    /// must offer the same sample again next cycle.
    pub consumed: bool,
}

/// A copy of the supervisor's state for displays and tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    /// Motion state.
    pub state: MotionState,
    /// The latched fault, if any.
    pub fault: Option<Fault>,
    /// Whether the supervisor has the drives enabled.
    pub drives_on: bool,
    /// Commanded positions (valid while `drives_on`).
    pub commanded: JointArray<f64>,
    /// Commanded finite-difference velocities.
    pub velocity: JointArray<f64>,
    /// Last measured positions.
    pub measured: JointArray<f64>,
    /// Last controller status bits.
    pub status: Status,
    /// Operator enable input as last reported.
    pub pedal: bool,
    /// Respiratory gate as last reported.
    pub gate_open: bool,
    /// Link errors since start.
    pub link_errors_total: u64,
    /// Cycles stepped.
    pub cycles: u64,
    /// Events lost because the ring was not drained.
    pub events_dropped: u64,
    /// The longest time between two controller states so far, ms (how close the run came to
    /// the HAZ-8 deadline).
    pub max_state_gap_ms: f64,
}

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

    /// Ingests one input from the link, at the cycle's time.
    pub fn handle(&mut self, now: Nanos, input: ActuatorInput) {
        if matches!(input, ActuatorInput::Fault(_) | ActuatorInput::Ack { .. } | ActuatorInput::Nack { .. }) {
            self.frames_since_state = self.frames_since_state.wrapping_add(1);
        }
        match input {
            ActuatorInput::Connected(info) => self.on_connected(now, info),
            ActuatorInput::State { seq, state } => self.on_state(now, seq, &state),
            ActuatorInput::Fault(report) => {
                let fault = match report.code {
                    FaultCode::Watchdog => Fault::ControllerWatchdog,
                    FaultCode::EStop => Fault::EStopInput,
                    FaultCode::Reset => Fault::ControllerReset,
                    code => Fault::ControllerFault { code, joint: report.joint, value: report.value },
                };
                if self.state != MotionState::Disconnected && (self.drives_on || fault.is_estop()) {
                    self.latch(now, fault);
                }
            }
            ActuatorInput::Ack { msg_type } => {
                if self.awaiting_reply.is_some_and(|(t, _)| t == msg_type) {
                    self.awaiting_reply = None;
                }
            }
            ActuatorInput::Nack { msg_type, reason, .. } => {
                // A refusal is a reply too; what it refused is caught by its consequences (e.g.
                // drives that never come on).
                if self.awaiting_reply.is_some_and(|(t, _)| t == msg_type) {
                    self.awaiting_reply = None;
                }
                self.push_event(Event::ControllerNack { at: now, msg_type, reason: reason as u8 });
                self.count_link_errors(now, 1);
            }
            ActuatorInput::LinkError => self.count_link_errors(now, 1),
            ActuatorInput::Disconnected => {
                if self.drives_on {
                    let age = self.state_at.map_or(0.0, |t| now.saturating_sub(t).as_secs_f64() * 1e3);
                    self.latch(
                        now,
                        Fault::StaleControllerState {
                            age_ms: age,
                            deadline_ms: self.cfg.controller_state_deadline.as_secs_f64() * 1e3,
                        },
                    );
                }
            }
        }
    }

    fn on_connected(&mut self, now: Nanos, info: ControllerInfo) {
        if self.state != MotionState::Disconnected {
            // The controller said hello again: it restarted under us.
            self.latch(now, Fault::ControllerReset);
            return;
        }
        self.controller = Some(info);
        self.connected_at = now;
        if usize::from(info.joint_count) != self.n {
            self.transition(now, MotionState::Connected, "handshake");
            self.latch(now, Fault::JointCountMismatch { controller: info.joint_count, config: self.n as u8 });
            return;
        }
        self.transition(now, MotionState::Connected, "handshake");
    }

    fn count_link_errors(&mut self, now: Nanos, k: u32) {
        if now.saturating_sub(self.link_window_start) > self.cfg.link_window {
            self.link_window_start = now;
            self.link_errors = 0;
        }
        self.link_errors = self.link_errors.saturating_add(k);
        self.link_errors_total += u64::from(k);
        if self.link_errors > self.cfg.link_max_errors && self.state != MotionState::Disconnected {
            self.latch(now, Fault::LinkErrors { count: self.link_errors, limit: self.cfg.link_max_errors });
        }
    }

    fn on_state(&mut self, now: Nanos, seq: u16, s: &ControllerState) {
        if s.joints.len() != self.n {
            self.latch(now, Fault::JointCountMismatch { controller: s.joints.len() as u8, config: self.n as u8 });
            return;
        }
        if let Some(prev) = self.state_seq {
            // What the controller numbered and the host did not receive between two states.
            let gap = seq.wrapping_sub(prev).wrapping_sub(1).wrapping_sub(self.frames_since_state);
            if gap > 0 && gap < u16::MAX / 2 {
                if gap > self.cfg.link_max_sequence_gap {
                    self.latch(now, Fault::SequenceGap { gap, limit: self.cfg.link_max_sequence_gap });
                }
                self.count_link_errors(now, 1);
            }
        }
        self.state_seq = Some(seq);
        self.frames_since_state = 0;
        if self.state_at.is_some() && s.controller_time_us < self.controller_time_us {
            self.latch(now, Fault::ControllerReset);
        }
        // How long the joint had to move between the two measurements: the controller's own
        // clock between them (exact, whatever the transport did to their arrival), else the
        // time between their arrivals. Arrival times alone made a burst of states delayed in
        // the kernel's serial path look like an encoder jump (HAZ-7) in CI.
        let by_controller = (self.state_at.is_some() && s.controller_time_us > self.controller_time_us)
            .then(|| (s.controller_time_us - self.controller_time_us) as f64 * 1e-6);
        self.controller_time_us = s.controller_time_us;
        let since = by_controller.unwrap_or_else(|| self.state_at.map_or(0.0, |t| now.saturating_sub(t).as_secs_f64()));
        if let Some(t) = self.state_at {
            self.max_state_gap = self.max_state_gap.max(now.saturating_sub(t));
        }
        for i in 0..self.n {
            let l = self.limits[i];
            let p = s.joints.as_slice()[i].position;
            if self.measured_valid {
                let jump = (p - self.measured[i]).abs();
                let limit = l.vmax * (since + self.dt) * 1.5 + l.jump;
                if jump > limit {
                    self.latch(now, Fault::EncoderJump { joint: i as u8, jump, limit });
                }
            }
            self.measured[i] = p;
            let current = f64::from(s.joints.as_slice()[i].current_a).abs();
            if current > l.current_a {
                self.overcurrent[i] += 1;
                if self.overcurrent[i] >= self.cfg.overcurrent_states && self.drives_on {
                    self.latch(
                        now,
                        Fault::OverCurrent {
                            joint: i as u8,
                            current_a: current,
                            limit_a: l.current_a,
                            states: self.overcurrent[i],
                        },
                    );
                }
            } else {
                self.overcurrent[i] = 0;
            }
        }
        self.measured_valid = true;
        self.state_at = Some(now);
        self.status = s.status;
        self.status_joint_faults = s.joint_faults;
        if s.status.has(Status::ESTOP_INPUT) {
            self.latch(now, Fault::EStopInput);
        }
        if self.drives_on {
            if s.status.has(Status::WATCHDOG_TRIPPED) {
                self.latch(now, Fault::ControllerWatchdog);
            } else if s.status.has(Status::FAULT) || s.joint_faults != 0 {
                let joint = (0..16).find(|b| s.joint_faults & (1 << b) != 0).unwrap_or(0xFF) as u8;
                self.latch(now, Fault::ControllerFault { code: FaultCode::Internal, joint, value: 0.0 });
            } else if s.status.has(Status::DRIVES_ENABLED) {
                self.drives_seen_enabled = true;
            } else if self.drives_seen_enabled || now.saturating_sub(self.enabled_at) > ENABLE_GRACE {
                self.latch(now, Fault::DrivesDropped);
            }
        }
        if self.drives_on && self.drives_seen_enabled {
            for i in 0..self.n {
                let error = self.q[i] - self.measured[i];
                if error.abs() > self.limits[i].following {
                    self.latch(now, Fault::FollowingError { joint: i as u8, error, limit: self.limits[i].following });
                    break;
                }
            }
        }
    }
}

impl Supervisor {
    /// Applies an operator or workflow command, or refuses it (the state is then unchanged; the
    /// refusal is also logged as an event).
    ///
    /// # Errors
    /// The [`Refusal`].
    pub fn command(&mut self, now: Nanos, command: Command) -> Result<(), Refusal> {
        let r = self.try_command(now, command);
        if let Err(reason) = r {
            self.push_event(Event::Refused { at: now, command, reason });
        }
        r
    }

    fn try_command(&mut self, now: Nanos, command: Command) -> Result<(), Refusal> {
        use MotionState as S;
        let not_in_state = Refusal::NotInState { command, state: self.state };
        let controller_fresh = Self::fresh(self.state_at, now, self.cfg.controller_state_deadline);
        let operator_fresh = Self::fresh(self.operator_at, now, self.cfg.operator_deadline);
        match command {
            Command::StartHoming => {
                if self.state != S::Connected {
                    return Err(not_in_state);
                }
                if !controller_fresh {
                    return Err(Refusal::ControllerStale);
                }
                if !operator_fresh {
                    return Err(Refusal::OperatorStale);
                }
                if !self.controller_clear() {
                    return Err(Refusal::ControllerNotClear);
                }
                for i in 0..self.n {
                    let l = self.limits[i];
                    let m = self.measured[i];
                    if !(l.lo..=l.hi).contains(&m) {
                        self.latch(now, Fault::OutsideLimitsOnEnable { joint: i as u8, value: m });
                        return Err(Refusal::OutsideLimits { joint: i as u8, value: m });
                    }
                }
                self.q = self.measured;
                self.v = [0.0; MAX_JOINTS];
                self.a = [0.0; MAX_JOINTS];
                self.drives_on = true;
                self.drives_seen_enabled = false;
                self.enabled_at = now;
                self.pending = Some(Message::Enable { watchdog_ms: self.cfg.controller_watchdog_ms });
                self.transition(now, S::Homing, "start homing");
            }
            Command::Complete => {
                let to = match self.state {
                    S::Homing | S::Retracting => S::Idle,
                    S::Aligning => S::Aligned,
                    S::Inserting => S::AtTarget,
                    _ => return Err(not_in_state),
                };
                if !self.is_still() {
                    return Err(Refusal::StillMoving);
                }
                self.transition(now, to, "motion complete");
            }
            Command::BeginAlign => {
                if !matches!(self.state, S::Idle | S::Aligned) {
                    return Err(not_in_state);
                }
                let depth_mm = self.depth_mm();
                if depth_mm > self.cfg.in_tissue_depth_mm {
                    return Err(Refusal::NeedleInTissue { depth_mm });
                }
                self.transition(now, S::Aligning, "begin alignment");
            }
            Command::BeginInsert | Command::Resume => {
                let from_ok = match command {
                    Command::BeginInsert => self.state == S::Aligned,
                    _ => self.state == S::Holding,
                };
                if !from_ok {
                    return Err(not_in_state);
                }
                if !self.is_still() {
                    return Err(Refusal::StillMoving);
                }
                if !self.pedal_ok() {
                    return Err(Refusal::PedalNotHeld);
                }
                if !self.gate_open(now) {
                    return Err(Refusal::GateNotOpen);
                }
                if !operator_fresh {
                    return Err(Refusal::OperatorStale);
                }
                self.transition(
                    now,
                    S::Inserting,
                    if command == Command::Resume { "resume" } else { "begin insertion" },
                );
            }
            Command::Hold => {
                if self.state != S::Inserting {
                    return Err(not_in_state);
                }
                self.transition(now, S::Holding, "operator hold");
            }
            Command::BeginRetract => {
                if !matches!(self.state, S::Aligned | S::Inserting | S::Holding | S::AtTarget) {
                    return Err(not_in_state);
                }
                self.transition(now, S::Retracting, "begin retraction");
            }
            Command::DisableDrives => {
                if !matches!(self.state, S::Idle | S::Aligned) {
                    return Err(not_in_state);
                }
                if !self.is_still() {
                    return Err(Refusal::StillMoving);
                }
                self.pending = Some(Message::Disable);
                self.drives_on = false;
                self.transition(now, S::Connected, "drives disabled");
            }
            Command::Reset => {
                if !matches!(self.state, S::Fault | S::EStop) {
                    return Err(not_in_state);
                }
                if self.reset_since.is_some() {
                    return Err(Refusal::ResetPending);
                }
                if !self.is_still() {
                    return Err(Refusal::StillMoving);
                }
                if !controller_fresh {
                    return Err(Refusal::ControllerStale);
                }
                if self.status.has(Status::ESTOP_INPUT) {
                    return Err(Refusal::EStopStillOpen);
                }
                if !operator_fresh {
                    return Err(Refusal::OperatorStale);
                }
                if self.controller_clear() {
                    self.finish_reset(now);
                } else {
                    // Ask the controller to clear its latches; finish when its status is clean.
                    self.pending = Some(Message::ResetFaults);
                    self.reset_since = Some(now);
                }
            }
        }
        Ok(())
    }

    fn finish_reset(&mut self, now: Nanos) {
        self.fault = None;
        self.reaction = None;
        self.reset_since = None;
        self.link_errors = 0;
        self.link_window_start = now;
        self.overcurrent = [0; MAX_JOINTS];
        let to = if !self.drives_on {
            MotionState::Connected
        } else if self.depth_mm() > self.cfg.in_tissue_depth_mm {
            MotionState::Holding
        } else {
            MotionState::Idle
        };
        self.transition(now, to, "operator reset");
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

    /// Checks a request against every limit and interlock; on success it becomes the command.
    fn admit(&mut self, _now: Nanos, r: &[JointSetpoint]) -> Result<(), Fault> {
        let n = self.n;
        if r.len() != n {
            return Err(Fault::BadRequest { got: r.len().min(255) as u8, want: n as u8 });
        }
        let dt = self.dt;
        let mut v_new = [0.0; MAX_JOINTS];
        let mut a_new = [0.0; MAX_JOINTS];
        let mut orientation_moves = None;
        let mut insertion_delta = 0.0;
        for i in 0..n {
            let l = self.limits[i];
            let q = r[i].position;
            let ff = f64::from(r[i].velocity);
            let j = i as u8;
            if !q.is_finite() || !ff.is_finite() {
                return Err(Fault::BadRequest { got: n as u8, want: n as u8 });
            }
            let delta = q - self.q[i];
            // Any change at all is motion: the interlocks take no tolerance.
            let moves = delta != 0.0;
            if moves {
                if l.orientation {
                    orientation_moves.get_or_insert(j);
                } else {
                    insertion_delta = delta;
                }
            }
            let depth_stop = self.depth_bound && self.ins == Some(i);
            // Soft stops: a moving joint must be inside them, or moving back towards them.
            if moves && q > l.soft_hi && q >= self.q[i] {
                if depth_stop {
                    return Err(Fault::InsertionDepth { depth_mm: q, limit_mm: l.soft_hi });
                }
                return Err(Fault::PositionLimit { joint: j, value: q, limit: l.soft_hi });
            }
            if moves && q < l.soft_lo && q <= self.q[i] {
                return Err(Fault::PositionLimit { joint: j, value: q, limit: l.soft_lo });
            }
            let v = delta / dt;
            if v.abs() > l.vmax {
                return Err(Fault::VelocityLimit { joint: j, value: v, limit: l.vmax });
            }
            if ff.abs() > l.vmax {
                return Err(Fault::VelocityLimit { joint: j, value: ff, limit: l.vmax });
            }
            // Braking condition: from here a stop at a_stop ends before the soft stop.
            let room = if v > 0.0 { l.soft_hi - q } else { q - l.soft_lo };
            if v != 0.0 {
                let v_ok = (2.0 * l.a_stop * (room + BRAKING_NOISE).max(0.0)).sqrt();
                if v.abs() > v_ok {
                    if depth_stop && v > 0.0 {
                        let depth_mm = q + v * v / (2.0 * l.a_stop);
                        return Err(Fault::InsertionDepth { depth_mm, limit_mm: l.soft_hi });
                    }
                    return Err(Fault::SoftStopApproach { joint: j, value: v, limit: v_ok });
                }
            }
            let a = (v - self.v[i]) / dt;
            if a.abs() > l.amax {
                return Err(Fault::AccelerationLimit { joint: j, value: a, limit: l.amax });
            }
            let jerk = (a - self.a[i]) / dt;
            if jerk.abs() > l.jmax {
                return Err(Fault::JerkLimit { joint: j, value: jerk, limit: l.jmax });
            }
            v_new[i] = v;
            a_new[i] = a;
        }
        // Interlocks.
        let inserting = insertion_delta != 0.0;
        if let (Some(_), true) = (orientation_moves, inserting) {
            return Err(Fault::OrientationWithInsertion);
        }
        if let Some(joint) = orientation_moves {
            let depth_mm = self.depth_mm();
            if depth_mm > self.cfg.in_tissue_depth_mm {
                return Err(Fault::OrientationInTissue { joint, depth_mm });
            }
            if !matches!(self.state, MotionState::Homing | MotionState::Aligning) {
                return Err(Fault::MotionNotAllowed { joint });
            }
        }
        if let (true, Some(i)) = (inserting, self.ins) {
            let joint = i as u8;
            let advancing = insertion_delta > 0.0;
            let allowed = match self.state {
                MotionState::Inserting => true,
                // Homing may bring the needle back, or forward to a home that is still outside
                // the body.
                MotionState::Homing => !advancing || r[i].position <= self.cfg.in_tissue_depth_mm,
                MotionState::Retracting => !advancing,
                _ => false,
            };
            if !allowed {
                return Err(Fault::MotionNotAllowed { joint });
            }
        }
        for (q, sp) in self.q.iter_mut().zip(r) {
            *q = sp.position;
        }
        self.v = v_new;
        self.a = a_new;
        self.was_moving = !self.is_still();
        Ok(())
    }

    /// One cycle of a controlled stop for every moving joint (holds the still ones).
    fn ramp_down(&mut self, now: Nanos) {
        let dt = self.dt;
        for i in 0..self.n {
            let v = self.v[i];
            if v == 0.0 {
                self.a[i] = 0.0;
                continue;
            }
            let dv = (self.limits[i].a_stop * dt).min(v.abs());
            let v_next = if dv >= v.abs() { 0.0 } else { v - dv.copysign(v) };
            self.a[i] = (v_next - v) / dt;
            self.v[i] = v_next;
            self.q[i] += v_next * dt;
        }
        if self.was_moving && self.is_still() {
            self.was_moving = false;
            self.push_event(Event::Stopped { at: now });
        }
    }

    fn setpoint(&self, now: Nanos) -> SupervisedCommand {
        let joints = JointArray::from_fn(self.n, |i| JointSetpoint { position: self.q[i], velocity: self.v[i] as f32 })
            .unwrap_or_default();
        SupervisedCommand::new(Message::Setpoint(Setpoint { host_time_us: now.as_micros(), joints }))
    }
}
