//! What the supervisor takes in: the controller's states, faults and replies, checked as they
//! arrive (HAZ-5..9, HAZ-12, HAZ-14).

use stylet_core::Nanos;
use stylet_protocol::{ControllerInfo, ControllerState, FaultCode, Status};

use super::{Event, Supervisor, ENABLE_GRACE};
use crate::command::ActuatorInput;
use crate::fault::Fault;
use crate::state::MotionState;

impl Supervisor {
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
