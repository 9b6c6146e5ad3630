//! Sampled joint trajectories: what motion generation hands the supervisor, one sample per cycle.
//!
//! [`Trajectory::point_to_point`] makes a synchronised minimum-jerk (quintic) move: every joint
//! starts and ends at rest with zero acceleration, and all arrive together. The kinematics crate
//! supplies richer profiles through the same type.

use stylet_core::config::RobotConfig;
use stylet_protocol::JointSetpoint;

/// Peak of ds/dtau for s = 10 tau^3 - 15 tau^4 + 6 tau^5.
const QUINTIC_PEAK_VELOCITY: f64 = 1.875;
/// Peak of d2s/dtau2 (10 / sqrt 3).
const QUINTIC_PEAK_ACCELERATION: f64 = 5.773_502_691_896_258;
/// Peak of d3s/dtau3 (at both ends).
const QUINTIC_PEAK_JERK: f64 = 60.0;

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

    /// A synchronised minimum-jerk move from `from` to `to`, using at most `fraction` of each
    /// joint's velocity, acceleration and jerk limits, sampled every `period_s`. Goals must lie
    /// within `[min + margin, max - margin]` where `margin` is `margins[i]`.
    ///
    /// # Errors
    /// A [`TrajectoryError`] naming the joint.
    pub fn point_to_point(
        robot: &RobotConfig,
        from: &[f64],
        to: &[f64],
        margins: &[f64],
        fraction: f64,
        period_s: f64,
    ) -> Result<Self, TrajectoryError> {
        let n = robot.joints.len();
        if from.len() != n || to.len() != n || margins.len() != n {
            return Err(TrajectoryError::JointCount { got: from.len().min(to.len()), want: n });
        }
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(TrajectoryError::BadFraction(fraction));
        }
        let mut duration: f64 = 0.0;
        for (i, j) in robot.joints.iter().enumerate() {
            let (min, max) = (j.min + margins[i], j.max - margins[i]);
            if !(to[i] >= min && to[i] <= max) {
                return Err(TrajectoryError::OutOfRange { joint: i, name: j.name.clone(), value: to[i], min, max });
            }
            let d = (to[i] - from[i]).abs();
            duration = duration
                .max(QUINTIC_PEAK_VELOCITY * d / (fraction * j.max_velocity))
                .max((QUINTIC_PEAK_ACCELERATION * d / (fraction * j.max_acceleration)).sqrt())
                .max((QUINTIC_PEAK_JERK * d / (fraction * j.max_jerk)).cbrt());
        }
        let steps = (duration / period_s).ceil().max(1.0) as usize;
        let t_total = steps as f64 * period_s;
        let mut samples = Vec::with_capacity(steps * n);
        for k in 1..=steps {
            let tau = k as f64 / steps as f64;
            let s = tau * tau * tau * (10.0 - 15.0 * tau + 6.0 * tau * tau);
            let ds = 30.0 * tau * tau * (1.0 - tau) * (1.0 - tau) / t_total;
            for i in 0..n {
                let delta = to[i] - from[i];
                let position = if k == steps { to[i] } else { from[i] + delta * s };
                samples.push(JointSetpoint { position, velocity: (delta * ds) as f32 });
            }
        }
        Ok(Trajectory { joints: n, start: from.to_vec(), samples })
    }
}
