//! Sampled joint trajectories: what motion generation hands the supervisor, one sample per cycle.
//!
//! [`Trajectory::point_to_point`] makes a synchronised jerk-limited (double-S, seven-segment)
//! move: every joint starts and ends at rest, follows the same normalised profile scaled by its
//! displacement (so all arrive together on straight joint-space lines), and the profile is the
//! time-optimal double-S (Biagiotti & Melchiorri, "Trajectory Planning for Automatic Machines and
//! Robots", 2008, sec. 3.4) for the tightest joint's velocity, acceleration and jerk limits.

use stylet_core::config::RobotConfig;
use stylet_protocol::JointSetpoint;

use crate::config::{SafetyConfig, SoftRange};

/// One segment of constant jerk of the normalised profile: (duration s, jerk 1/s^3).
type Segment = (f64, f64);

/// Rest-to-rest double-S for a unit displacement under limits `v`, `a`, `j` (per second powers of
/// the normalised coordinate): its constant-jerk segments.
fn double_s(v: f64, a: f64, j: f64) -> Vec<Segment> {
    // Acceleration phase for reaching v (or as much as a allows).
    let (mut tj, mut ta) = if v * j >= a * a { (a / j, a / j + v / a) } else { ((v / j).sqrt(), 2.0 * (v / j).sqrt()) };
    let mut tv = 1.0 / v - ta;
    if tv < 0.0 {
        // The maximum velocity is not reached.
        tv = 0.0;
        if 1.0 >= 2.0 * a * a * a / (j * j) {
            tj = a / j;
            ta = tj / 2.0 + ((tj / 2.0).powi(2) + 1.0 / a).sqrt();
        } else {
            tj = (1.0 / (2.0 * j)).cbrt();
            ta = 2.0 * tj;
        }
    }
    let ta_const = (ta - 2.0 * tj).max(0.0);
    vec![(tj, j), (ta_const, 0.0), (tj, -j), (tv, 0.0), (tj, -j), (ta_const, 0.0), (tj, j)]
}

/// Position, velocity and acceleration of a constant-jerk-segment profile at time `t`.
fn evaluate(segments: &[Segment], t: f64) -> (f64, f64, f64) {
    let (mut s, mut v, mut a) = (0.0, 0.0, 0.0);
    let mut left = t;
    for &(d, j) in segments {
        let h = left.min(d).max(0.0);
        s += v * h + a * h * h / 2.0 + j * h * h * h / 6.0;
        v += a * h + j * h * h / 2.0;
        a += j * h;
        left -= d;
        if left <= 0.0 {
            break;
        }
    }
    (s, v, a)
}

/// A motion that cannot be planned.
#[derive(Clone, Debug, PartialEq, docsplay::Display, thiserror::Error)]
pub enum TrajectoryError {
    /// start has {got} joints, the robot has {want}
    JointCount {
        /// Joints given.
        got: usize,
        /// Joints of the robot.
        want: usize,
    },
    /// joint {joint} ({name}): goal {value:.4} outside [{min:.4}, {max:.4}]
    OutOfRange {
        /// Joint index.
        joint: usize,
        /// Joint name.
        name: String,
        /// Goal.
        value: f64,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// speed fraction {0} must be within (0, 1]
    BadFraction(f64),
}

/// Joint samples at a fixed period, one row per cycle.
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    joints: usize,
    start: Vec<f64>,
    samples: Vec<JointSetpoint>,
}

impl Trajectory {
    /// Number of samples (cycles).
    #[must_use]
    pub fn len(&self) -> usize {
        self.samples.len().checked_div(self.joints).unwrap_or(0)
    }

    /// Whether it has no samples.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Positions the trajectory starts from (the commanded state it must be given in).
    #[must_use]
    pub fn start(&self) -> &[f64] {
        &self.start
    }

    /// The `k`th sample (one setpoint per joint).
    #[must_use]
    pub fn sample(&self, k: usize) -> Option<&[JointSetpoint]> {
        self.samples.get(k * self.joints..(k + 1) * self.joints)
    }

    /// The final positions.
    #[must_use]
    pub fn goal(&self) -> Vec<f64> {
        self.sample(self.len().saturating_sub(1))
            .map_or_else(|| self.start.clone(), |s| s.iter().map(|j| j.position).collect())
    }

    /// A move from `from` to `to` within the soft ranges the supervisor enforces
    /// ([`SafetyConfig::soft_ranges`]: soft stops and PATH-6), at `fraction` of the limits, sampled
    /// at the supervisor's cycle: what the procedure and bring-up plan.
    ///
    /// # Errors
    /// A [`TrajectoryError`] naming the joint.
    pub fn within(cfg: &SafetyConfig, from: &[f64], to: &[f64], fraction: f64) -> Result<Self, TrajectoryError> {
        Self::point_to_point(&cfg.robot, from, to, &cfg.soft_ranges(), fraction, cfg.dt())
    }

    /// A synchronised jerk-limited (double-S) move from `from` to `to`, using at most `fraction` of
    /// each joint's velocity, acceleration and jerk limits, sampled every `period_s`; the last
    /// sample is exactly `to`. Goals must lie within `ranges[i]` (for a test that needs the
    /// supervisor to refuse a goal, `RobotConfig`'s hard limits through [`hard_ranges`]).
    ///
    /// # Errors
    /// A [`TrajectoryError`] naming the joint.
    pub fn point_to_point(
        robot: &RobotConfig,
        from: &[f64],
        to: &[f64],
        ranges: &[SoftRange],
        fraction: f64,
        period_s: f64,
    ) -> Result<Self, TrajectoryError> {
        let n = robot.joints.len();
        if from.len() != n || to.len() != n || ranges.len() != n {
            return Err(TrajectoryError::JointCount { got: from.len().min(to.len()), want: n });
        }
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(TrajectoryError::BadFraction(fraction));
        }
        // The normalised coordinate's limits: the tightest joint decides each.
        let (mut v, mut a, mut j) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
        for (i, jt) in robot.joints.iter().enumerate() {
            let (min, max) = (ranges[i].lo, ranges[i].hi);
            if !ranges[i].contains(to[i]) {
                return Err(TrajectoryError::OutOfRange { joint: i, name: jt.name.clone(), value: to[i], min, max });
            }
            let d = (to[i] - from[i]).abs();
            if d > 0.0 {
                v = v.min(fraction * jt.max_velocity / d);
                a = a.min(fraction * jt.max_acceleration / d);
                j = j.min(fraction * jt.max_jerk / d);
            }
        }
        let mut samples = Vec::new();
        if !v.is_finite() {
            // Nothing moves: one sample holding the start.
            samples.extend(from.iter().map(|&position| JointSetpoint { position, velocity: 0.0 }));
            return Ok(Trajectory { joints: n, start: from.to_vec(), samples });
        }
        let segments = double_s(v, a, j);
        let duration: f64 = segments.iter().map(|(d, _)| d).sum();
        // Whole cycles: stretch time by lambda >= 1 (velocity / lambda, acceleration / lambda^2,
        // jerk / lambda^3: still within the limits).
        let steps = (duration / period_s).ceil().max(1.0) as usize;
        let lambda = steps as f64 * period_s / duration;
        samples.reserve(steps * n);
        for k in 1..=steps {
            let (s_k, v_k, _) = evaluate(&segments, k as f64 * period_s / lambda);
            for i in 0..n {
                let delta = to[i] - from[i];
                let (position, velocity) =
                    if k == steps { (to[i], 0.0) } else { (from[i] + delta * s_k.min(1.0), delta * v_k / lambda) };
                samples.push(JointSetpoint { position, velocity: velocity as f32 });
            }
        }
        Ok(Trajectory { joints: n, start: from.to_vec(), samples })
    }
}

/// A robot's hard limits as ranges, with no soft margin: for tests and tools that plan up to the
/// hard stops on purpose.
#[must_use]
pub fn hard_ranges(robot: &RobotConfig) -> Vec<SoftRange> {
    robot.joints.iter().map(|j| SoftRange { lo: j.min, hi: j.max, depth_bound: false }).collect()
}
