//! The controller model: joint dynamics, encoder, current, the watchdog, the latches, and fault
//! injection. Pure: every call takes the time in seconds since the controller booted.

use std::collections::VecDeque;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stylet_core::config::{JointKind, RobotConfig};
use stylet_protocol::{
    ControllerInfo, ControllerState, FaultCode, FaultReport, JointArray, JointState, Message, MessageType, NackReason,
    Setpoint, Status, PROTOCOL_VERSION,
};

use crate::config::SimConfig;
use crate::faults::{FaultKind, FaultSpec};
use crate::monitor::WireMonitor;

#[derive(Clone, Debug, Default)]
struct Joint {
    q: f64,
    v: f64,
    a: f64,
    target: f64,
    target_v: f64,
    stuck: bool,
    encoder_offset: f64,
    overcurrent: bool,
}

/// What the controller does to a frame it received, decided by the injected faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Normal.
    Up,
    /// Silent: frames neither read nor written.
    Down,
}

/// The simulated controller.
#[derive(Debug)]
pub struct Controller {
    cfg: SimConfig,
    robot: RobotConfig,
    joints: Vec<Joint>,
    greeted: bool,
    drives: bool,
    estop_input: bool,
    estop_latched: bool,
    pedal: bool,
    watchdog_tripped: bool,
    watchdog_s: f64,
    last_valid_rx: f64,
    booted_at: f64,
    last_setpoint_seq: u16,
    queue: VecDeque<(f64, Setpoint)>,
    clock_offset: Option<f64>,
    enabled_once_at: Option<f64>,
    pending_faults: Vec<FaultSpec>,
    drop_p: f64,
    corrupt_p: f64,
    delay_s: f64,
    down_until: f64,
    next_state_at: f64,
    last_step: f64,
    rng: SmallRng,
    monitor: WireMonitor,
    nacks: u64,
}

impl Controller {
    /// A controller at the robot's home pose, drives off, brakes on, pedal held.
    #[must_use]
    pub fn new(cfg: SimConfig, robot: RobotConfig, monitor: WireMonitor) -> Self {
        let joints = robot.joints.iter().map(|j| Joint { q: j.home, target: j.home, ..Joint::default() }).collect();
        Controller {
            rng: SmallRng::seed_from_u64(cfg.seed),
            pending_faults: cfg.faults.clone(),
            cfg,
            robot,
            joints,
            greeted: false,
            drives: false,
            estop_input: false,
            estop_latched: false,
            pedal: true,
            watchdog_tripped: false,
            watchdog_s: 0.02,
            last_valid_rx: 0.0,
            booted_at: 0.0,
            last_setpoint_seq: 0,
            queue: VecDeque::new(),
            clock_offset: None,
            enabled_once_at: None,
            drop_p: 0.0,
            corrupt_p: 0.0,
            delay_s: 0.0,
            down_until: f64::NEG_INFINITY,
            next_state_at: 0.0,
            last_step: 0.0,
            monitor,
            nacks: 0,
        }
    }

    /// The wire monitor.
    #[must_use]
    pub fn monitor(&self) -> &WireMonitor {
        &self.monitor
    }

    /// Adds a fault to inject.
    pub fn inject(&mut self, f: FaultSpec) {
        self.pending_faults.push(f);
    }

    /// Measured joint positions (with encoder offset, before quantisation).
    #[must_use]
    pub fn positions(&self) -> Vec<f64> {
        self.joints.iter().map(|j| j.q).collect()
    }

    /// Whether drives are on.
    #[must_use]
    pub fn drives(&self) -> bool {
        self.drives
    }

    /// Refused frames so far.
    #[must_use]
    pub fn nacks(&self) -> u64 {
        self.nacks
    }

    /// Whether the link is up at `now`.
    #[must_use]
    pub fn link(&self, now: f64) -> Link {
        if now < self.down_until {
            Link::Down
        } else {
            Link::Up
        }
    }

    /// Whether this received frame is lost (drop injection).
    pub fn drops_frame(&mut self) -> bool {
        self.drop_p > 0.0 && self.rng.gen_bool(self.drop_p)
    }

    /// Whether this sent frame gets corrupted (corrupt injection).
    pub fn corrupts_frame(&mut self) -> bool {
        self.corrupt_p > 0.0 && self.rng.gen_bool(self.corrupt_p)
    }

    /// Index of the byte to flip in a frame of `len` bytes.
    pub fn corrupt_index(&mut self, len: usize) -> usize {
        self.rng.gen_range(0..len.max(1))
    }

    /// Extra delay on sent frames, seconds.
    #[must_use]
    pub fn send_delay_s(&self) -> f64 {
        self.delay_s
    }

    fn nack(&mut self, seq: u16, t: MessageType, reason: NackReason) -> Message {
        self.nacks += 1;
        Message::Nack { seq, msg_type: t as u8, reason }
    }

    fn disable(&mut self) {
        if self.drives {
            self.monitor.break_continuity();
        }
        self.drives = false;
        self.queue.clear();
        self.clock_offset = None;
        for j in &mut self.joints {
            j.v = 0.0;
            j.a = 0.0;
        }
    }

    /// Handles one received frame; returns the answers to send.
    pub fn handle(&mut self, now: f64, seq: u16, message: &Message) -> Vec<Message> {
        let mut out = Vec::new();
        match *message {
            Message::Hello { protocol_version, .. } => {
                if protocol_version != PROTOCOL_VERSION {
                    out.push(self.nack(seq, MessageType::Hello, NackReason::Version));
                } else {
                    self.greeted = true;
                    out.push(Message::HelloAck(ControllerInfo {
                        protocol_version: PROTOCOL_VERSION,
                        controller_id: self.cfg.controller_id,
                        joint_count: self.joints.len() as u8,
                        firmware: self.cfg.firmware,
                    }));
                }
            }
            Message::Enable { watchdog_ms } => {
                if self.estop_input || self.estop_latched {
                    out.push(self.nack(seq, MessageType::Enable, NackReason::EStopActive));
                } else if self.watchdog_tripped {
                    out.push(self.nack(seq, MessageType::Enable, NackReason::WatchdogTripped));
                } else {
                    self.drives = true;
                    self.monitor.break_continuity();
                    self.watchdog_s = f64::from(watchdog_ms.max(1)) * 1e-3;
                    self.last_valid_rx = now;
                    for j in &mut self.joints {
                        j.target = j.q;
                        j.target_v = 0.0;
                    }
                    self.enabled_once_at.get_or_insert(now);
                    out.push(Message::Ack { seq, msg_type: MessageType::Enable as u8 });
                }
            }
            Message::Disable => {
                self.disable();
                self.last_valid_rx = now;
                out.push(Message::Ack { seq, msg_type: MessageType::Disable as u8 });
            }
            Message::EStop => {
                self.disable();
                self.estop_latched = true;
                out.push(Message::Ack { seq, msg_type: MessageType::EStop as u8 });
            }
            Message::ResetFaults => {
                if self.estop_input {
                    out.push(self.nack(seq, MessageType::ResetFaults, NackReason::EStopActive));
                } else {
                    self.watchdog_tripped = false;
                    self.estop_latched = false;
                    out.push(Message::Ack { seq, msg_type: MessageType::ResetFaults as u8 });
                }
            }
            Message::Heartbeat { .. } => self.last_valid_rx = now,
            Message::Setpoint(s) => {
                // Every setpoint that reaches the controller is checked, whatever the state.
                self.monitor.check(&s);
                if s.joints.len() != self.joints.len() {
                    out.push(self.nack(seq, MessageType::Setpoint, NackReason::JointCount));
                } else if !self.drives {
                    out.push(self.nack(seq, MessageType::Setpoint, NackReason::BadState));
                } else if s
                    .joints
                    .as_slice()
                    .iter()
                    .zip(&self.robot.joints)
                    .any(|(j, l)| j.position < l.min || j.position > l.max)
                {
                    // The controller's own joint limits: refuse, keep the last setpoint.
                    self.last_valid_rx = now;
                    out.push(self.nack(seq, MessageType::Setpoint, NackReason::OutOfRange));
                } else {
                    self.last_valid_rx = now;
                    self.last_setpoint_seq = seq;
                    // Play setpoints out by their host timestamps, `latency` after the fastest
                    // transit seen, as drives with a jitter buffer do: a host cycle that ran late
                    // and caught up does not become a step in the target.
                    let host_s = s.host_time_us as f64 * 1e-6;
                    let offset = self.clock_offset.map_or(now - host_s, |o: f64| o.min(now - host_s));
                    self.clock_offset = Some(offset);
                    let at = (host_s + offset + self.cfg.latency_s).max(self.queue.back().map_or(0.0, |(t, _)| *t));
                    self.queue.push_back((at, s));
                }
            }
            // Controller-to-host messages sent to the controller are ignored.
            Message::HelloAck(_)
            | Message::State(_)
            | Message::Fault(_)
            | Message::Ack { .. }
            | Message::Nack { .. } => {}
        }
        out
    }

    fn fire_faults(&mut self, now: f64, out: &mut Vec<Message>) {
        let Some(t0) = self.enabled_once_at else {
            return;
        };
        let due: Vec<FaultSpec> = {
            let (due, keep): (Vec<_>, Vec<_>) = self.pending_faults.iter().partition(|f| now - t0 >= f.at_s);
            self.pending_faults = keep;
            due
        };
        for f in due {
            match f.kind {
                FaultKind::Drop(p) => self.drop_p = p,
                FaultKind::Corrupt(p) => self.corrupt_p = p,
                FaultKind::Delay(ms) => self.delay_s = ms * 1e-3,
                FaultKind::Disconnect(s) => self.down_until = now + s,
                FaultKind::Reset => {
                    self.disable();
                    self.booted_at = now;
                    self.next_state_at = now;
                    out.push(Message::Fault(FaultReport { code: FaultCode::Reset, joint: 0xFF, value: 0.0 }));
                }
                FaultKind::Stuck(j) => {
                    if let Some(j) = self.joints.get_mut(j) {
                        j.stuck = true;
                    }
                }
                FaultKind::EncoderJump(j, d) => {
                    if let Some(j) = self.joints.get_mut(j) {
                        j.encoder_offset += d;
                    }
                }
                FaultKind::OverCurrent(j) => {
                    if let Some(j) = self.joints.get_mut(j) {
                        j.overcurrent = true;
                    }
                }
                FaultKind::EStop => {
                    self.estop_input = true;
                    self.disable();
                    out.push(Message::Fault(FaultReport { code: FaultCode::EStop, joint: 0xFF, value: 0.0 }));
                }
                FaultKind::EStopRelease => self.estop_input = false,
                FaultKind::PedalRelease => self.pedal = false,
                FaultKind::PedalPress => self.pedal = true,
            }
        }
    }

    /// The simulation itself did not run for `gap_s` seconds (its thread was not scheduled, or
    /// the machine was paused): real hardware would have kept listening, so the watchdog does
    /// not count that time against the host. Only the serving loop calls this, on a gap in its
    /// own iterations; a host that stops sending while the simulator runs still trips it.
    pub fn frozen(&mut self, gap_s: f64) {
        if gap_s > 0.0 {
            self.last_valid_rx += gap_s;
        }
    }

    /// Advances the model to `now`; returns what to send (the periodic state among it).
    pub fn step(&mut self, now: f64) -> Vec<Message> {
        let mut out = Vec::new();
        self.fire_faults(now, &mut out);
        if self.drives && now - self.last_valid_rx > self.watchdog_s {
            self.disable();
            self.watchdog_tripped = true;
            out.push(Message::Fault(FaultReport {
                code: FaultCode::Watchdog,
                joint: 0xFF,
                value: ((now - self.last_valid_rx) * 1e3) as f32,
            }));
        }
        while let Some((at, s)) = self.queue.front().copied() {
            if at > now {
                break;
            }
            self.queue.pop_front();
            for (j, sp) in self.joints.iter_mut().zip(s.joints.as_slice()) {
                j.target = sp.position;
                j.target_v = f64::from(sp.velocity);
            }
        }
        // Dynamics in 0.25 ms substeps: critically damped second-order servo.
        let w = 2.0 * std::f64::consts::PI * self.cfg.servo_bandwidth_hz;
        let h = 0.000_25;
        let mut t = self.last_step;
        while t + h <= now {
            t += h;
            for (j, spec) in self.joints.iter_mut().zip(&self.robot.joints) {
                if !self.drives || j.stuck {
                    j.v = 0.0;
                    j.a = 0.0;
                    continue;
                }
                let a = w * w * (j.target - j.q) + 2.0 * w * (j.target_v - j.v);
                // The drive saturates just below its current limit: a setpoint arriving late
                // (host jitter) makes the servo catch up at that torque, it does not draw more.
                let a_max = 0.95 * spec.max_acceleration / self.cfg.current_fraction_at_acceleration_limit.max(0.05);
                let a = a.clamp(-a_max, a_max);
                j.a = a;
                j.v += a * h;
                j.q += j.v * h;
            }
        }
        self.last_step = t;
        if self.greeted && now >= self.next_state_at {
            self.next_state_at = now + self.cfg.state_period_s;
            out.push(Message::State(self.state(now)));
        }
        out
    }

    fn state(&mut self, now: f64) -> ControllerState {
        let mut bits = 0;
        if self.drives {
            bits |= Status::DRIVES_ENABLED;
        } else {
            bits |= Status::BRAKE_ENGAGED;
        }
        if self.estop_input {
            bits |= Status::ESTOP_INPUT;
        }
        if self.pedal {
            bits |= Status::PEDAL_INPUT;
        }
        if self.watchdog_tripped {
            bits |= Status::WATCHDOG_TRIPPED;
        }
        if self.estop_latched {
            bits |= Status::FAULT;
        }
        let mut joints = Vec::with_capacity(self.joints.len());
        for (j, spec) in self.joints.iter().zip(&self.robot.joints) {
            let counts_per_unit = match spec.kind {
                JointKind::Revolute => self.cfg.counts_per_rev / std::f64::consts::TAU,
                JointKind::Prismatic => self.cfg.counts_per_mm,
            };
            let noise = gaussian(&mut self.rng) * self.cfg.encoder_noise_counts;
            let counts = ((j.q + j.encoder_offset) * counts_per_unit + noise).round();
            let mut current = spec.max_current_a * self.cfg.current_fraction_at_acceleration_limit * j.a
                / spec.max_acceleration
                + gaussian(&mut self.rng) * self.cfg.current_noise_a;
            if j.overcurrent {
                current = 3.0 * spec.max_current_a;
            }
            joints.push(JointState {
                position: counts / counts_per_unit,
                velocity: j.v as f32,
                current_a: current as f32,
            });
        }
        ControllerState {
            controller_time_us: ((now - self.booted_at).max(0.0) * 1e6) as u64,
            last_setpoint_seq: self.last_setpoint_seq,
            status: Status(bits),
            joint_faults: 0,
            joints: JointArray::from_slice(&joints).unwrap_or_default(),
        }
    }
}

/// A standard normal sample (Box-Muller).
fn gaussian(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
