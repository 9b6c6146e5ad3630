//! The wire monitor: an independent check, inside the controller, of every setpoint that arrives.
//! It shares no code with the supervisor: it reads the robot's hard limits and the two clinical
//! interlock values from the same config files, and counts every setpoint outside the envelope.
//! "Zero violations" in a test is this counter.

use std::collections::BTreeMap;

use stylet_core::config::{JointRole, RobotConfig};
use stylet_protocol::Setpoint;

/// Relative tolerance on rate limits (floating-point differences of positions).
const REL_TOL: f64 = 1e-6;
/// Absolute tolerance on rate limits.
const ABS_TOL: f64 = 1e-6;

/// What the monitor counted.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct MonitorReport {
    /// Setpoints checked.
    pub setpoints: u64,
    /// Setpoints outside the envelope.
    pub violations: u64,
    /// Violations by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// The first violation, described.
    pub first: Option<String>,
}

#[derive(Clone, Debug)]
struct Limit {
    min: f64,
    max: f64,
    vmax: f64,
    amax: f64,
    orientation: bool,
}

/// Checks setpoints against the envelope.
#[derive(Clone, Debug)]
pub struct WireMonitor {
    limits: Vec<Limit>,
    insertion: Option<usize>,
    in_tissue_depth_mm: f64,
    max_depth_mm: f64,
    prev: Option<(u64, Vec<f64>)>,
    prev_v: Option<(u64, Vec<f64>)>,
    report: MonitorReport,
}

impl WireMonitor {
    /// A monitor for this robot, with the INS-1 in-tissue depth and the PATH-6 depth limit.
    #[must_use]
    pub fn new(robot: &RobotConfig, in_tissue_depth_mm: f64, max_depth_mm: f64) -> Self {
        WireMonitor {
            limits: robot
                .joints
                .iter()
                .map(|j| Limit {
                    min: j.min,
                    max: j.max,
                    vmax: j.max_velocity,
                    amax: j.max_acceleration,
                    orientation: j.role == JointRole::Orientation,
                })
                .collect(),
            insertion: robot.insertion_joint(),
            in_tissue_depth_mm,
            max_depth_mm,
            prev: None,
            prev_v: None,
            report: MonitorReport::default(),
        }
    }

    /// The counts so far.
    #[must_use]
    pub fn report(&self) -> &MonitorReport {
        &self.report
    }

    /// Drives were (re)enabled or disabled: the next setpoint starts a new stream.
    pub fn break_continuity(&mut self) {
        self.prev = None;
        self.prev_v = None;
    }

    fn violation(&mut self, kind: &str, what: String) {
        *self.report.by_kind.entry(kind.to_string()).or_default() += 1;
        if self.report.first.is_none() {
            self.report.first = Some(what);
        }
    }

    /// Checks one setpoint; returns whether it was inside the envelope.
    pub fn check(&mut self, s: &Setpoint) -> bool {
        self.report.setpoints += 1;
        let before: u64 = self.report.by_kind.values().sum();
        let q: Vec<f64> = s.joints.as_slice().iter().map(|j| j.position).collect();
        if q.len() != self.limits.len() {
            self.violation("joint_count", format!("{} joints in a setpoint, robot has {}", q.len(), self.limits.len()));
        } else {
            self.check_joints(s, &q);
        }
        let after: u64 = self.report.by_kind.values().sum();
        let ok = after == before;
        if !ok {
            self.report.violations += 1;
        }
        ok
    }

    fn check_joints(&mut self, s: &Setpoint, q: &[f64]) {
        let tol = |x: f64| x * (1.0 + REL_TOL) + ABS_TOL;
        let limits = self.limits.clone();
        for (i, l) in limits.iter().enumerate() {
            if q[i] < l.min || q[i] > l.max {
                self.violation("position", format!("joint {i} at {} outside [{}, {}]", q[i], l.min, l.max));
            }
            let ff = f64::from(s.joints.as_slice()[i].velocity).abs();
            if ff > tol(l.vmax) {
                self.violation("velocity_feed_forward", format!("joint {i} feed-forward {ff} > {}", l.vmax));
            }
        }
        if let Some(ins) = self.insertion {
            if q[ins] > self.max_depth_mm + ABS_TOL {
                self.violation("depth", format!("needle at {} mm beyond {} mm (PATH-6)", q[ins], self.max_depth_mm));
            }
        }
        let t = s.host_time_us;
        if let Some((t0, q0)) = self.prev.clone() {
            if t <= t0 {
                self.violation("time", format!("host time {t} us not after {t0} us"));
                self.prev = Some((t, q.to_vec()));
                return;
            }
            let dt = (t - t0) as f64 * 1e-6;
            let v: Vec<f64> = q.iter().zip(&q0).map(|(a, b)| (a - b) / dt).collect();
            let (mut orientation, mut insertion) = (false, false);
            for (i, l) in limits.iter().enumerate() {
                if v[i].abs() > tol(l.vmax) {
                    self.violation("velocity", format!("joint {i} velocity {} > {}", v[i], l.vmax));
                }
                if q[i] != q0[i] {
                    if l.orientation {
                        orientation = true;
                    } else {
                        insertion = true;
                    }
                }
            }
            if let Some((tv, pv)) = self.prev_v.clone() {
                // Velocities are centred mid-interval: divide by the distance between the centres.
                let t_prev_centre = (tv as f64 + t0 as f64) * 0.5e-6;
                let t_centre = (t0 as f64 + t as f64) * 0.5e-6;
                let dtc = t_centre - t_prev_centre;
                if dtc > 0.0 {
                    for (i, l) in limits.iter().enumerate() {
                        let a = (v[i] - pv[i]) / dtc;
                        if a.abs() > tol(l.amax) {
                            self.violation("acceleration", format!("joint {i} acceleration {a} > {}", l.amax));
                        }
                    }
                }
            }
            if orientation && insertion {
                self.violation("ins1_together", "orientation and insertion moved together (INS-1)".into());
            }
            if let (true, Some(ins)) = (orientation, self.insertion) {
                if q0[ins] > self.in_tissue_depth_mm {
                    self.violation(
                        "ins1_in_tissue",
                        format!("orientation moved with the needle {} mm in (INS-1)", q0[ins]),
                    );
                }
            }
            self.prev_v = Some((t0, v));
        }
        self.prev = Some((t, q.to_vec()));
    }
}
