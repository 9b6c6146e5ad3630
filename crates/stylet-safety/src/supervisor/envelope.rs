//! The envelope: every request checked against the limits and interlocks before it becomes the
//! command (HAZ-1..4, HAZ-13, INS-1, INS-2, RESP-2, PATH-6), the controlled stop's ramp, and the
//! setpoint that goes out.

use stylet_core::Nanos;
use stylet_protocol::{JointArray, JointSetpoint, Message, Setpoint, MAX_JOINTS};

use super::{Event, Supervisor, BRAKING_NOISE};
use crate::command::SupervisedCommand;
use crate::fault::Fault;
use crate::state::MotionState;

impl Supervisor {
    /// Checks a request against every limit and interlock; on success it becomes the command.
    pub(super) fn admit(&mut self, _now: Nanos, r: &[JointSetpoint]) -> Result<(), Fault> {
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
    pub(super) fn ramp_down(&mut self, now: Nanos) {
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

    pub(super) fn setpoint(&self, now: Nanos) -> SupervisedCommand {
        let joints = JointArray::from_fn(self.n, |i| JointSetpoint { position: self.q[i], velocity: self.v[i] as f32 })
            .unwrap_or_default();
        SupervisedCommand::new(Message::Setpoint(Setpoint { host_time_us: now.as_micros(), joints }))
    }
}
