//! Message types and their bodies.

/// The protocol version carried in the handshake. A controller answers `Nack(Version)` to any
/// other.
pub const PROTOCOL_VERSION: u16 = 1;

/// The most joints a message carries.
pub const MAX_JOINTS: usize = 8;

/// A fixed-capacity list of per-joint values (no allocation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JointArray<T: Copy + Default> {
    len: u8,
    items: [T; MAX_JOINTS],
}

impl<T: Copy + Default> Default for JointArray<T> {
    fn default() -> Self {
        JointArray { len: 0, items: [T::default(); MAX_JOINTS] }
    }
}

impl<T: Copy + Default> JointArray<T> {
    /// Copies `values`, or `None` when there are more than [`MAX_JOINTS`].
    #[must_use]
    pub fn from_slice(values: &[T]) -> Option<Self> {
        let len = u8::try_from(values.len()).ok().filter(|&n| usize::from(n) <= MAX_JOINTS)?;
        let mut items = [T::default(); MAX_JOINTS];
        items[..values.len()].copy_from_slice(values);
        Some(JointArray { len, items })
    }

    /// Builds `n` values from a function of the index, or `None` when `n > MAX_JOINTS`.
    #[must_use]
    pub fn from_fn(n: usize, mut f: impl FnMut(usize) -> T) -> Option<Self> {
        if n > MAX_JOINTS {
            return None;
        }
        let mut items = [T::default(); MAX_JOINTS];
        for (i, item) in items.iter_mut().enumerate().take(n) {
            *item = f(i);
        }
        Some(JointArray { len: n as u8, items })
    }

    /// The values.
    #[must_use]
    pub fn as_slice(&self) -> &[T] {
        &self.items[..usize::from(self.len)]
    }

    /// The values, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..usize::from(self.len)]
    }

    /// How many joints.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One joint's commanded position and velocity feed-forward (rad or mm; rad/s or mm/s).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JointSetpoint {
    /// Position, rad (revolute) or mm (prismatic).
    pub position: f64,
    /// Velocity feed-forward, rad/s or mm/s.
    pub velocity: f32,
}

/// A joint setpoint for every joint, stamped with the host's cycle time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Setpoint {
    /// The host's nominal cycle time for this setpoint, microseconds on the host's monotonic clock.
    pub host_time_us: u64,
    /// Per joint, in chain order.
    pub joints: JointArray<JointSetpoint>,
}

/// One joint as the controller measures it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JointState {
    /// Measured position (encoder), rad or mm.
    pub position: f64,
    /// Measured velocity, rad/s or mm/s.
    pub velocity: f32,
    /// Motor current, amperes.
    pub current_a: f32,
}

/// Controller status bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    /// Drives are powered and following setpoints.
    pub const DRIVES_ENABLED: u16 = 1 << 0;
    /// Holding brakes are applied.
    pub const BRAKE_ENGAGED: u16 = 1 << 1;
    /// The hardware e-stop circuit is open.
    pub const ESTOP_INPUT: u16 = 1 << 2;
    /// The operator's enable input (foot pedal / dead-man) is held.
    pub const PEDAL_INPUT: u16 = 1 << 3;
    /// The controller's watchdog tripped; cleared only by `ResetFaults`.
    pub const WATCHDOG_TRIPPED: u16 = 1 << 4;
    /// A controller fault is latched (see the joint fault bits and the last `Fault` message).
    pub const FAULT: u16 = 1 << 5;

    /// Whether every bit of `mask` is set.
    #[must_use]
    pub const fn has(self, mask: u16) -> bool {
        self.0 & mask == mask
    }
}

/// The controller's periodic report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ControllerState {
    /// Controller's monotonic time, microseconds since it booted.
    pub controller_time_us: u64,
    /// Sequence number of the last valid setpoint the controller accepted.
    pub last_setpoint_seq: u16,
    /// Status bits.
    pub status: Status,
    /// Bit `i` set: joint `i` reports a fault.
    pub joint_faults: u16,
    /// Per joint, in chain order.
    pub joints: JointArray<JointState>,
}

/// What the controller identifies itself as in the handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControllerInfo {
    /// Protocol version the controller speaks.
    pub protocol_version: u16,
    /// Controller serial number / id.
    pub controller_id: u32,
    /// How many joints it drives.
    pub joint_count: u8,
    /// Firmware version (major, minor, patch).
    pub firmware: [u8; 3],
}

/// A fault the controller detected itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FaultCode {
    /// Motor current above its limit.
    OverCurrent = 1,
    /// The joint did not follow its setpoint.
    FollowingError = 2,
    /// The encoder reading is implausible.
    Encoder = 3,
    /// No valid setpoint or heartbeat within the watchdog window.
    Watchdog = 4,
    /// The hardware e-stop circuit opened.
    EStop = 5,
    /// A setpoint beyond the controller's own joint limits.
    JointLimit = 6,
    /// The controller restarted (reported once after boot).
    Reset = 7,
    /// Anything else.
    Internal = 8,
}

impl FaultCode {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::OverCurrent,
            2 => Self::FollowingError,
            3 => Self::Encoder,
            4 => Self::Watchdog,
            5 => Self::EStop,
            6 => Self::JointLimit,
            7 => Self::Reset,
            8 => Self::Internal,
            _ => return None,
        })
    }
}

/// A controller fault report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultReport {
    /// What went wrong.
    pub code: FaultCode,
    /// Which joint (0xFF: not joint-specific).
    pub joint: u8,
    /// The measured value that tripped it (unit depends on the code).
    pub value: f32,
}

/// Why the controller refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NackReason {
    /// Not allowed in the controller's current state (e.g. a setpoint while drives are off).
    BadState = 1,
    /// Joint count differs from the controller's.
    JointCount = 2,
    /// Protocol version not supported.
    Version = 3,
    /// The watchdog tripped; send `ResetFaults` first.
    WatchdogTripped = 4,
    /// The e-stop circuit is open.
    EStopActive = 5,
    /// A value outside the controller's limits.
    OutOfRange = 6,
}

impl NackReason {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::BadState,
            2 => Self::JointCount,
            3 => Self::Version,
            4 => Self::WatchdogTripped,
            5 => Self::EStopActive,
            6 => Self::OutOfRange,
            _ => return None,
        })
    }
}

/// The one-byte message type on the wire. Host to controller below 0x80, controller to host above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// Host handshake.
    Hello = 0x01,
    /// Enable drives, release brakes, arm the watchdog.
    Enable = 0x02,
    /// Disable drives, apply brakes.
    Disable = 0x03,
    /// Joint setpoint.
    Setpoint = 0x04,
    /// Host is alive (feeds the watchdog without moving).
    Heartbeat = 0x05,
    /// Software e-stop: drives off, brakes on, latched.
    EStop = 0x06,
    /// Clear latched controller faults (watchdog, e-stop) once their cause is gone.
    ResetFaults = 0x07,
    /// Controller handshake answer.
    HelloAck = 0x81,
    /// Periodic controller state.
    State = 0x82,
    /// Controller fault report.
    Fault = 0x83,
    /// Command accepted.
    Ack = 0x84,
    /// Command refused.
    Nack = 0x85,
}

impl MessageType {
    /// From the wire byte.
    #[must_use]
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x01 => Self::Hello,
            0x02 => Self::Enable,
            0x03 => Self::Disable,
            0x04 => Self::Setpoint,
            0x05 => Self::Heartbeat,
            0x06 => Self::EStop,
            0x07 => Self::ResetFaults,
            0x81 => Self::HelloAck,
            0x82 => Self::State,
            0x83 => Self::Fault,
            0x84 => Self::Ack,
            0x85 => Self::Nack,
            _ => return None,
        })
    }
}

/// Every message of the protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Message {
    /// Host handshake: the protocol version the host speaks and its id.
    Hello {
        /// [`PROTOCOL_VERSION`].
        protocol_version: u16,
        /// Host id (for logs).
        host_id: u32,
    },
    /// Enable drives with this watchdog window.
    Enable {
        /// Watchdog window in milliseconds (default 20).
        watchdog_ms: u16,
    },
    /// Disable drives, brakes on.
    Disable,
    /// Joint setpoint.
    Setpoint(Setpoint),
    /// Host alive.
    Heartbeat {
        /// Host time, microseconds.
        host_time_us: u64,
    },
    /// Software e-stop.
    EStop,
    /// Clear latched faults.
    ResetFaults,
    /// Controller handshake answer.
    HelloAck(ControllerInfo),
    /// Controller state.
    State(ControllerState),
    /// Controller fault.
    Fault(FaultReport),
    /// Accepted.
    Ack {
        /// The sequence number of the accepted frame.
        seq: u16,
        /// Its type byte.
        msg_type: u8,
    },
    /// Refused.
    Nack {
        /// The sequence number of the refused frame.
        seq: u16,
        /// Its type byte.
        msg_type: u8,
        /// Why.
        reason: NackReason,
    },
}

impl Message {
    /// The wire type.
    #[must_use]
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Hello { .. } => MessageType::Hello,
            Message::Enable { .. } => MessageType::Enable,
            Message::Disable => MessageType::Disable,
            Message::Setpoint(_) => MessageType::Setpoint,
            Message::Heartbeat { .. } => MessageType::Heartbeat,
            Message::EStop => MessageType::EStop,
            Message::ResetFaults => MessageType::ResetFaults,
            Message::HelloAck(_) => MessageType::HelloAck,
            Message::State(_) => MessageType::State,
            Message::Fault(_) => MessageType::Fault,
            Message::Ack { .. } => MessageType::Ack,
            Message::Nack { .. } => MessageType::Nack,
        }
    }
}

pub(crate) fn fault_code(v: u8) -> Option<FaultCode> {
    FaultCode::from_u8(v)
}

pub(crate) fn nack_reason(v: u8) -> Option<NackReason> {
    NackReason::from_u8(v)
}
