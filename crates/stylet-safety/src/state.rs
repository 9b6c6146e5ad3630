//! The supervisor's motion states and the operator/workflow commands that move between them.

/// Where the supervisor is. Transitions are explicit and logged as [`crate::Event`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MotionState {
    /// No controller handshake yet.
    Disconnected,
    /// Handshake done, drives off, brakes on.
    Connected,
    /// Drives on, moving to the home pose (orientation only outside tissue, needle only back).
    Homing,
    /// Drives on, holding still.
    Idle,
    /// Orientation joints moving the needle onto the planned line; needle outside the body.
    Aligning,
    /// On the line, holding still, needle outside the body.
    Aligned,
    /// Needle advancing (insertion joint only, pedal held, gate open).
    Inserting,
    /// Insertion paused (pedal released, gate closed, or operator); holding still.
    Holding,
    /// At the target, holding still.
    AtTarget,
    /// Needle withdrawing (insertion joint only, backwards).
    Retracting,
    /// A latched fault; needs an operator reset once the cause is gone.
    Fault,
    /// A latched e-stop; needs an operator reset once the e-stop is released.
    EStop,
}

impl MotionState {
    /// Whether the supervisor keeps the drives enabled in this state.
    #[must_use]
    pub fn drives_enabled(self) -> bool {
        !matches!(self, MotionState::Disconnected | MotionState::Connected | MotionState::Fault | MotionState::EStop)
    }

    /// Whether a motion request may move joints in this state.
    #[must_use]
    pub fn accepts_motion(self) -> bool {
        matches!(self, MotionState::Homing | MotionState::Aligning | MotionState::Inserting | MotionState::Retracting)
    }

    /// Stable name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            MotionState::Disconnected => "disconnected",
            MotionState::Connected => "connected",
            MotionState::Homing => "homing",
            MotionState::Idle => "idle",
            MotionState::Aligning => "aligning",
            MotionState::Aligned => "aligned",
            MotionState::Inserting => "inserting",
            MotionState::Holding => "holding",
            MotionState::AtTarget => "at_target",
            MotionState::Retracting => "retracting",
            MotionState::Fault => "fault",
            MotionState::EStop => "estop",
        }
    }
}

/// An operator or workflow command to the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Connected -> Homing: enable drives and accept homing motion.
    StartHoming,
    /// Homing -> Idle, Aligning -> Aligned, Inserting -> AtTarget, Retracting -> Idle, once still.
    Complete,
    /// Idle | Aligned -> Aligning (needle outside tissue only).
    BeginAlign,
    /// Aligned -> Inserting (pedal held, gate open).
    BeginInsert,
    /// Inserting -> Holding.
    Hold,
    /// Holding -> Inserting (pedal held, gate open).
    Resume,
    /// Aligned | Inserting | Holding | AtTarget -> Retracting.
    BeginRetract,
    /// Idle | Aligned -> Connected: drives off, brakes on.
    DisableDrives,
    /// Fault | EStop -> a safe state, once every cause has cleared.
    Reset,
}
