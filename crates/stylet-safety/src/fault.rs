//! Faults the supervisor latches, and how it reacts to each class.
//!
//! Each variant's doc comment is its message. Positions are in the joint's internal unit: radians
//! for revolute joints, millimetres for prismatic ones.

use stylet_protocol::FaultCode;

/// How the supervisor reacts to a fault (see the hazard table in `docs/safety.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reaction {
    /// Decelerate every moving joint at the stop deceleration within its limits, then hold position
    /// with drives enabled (the arm can still be seen and held).
    ControlledStop,
    /// Disable drives and apply brakes at once (the arm cannot be trusted to follow).
    BrakeHold,
}

/// A latched fault.
#[derive(Clone, Copy, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum Fault {
    /// joint {joint}: requested position {value:.4} beyond its soft stop {limit:.4} (HAZ-1)
    PositionLimit {
        /// Joint index.
        joint: u8,
        /// Requested position.
        value: f64,
        /// The soft stop it crossed.
        limit: f64,
    },
    /// joint {joint}: requested velocity {value:.4}/s beyond its limit {limit:.4}/s (HAZ-2)
    VelocityLimit {
        /// Joint index.
        joint: u8,
        /// Requested velocity.
        value: f64,
        /// Limit.
        limit: f64,
    },
    /// joint {joint}: velocity {value:.4}/s too fast to stop before the soft stop (at most {limit:.4}/s here) (HAZ-1)
    SoftStopApproach {
        /// Joint index.
        joint: u8,
        /// Requested velocity.
        value: f64,
        /// Largest velocity that still stops in time.
        limit: f64,
    },
    /// joint {joint}: requested acceleration {value:.4}/s^2 beyond its limit {limit:.4}/s^2 (HAZ-3)
    AccelerationLimit {
        /// Joint index.
        joint: u8,
        /// Requested acceleration.
        value: f64,
        /// Limit.
        limit: f64,
    },
    /// joint {joint}: requested jerk {value:.2}/s^3 beyond its limit {limit:.2}/s^3 (HAZ-4)
    JerkLimit {
        /// Joint index.
        joint: u8,
        /// Requested jerk.
        value: f64,
        /// Limit.
        limit: f64,
    },
    /// joint {joint}: following error {error:.4} beyond {limit:.4} (HAZ-5)
    FollowingError {
        /// Joint index.
        joint: u8,
        /// Commanded minus measured.
        error: f64,
        /// Limit.
        limit: f64,
    },
    /// joint {joint}: motor current {current_a:.2} A above {limit_a:.2} A for {states} consecutive states (HAZ-6)
    OverCurrent {
        /// Joint index.
        joint: u8,
        /// Measured current.
        current_a: f64,
        /// Limit.
        limit_a: f64,
        /// How many consecutive states.
        states: u32,
    },
    /// joint {joint}: encoder jumped by {jump:.4}, more than the joint can move ({limit:.4}) (HAZ-7)
    EncoderJump {
        /// Joint index.
        joint: u8,
        /// Change between two states.
        jump: f64,
        /// Largest plausible change.
        limit: f64,
    },
    /// no controller state for {age_ms:.1} ms (deadline {deadline_ms:.1} ms) (HAZ-8)
    StaleControllerState {
        /// Age of the newest state.
        age_ms: f64,
        /// Deadline.
        deadline_ms: f64,
    },
    /// no operator heartbeat for {age_ms:.1} ms (deadline {deadline_ms:.1} ms) (HAZ-8)
    StaleOperator {
        /// Age of the newest heartbeat.
        age_ms: f64,
        /// Deadline.
        deadline_ms: f64,
    },
    /// respiratory gate input is {age_ms:.1} ms old during insertion (deadline {deadline_ms:.1} ms) (RESP-2)
    StaleGate {
        /// Age of the newest gate sample.
        age_ms: f64,
        /// Deadline.
        deadline_ms: f64,
    },
    /// the motion stream stopped while joints were moving (HAZ-8)
    StaleMotion,
    /// {count} link errors (CRC, decoding, sequence gaps) within the window, limit {limit} (HAZ-9)
    LinkErrors {
        /// Errors counted in the window.
        count: u32,
        /// Limit.
        limit: u32,
    },
    /// no reply from the controller to message {msg_type:#04x} within {deadline_ms:.1} ms (HAZ-9)
    MissedReply {
        /// The unanswered message's type byte.
        msg_type: u8,
        /// Reply deadline.
        deadline_ms: f64,
    },
    /// controller sequence jumped by {gap} frames, limit {limit} (HAZ-9)
    SequenceGap {
        /// Frames missing.
        gap: u16,
        /// Limit.
        limit: u16,
    },
    /// controller reported fault {code:?} on joint {joint} (value {value}) (HAZ-12)
    ControllerFault {
        /// Controller's fault code.
        code: FaultCode,
        /// Joint (255: none).
        joint: u8,
        /// Controller's value.
        value: f32,
    },
    /// controller watchdog tripped: it stopped hearing the host (HAZ-10)
    ControllerWatchdog,
    /// controller drives went off while the supervisor had them enabled (HAZ-12)
    DrivesDropped,
    /// controller restarted (its clock went back or it said hello again) (HAZ-12)
    ControllerReset,
    /// controller drives {controller} joints, the robot config has {config} (HAZ-12)
    JointCountMismatch {
        /// Controller's joint count.
        controller: u8,
        /// Config's joint count.
        config: u8,
    },
    /// insertion would reach {depth_mm:.2} mm (stopping distance included), beyond the depth limit {limit_mm:.2} mm (PATH-6)
    InsertionDepth {
        /// Requested depth.
        depth_mm: f64,
        /// Limit.
        limit_mm: f64,
    },
    /// joint {joint} (orientation) commanded to move with the needle {depth_mm:.2} mm deep in tissue (INS-1)
    OrientationInTissue {
        /// Joint index.
        joint: u8,
        /// Insertion depth.
        depth_mm: f64,
    },
    /// orientation and insertion joints commanded to move together (INS-1)
    OrientationWithInsertion,
    /// joint {joint} commanded to move in a state that does not allow it (HAZ-13)
    MotionNotAllowed {
        /// Joint index.
        joint: u8,
    },
    /// motion request for {got} joints, the robot has {want} (HAZ-13)
    BadRequest {
        /// Joints in the request.
        got: u8,
        /// Joints of the robot.
        want: u8,
    },
    /// control cycle started {lateness_ms:.2} ms late (limit {limit_ms:.2} ms) (HAZ-11)
    CycleOverrun {
        /// Lateness.
        lateness_ms: f64,
        /// Limit.
        limit_ms: f64,
    },
    /// controller was found outside its joint limits on enable: joint {joint} at {value:.4} (HAZ-1)
    OutsideLimitsOnEnable {
        /// Joint index.
        joint: u8,
        /// Measured position.
        value: f64,
    },
    /// e-stop circuit open at the controller (HAZ-14)
    EStopInput,
    /// operator pressed e-stop (HAZ-14)
    OperatorEStop,
}

impl Fault {
    /// The reaction this fault's class demands.
    #[must_use]
    pub fn reaction(&self) -> Reaction {
        match self {
            Fault::PositionLimit { .. }
            | Fault::VelocityLimit { .. }
            | Fault::SoftStopApproach { .. }
            | Fault::AccelerationLimit { .. }
            | Fault::JerkLimit { .. }
            | Fault::StaleOperator { .. }
            | Fault::StaleGate { .. }
            | Fault::StaleMotion
            | Fault::InsertionDepth { .. }
            | Fault::OrientationInTissue { .. }
            | Fault::OrientationWithInsertion
            | Fault::MotionNotAllowed { .. }
            | Fault::BadRequest { .. }
            | Fault::CycleOverrun { .. } => Reaction::ControlledStop,
            Fault::FollowingError { .. }
            | Fault::OverCurrent { .. }
            | Fault::EncoderJump { .. }
            | Fault::StaleControllerState { .. }
            | Fault::LinkErrors { .. }
            | Fault::MissedReply { .. }
            | Fault::SequenceGap { .. }
            | Fault::ControllerFault { .. }
            | Fault::ControllerWatchdog
            | Fault::DrivesDropped
            | Fault::ControllerReset
            | Fault::JointCountMismatch { .. }
            | Fault::OutsideLimitsOnEnable { .. }
            | Fault::EStopInput
            | Fault::OperatorEStop => Reaction::BrakeHold,
        }
    }

    /// Whether this fault puts the supervisor in `EStop` rather than `Fault`.
    #[must_use]
    pub fn is_estop(&self) -> bool {
        matches!(self, Fault::EStopInput | Fault::OperatorEStop)
    }

    /// A short stable name (for JSON and logs).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Fault::PositionLimit { .. } => "position_limit",
            Fault::VelocityLimit { .. } => "velocity_limit",
            Fault::SoftStopApproach { .. } => "soft_stop_approach",
            Fault::AccelerationLimit { .. } => "acceleration_limit",
            Fault::JerkLimit { .. } => "jerk_limit",
            Fault::FollowingError { .. } => "following_error",
            Fault::OverCurrent { .. } => "over_current",
            Fault::EncoderJump { .. } => "encoder_jump",
            Fault::StaleControllerState { .. } => "stale_controller_state",
            Fault::StaleOperator { .. } => "stale_operator",
            Fault::StaleGate { .. } => "stale_gate",
            Fault::StaleMotion => "stale_motion",
            Fault::LinkErrors { .. } => "link_errors",
            Fault::SequenceGap { .. } => "sequence_gap",
            Fault::MissedReply { .. } => "missed_reply",
            Fault::ControllerFault { .. } => "controller_fault",
            Fault::ControllerWatchdog => "controller_watchdog",
            Fault::DrivesDropped => "drives_dropped",
            Fault::ControllerReset => "controller_reset",
            Fault::JointCountMismatch { .. } => "joint_count_mismatch",
            Fault::InsertionDepth { .. } => "insertion_depth",
            Fault::OrientationInTissue { .. } => "orientation_in_tissue",
            Fault::OrientationWithInsertion => "orientation_with_insertion",
            Fault::MotionNotAllowed { .. } => "motion_not_allowed",
            Fault::BadRequest { .. } => "bad_request",
            Fault::CycleOverrun { .. } => "cycle_overrun",
            Fault::OutsideLimitsOnEnable { .. } => "outside_limits_on_enable",
            Fault::EStopInput => "estop_input",
            Fault::OperatorEStop => "operator_estop",
        }
    }
}
