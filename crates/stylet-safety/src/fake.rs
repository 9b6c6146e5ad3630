//! A fake controller behind the real [`Actuator`] trait, for unit tests of the supervisor and of
//! code above it (the probe-rs FakeProbe idea). It follows setpoints perfectly, keeps the
//! controller's latches (watchdog, e-stop) and lets a test inject any fault. Everything that
//! crosses the wire is tested against the simulated controller on a pty instead.

use std::collections::VecDeque;

use stylet_protocol::{
    ControllerInfo, ControllerState, FaultReport, JointArray, JointState, Message, Status, PROTOCOL_VERSION,
};

use crate::command::{Actuator, ActuatorInput, SupervisedCommand};

/// The fake controller's state and the knobs a test turns.
#[derive(Debug)]
pub struct FakeActuator {
    /// Every command the supervisor sent, in order.
    pub sent: Vec<SupervisedCommand>,
    /// Inputs queued for the next poll, in addition to the state the fake reports itself.
    pub inputs: VecDeque<ActuatorInput>,
    /// Joint positions the fake reports.
    pub positions: Vec<f64>,
    /// Motor currents the fake reports.
    pub currents: Vec<f32>,
    /// Joints that ignore setpoints (stuck).
    pub stuck: Vec<bool>,
    /// Drives enabled.
    pub drives: bool,
    /// Pedal held.
    pub pedal: bool,
    /// E-stop circuit open.
    pub estop: bool,
    /// Latched watchdog trip.
    pub watchdog_tripped: bool,
    /// Latched controller fault bits.
    pub joint_faults: u16,
    /// Whether the fake reports a state on each poll (false: silent controller).
    pub reporting: bool,
    /// Whether the fake acknowledges Enable, Disable, EStop and ResetFaults (false: lost replies).
    pub acking: bool,
    /// Controller time reported, microseconds (a test may set it back to fake a reset).
    pub controller_time_us: u64,
    seq: u16,
    connected_sent: bool,
}

impl FakeActuator {
    /// A fake controller with joints at `positions`, drives off, pedal held, reporting.
    #[must_use]
    pub fn new(positions: Vec<f64>) -> Self {
        let n = positions.len();
        FakeActuator {
            sent: Vec::new(),
            inputs: VecDeque::new(),
            currents: vec![0.0; n],
            stuck: vec![false; n],
            positions,
            drives: false,
            pedal: true,
            estop: false,
            watchdog_tripped: false,
            joint_faults: 0,
            reporting: true,
            acking: true,
            controller_time_us: 1,
            seq: 0,
            connected_sent: false,
        }
    }

    /// The setpoints sent, as positions.
    #[must_use]
    pub fn setpoints(&self) -> Vec<(u64, Vec<f64>, Vec<f32>)> {
        self.sent
            .iter()
            .filter_map(|c| match c.message() {
                Message::Setpoint(s) => Some((
                    s.host_time_us,
                    s.joints.as_slice().iter().map(|j| j.position).collect(),
                    s.joints.as_slice().iter().map(|j| j.velocity).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Queues a controller fault report.
    pub fn report_fault(&mut self, report: FaultReport) {
        self.inputs.push_back(ActuatorInput::Fault(report));
    }
}

impl Actuator for FakeActuator {
    fn send(&mut self, command: SupervisedCommand) {
        let m = *command.message();
        if self.acking && matches!(m, Message::Enable { .. } | Message::Disable | Message::EStop | Message::ResetFaults)
        {
            self.inputs.push_back(ActuatorInput::Ack { msg_type: m.message_type() as u8 });
        }
        match m {
            Message::Enable { .. } if !self.estop && !self.watchdog_tripped => self.drives = true,
            Message::Disable | Message::EStop => self.drives = false,
            Message::ResetFaults if !self.estop => {
                self.watchdog_tripped = false;
                self.joint_faults = 0;
            }
            Message::Setpoint(s) if self.drives => {
                for (i, j) in s.joints.as_slice().iter().enumerate() {
                    if !self.stuck.get(i).copied().unwrap_or(false) {
                        if let Some(p) = self.positions.get_mut(i) {
                            *p = j.position;
                        }
                    }
                }
            }
            _ => {}
        }
        self.sent.push(command);
    }

    fn poll(&mut self, sink: &mut dyn FnMut(ActuatorInput)) {
        if !self.connected_sent {
            self.connected_sent = true;
            sink(ActuatorInput::Connected(ControllerInfo {
                protocol_version: PROTOCOL_VERSION,
                controller_id: 1,
                joint_count: self.positions.len() as u8,
                firmware: [0, 1, 0],
            }));
        }
        while let Some(i) = self.inputs.pop_front() {
            sink(i);
        }
        if !self.reporting {
            return;
        }
        if self.estop {
            self.drives = false;
        }
        let mut bits = 0;
        if self.drives {
            bits |= Status::DRIVES_ENABLED;
        } else {
            bits |= Status::BRAKE_ENGAGED;
        }
        if self.pedal {
            bits |= Status::PEDAL_INPUT;
        }
        if self.estop {
            bits |= Status::ESTOP_INPUT;
        }
        if self.watchdog_tripped {
            bits |= Status::WATCHDOG_TRIPPED;
        }
        let joints = JointArray::from_fn(self.positions.len(), |i| JointState {
            position: self.positions[i],
            velocity: 0.0,
            current_a: self.currents.get(i).copied().unwrap_or(0.0),
        })
        .unwrap_or_default();
        self.controller_time_us += 1000;
        self.seq = self.seq.wrapping_add(1);
        sink(ActuatorInput::State {
            seq: self.seq,
            state: ControllerState {
                controller_time_us: self.controller_time_us,
                last_setpoint_seq: 0,
                status: Status(bits),
                joint_faults: self.joint_faults,
                joints,
            },
        });
    }
}
