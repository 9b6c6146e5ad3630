//! What crosses the supervisor's boundary: the command only it can make, and the actuator port
//! it decorates.

use stylet_protocol::{ControllerInfo, ControllerState, FaultReport, Message, NackReason};

/// A message the link may send to the controller. Its field is private and it has no public
/// constructor: only the supervisor in this crate makes one, so a command that skipped the
/// checks does not compile.
///
/// ```compile_fail
/// use stylet_protocol::Message;
/// let cmd = stylet_safety::SupervisedCommand { message: Message::Disable };
/// ```
///
/// It is neither `Copy` nor `Clone`: the actuator that takes one cannot send it twice (a stale
/// setpoint replayed after the supervisor moved on).
///
/// ```compile_fail
/// fn replay(c: stylet_safety::SupervisedCommand) -> (stylet_safety::SupervisedCommand, stylet_safety::SupervisedCommand) {
///     (c.clone(), c)
/// }
/// ```
///
/// ```compile_fail
/// fn twice(c: stylet_safety::SupervisedCommand, a: &mut dyn stylet_safety::Actuator) {
///     a.send(c);
///     a.send(c);
/// }
/// ```
#[derive(Debug, PartialEq)]
pub struct SupervisedCommand {
    message: Message,
}

impl SupervisedCommand {
    pub(crate) fn new(message: Message) -> Self {
        SupervisedCommand { message }
    }

    /// The message to encode.
    #[must_use]
    pub fn message(&self) -> &Message {
        &self.message
    }
}

/// What the link reports to the supervisor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActuatorInput {
    /// The controller answered the handshake.
    Connected(ControllerInfo),
    /// A controller state frame arrived.
    State {
        /// Sequence number of the frame.
        seq: u16,
        /// The state.
        state: ControllerState,
    },
    /// The controller reported a fault.
    Fault(FaultReport),
    /// The controller accepted a command frame (Enable, Disable, EStop, ResetFaults).
    Ack {
        /// The accepted frame's type byte.
        msg_type: u8,
    },
    /// The controller refused a frame.
    Nack {
        /// Sequence number of the refused frame.
        seq: u16,
        /// Its type byte.
        msg_type: u8,
        /// Why.
        reason: NackReason,
    },
    /// A frame failed CRC or decoding.
    LinkError,
    /// The port closed or failed.
    Disconnected,
}

impl ActuatorInput {
    /// What a frame from the controller tells the supervisor (`None` for frames it does not
    /// read). One mapping for every transport: the serial link and the lockstep simulation.
    #[must_use]
    pub fn from_controller(seq: u16, message: Message) -> Option<Self> {
        match message {
            Message::State(state) => Some(ActuatorInput::State { seq, state }),
            Message::Fault(report) => Some(ActuatorInput::Fault(report)),
            Message::Nack { seq, msg_type, reason } => Some(ActuatorInput::Nack { seq, msg_type, reason }),
            Message::Ack { msg_type, .. } => Some(ActuatorInput::Ack { msg_type }),
            // A second HelloAck means the controller restarted and greeted again.
            Message::HelloAck(info) => Some(ActuatorInput::Connected(info)),
            _ => None,
        }
    }
}

/// The port the supervisor drives: the serial link to the controller, or a fake in unit tests.
/// Both calls must return at once (the supervisor's cycle never blocks).
pub trait Actuator {
    /// Queues a command for sending.
    fn send(&mut self, command: SupervisedCommand);

    /// Hands every input received since the last call to `sink` (the supervisor stamps them with
    /// the cycle's time).
    fn poll(&mut self, sink: &mut dyn FnMut(ActuatorInput));
}
