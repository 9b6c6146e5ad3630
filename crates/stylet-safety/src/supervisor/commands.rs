//! The command table: which operator and workflow command each state takes, and what it does.

use stylet_core::Nanos;
use stylet_protocol::{Message, Status, MAX_JOINTS};

use super::{Event, Refusal, Supervisor};
use crate::fault::Fault;
use crate::state::{Command, MotionState};

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

    pub(super) fn finish_reset(&mut self, now: Nanos) {
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
}
