//! What the supervisor says: refusals, events for the log, a cycle's output, and snapshots.

use stylet_core::Nanos;
use stylet_protocol::{JointArray, Status};

use crate::command::SupervisedCommand;
use crate::fault::{Fault, Reaction};
use crate::state::{Command, MotionState};

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
