//! The supervisor's limits, read from `config/safety.toml` together with the robot's joint limits.

use std::path::Path;

use serde::Deserialize;
use stylet_core::config::{read_toml, Checker, ConfigError, JointKind, RobotConfig};
use stylet_core::units::rad_from_deg;
use stylet_core::Nanos;

/// Everything the supervisor enforces, in internal units. Only the checked loaders make one (a
/// private field): a supervisor cannot be built on limits that skipped them.
///
/// ```compile_fail
/// let robot = stylet_core::config::RobotConfig::load(std::path::Path::new("robot.toml")).unwrap();
/// let cfg = stylet_safety::SafetyConfig { robot, ..todo!() };
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SafetyConfig {
    /// The robot: joints, kinds, roles and hard limits.
    pub robot: RobotConfig,
    /// Cycle period.
    pub period: Nanos,
    /// Cycle lateness that latches a fault (HAZ-11).
    pub max_lateness: Nanos,
    /// Soft-stop margin inside the hard limits, revolute joints (rad) (HAZ-1).
    pub soft_margin_rad: f64,
    /// Soft-stop margin inside the hard limits, prismatic joints (mm) (HAZ-1).
    pub soft_margin_mm: f64,
    /// Controlled-stop deceleration as a fraction of the acceleration limit.
    pub stop_deceleration_fraction: f64,
    /// Following-error limit, revolute (rad) (HAZ-5).
    pub following_error_rad: f64,
    /// Following-error limit, prismatic (mm) (HAZ-5).
    pub following_error_mm: f64,
    /// Consecutive over-current states before the fault latches (HAZ-6).
    pub overcurrent_states: u32,
    /// Encoder jump allowance, revolute (rad) (HAZ-7).
    pub encoder_jump_rad: f64,
    /// Encoder jump allowance, prismatic (mm) (HAZ-7).
    pub encoder_jump_mm: f64,
    /// Controller-state deadline (HAZ-8).
    pub controller_state_deadline: Nanos,
    /// Operator-heartbeat deadline (HAZ-8).
    pub operator_deadline: Nanos,
    /// Link-error window (HAZ-9).
    pub link_window: Nanos,
    /// Link errors tolerated within the window (HAZ-9).
    pub link_max_errors: u32,
    /// Largest tolerated gap in the controller's sequence numbers (HAZ-9).
    pub link_max_sequence_gap: u16,
    /// Deadline for the controller's Ack/Nack to Enable, Disable, EStop and ResetFaults (HAZ-9).
    pub reply_deadline: Nanos,
    /// Controller watchdog window sent with `Enable` (HAZ-10).
    pub controller_watchdog_ms: u16,
    /// Depth beyond which the needle is in tissue (INS-1), mm.
    pub in_tissue_depth_mm: f64,
    /// Whether insertion needs the pedal (INS-2).
    pub require_pedal: bool,
    /// Maximum insertion depth (PATH-6), mm.
    pub max_depth_mm: f64,
    /// Respiratory-gate input deadline (RESP-2).
    pub gate_deadline: Nanos,
    /// Made by the checked loader only.
    checked: Checked,
}

/// Where one joint may be commanded (rad or mm): see [`SafetyConfig::soft_ranges`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftRange {
    /// Lower soft stop.
    pub lo: f64,
    /// Upper soft stop, or PATH-6's depth limit for the insertion joint where that is tighter.
    pub hi: f64,
    /// Whether `hi` is PATH-6's depth limit.
    pub depth_bound: bool,
}

impl SoftRange {
    /// Whether `q` lies within the range.
    #[must_use]
    pub fn contains(&self, q: f64) -> bool {
        q >= self.lo && q <= self.hi
    }
}

/// The mark of a [`SafetyConfig`] that came through its loader.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Checked;

impl SafetyConfig {
    /// Whether the limits are still within the bounds the loader checked (a config changed after
    /// loading could leave them): what [`crate::Supervisor::new`] asks before it takes them.
    ///
    /// # Errors
    /// The first limit out of bounds, named by its field.
    pub fn verify(&self) -> Result<(), String> {
        let bad = |field: &str, why: &str| Err(format!("safety config: {field} {why}"));
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if self.period == Nanos::ZERO || self.max_lateness == Nanos::ZERO {
            return bad("period / max_lateness", "must be positive (HAZ-11)");
        }
        for (i, j) in self.robot.joints.iter().enumerate() {
            let margin = self.soft_margin(j.kind);
            if !(margin >= 0.0 && j.max - j.min > 2.0 * margin && j.home >= j.min + margin && j.home <= j.max - margin)
            {
                return bad(
                    "soft margin",
                    &format!("leaves joint {i} ({}) no range or its home outside (HAZ-1)", j.name),
                );
            }
        }
        if !(self.stop_deceleration_fraction > 0.0 && self.stop_deceleration_fraction < 1.0) {
            return bad("stop_deceleration_fraction", "must be within (0, 1)");
        }
        if !(positive(self.following_error_rad) && positive(self.following_error_mm)) {
            return bad("following_error", "must be positive (HAZ-5)");
        }
        if self.overcurrent_states == 0 {
            return bad("overcurrent_states", "must be at least 1 (HAZ-6)");
        }
        if !(positive(self.encoder_jump_rad) && positive(self.encoder_jump_mm)) {
            return bad("encoder_jump", "must be positive (HAZ-7)");
        }
        let deadlines = [self.controller_state_deadline, self.operator_deadline, self.link_window, self.reply_deadline];
        if deadlines.contains(&Nanos::ZERO) || self.gate_deadline == Nanos::ZERO {
            return bad("deadlines", "must be positive (HAZ-8, HAZ-9, RESP-2)");
        }
        if !(2..=1000).contains(&self.controller_watchdog_ms) {
            return bad("controller_watchdog_ms", "must be within [2, 1000] (HAZ-10)");
        }
        if !(self.in_tissue_depth_mm.is_finite() && self.in_tissue_depth_mm >= 0.0) {
            return bad("in_tissue_depth_mm", "must not be negative (INS-1)");
        }
        let travel =
            self.robot.insertion_joint().and_then(|i| self.robot.joints.get(i)).map_or(f64::INFINITY, |j| j.max);
        if !(positive(self.max_depth_mm) && self.max_depth_mm <= travel) {
            return bad("max_depth_mm", "must be positive and within the insertion joint's travel (PATH-6)");
        }
        Ok(())
    }

    /// The soft-stop margin inside a joint's hard limits (HAZ-1): degrees-derived radians for a
    /// revolute joint, millimetres for a prismatic one.
    #[must_use]
    pub fn soft_margin(&self, kind: JointKind) -> f64 {
        match kind {
            JointKind::Revolute => self.soft_margin_rad,
            JointKind::Prismatic => self.soft_margin_mm,
        }
    }

    /// Where each joint may be commanded, in chain order: its hard limits less the soft margin
    /// (HAZ-1), and for the insertion joint no deeper than PATH-6's depth limit. The one
    /// derivation of these ranges: the supervisor enforces them and the trajectory generator
    /// ([`crate::trajectory::Trajectory::within`]) and the procedure plan within them.
    #[must_use]
    pub fn soft_ranges(&self) -> Vec<SoftRange> {
        let ins = self.robot.insertion_joint();
        self.robot
            .joints
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let margin = self.soft_margin(j.kind);
                let hi = j.max - margin;
                let depth_bound = ins == Some(i) && self.max_depth_mm < hi;
                SoftRange { lo: j.min + margin, hi: if depth_bound { self.max_depth_mm } else { hi }, depth_bound }
            })
            .collect()
    }

    /// The cycle period in seconds.
    #[must_use]
    pub fn dt(&self) -> f64 {
        self.period.as_secs_f64()
    }

    /// Loads `safety.toml` beside an already-loaded robot.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path, robot: RobotConfig) -> Result<Self, ConfigError> {
        let raw: RawSafety = read_toml(path)?;
        Self::from_raw(path, &raw, robot)
    }

    /// Loads `DIR/robot/robot.toml` and `DIR/safety.toml`.
    ///
    /// # Errors
    /// The first file's [`ConfigError`].
    pub fn load_dir(dir: &Path) -> Result<Self, ConfigError> {
        let robot = RobotConfig::load(&dir.join("robot").join("robot.toml"))?;
        Self::load(&dir.join("safety.toml"), robot)
    }

    fn from_raw(path: &Path, r: &RawSafety, robot: RobotConfig) -> Result<Self, ConfigError> {
        let mut c = Checker::new();
        let rules = [
            ("cycle.rule", &r.cycle.rule, "HAZ-11"),
            ("soft_limits.rule", &r.soft_limits.rule, "HAZ-1"),
            ("following_error.rule", &r.following_error.rule, "HAZ-5"),
            ("motor_current.rule", &r.motor_current.rule, "HAZ-6"),
            ("encoder.rule", &r.encoder.rule, "HAZ-7"),
            ("staleness.rule", &r.staleness.rule, "HAZ-8"),
            ("link_health.rule", &r.link_health.rule, "HAZ-9"),
            ("controller_watchdog.rule", &r.controller_watchdog.rule, "HAZ-10"),
            ("orientation_interlock.rule", &r.orientation_interlock.rule, "INS-1"),
            ("enable_interlock.rule", &r.enable_interlock.rule, "INS-2"),
            ("insertion_depth.rule", &r.insertion_depth.rule, "PATH-6"),
            ("respiratory_gate.rule", &r.respiratory_gate.rule, "RESP-2"),
        ];
        for (key, got, want) in rules {
            c.require(got == want, key, format!("{got:?}"), format!("this section enforces rule {want:?}"));
        }
        let rate = c.range("cycle.rate_hz", r.cycle.rate_hz, 50.0, 10_000.0);
        let period = Nanos((1e9 / rate.max(1.0)) as u64);
        let ms = |x: f64| Nanos((x * 1e6) as u64);
        let max_lateness = c.range("cycle.max_lateness_ms", r.cycle.max_lateness_ms, 0.1, 1000.0);
        let soft_deg = c.range("soft_limits.margin_deg", r.soft_limits.margin_deg, 0.0, 45.0);
        let soft_mm = c.range("soft_limits.margin_mm", r.soft_limits.margin_mm, 0.0, 100.0);
        let frac =
            c.range("soft_limits.stop_deceleration_fraction", r.soft_limits.stop_deceleration_fraction, 0.1, 0.99);
        for (i, j) in robot.joints.iter().enumerate() {
            let margin = match j.kind {
                JointKind::Revolute => rad_from_deg(soft_deg),
                JointKind::Prismatic => soft_mm,
            };
            c.require(
                j.max - j.min > 2.0 * margin,
                "soft_limits.margin",
                margin,
                format!("leaves no range for joint {i} ({}) between its soft stops", j.name),
            );
            c.require(
                j.home >= j.min + margin && j.home <= j.max - margin,
                "soft_limits.margin",
                margin,
                format!("puts the home position of joint {i} ({}) outside its soft stops", j.name),
            );
        }
        let fe_deg = c.range("following_error.limit_deg", r.following_error.limit_deg, 0.01, 45.0);
        let fe_mm = c.range("following_error.limit_mm", r.following_error.limit_mm, 0.01, 50.0);
        let oc = r.motor_current.consecutive_states;
        c.require((1..=10_000).contains(&oc), "motor_current.consecutive_states", oc, "must be within [1, 10000]");
        let jump_deg = c.range("encoder.jump_deg", r.encoder.jump_deg, 0.001, 45.0);
        let jump_mm = c.range("encoder.jump_mm", r.encoder.jump_mm, 0.001, 50.0);
        let stale_state = c.range("staleness.controller_state_ms", r.staleness.controller_state_ms, 1.0, 1000.0);
        let stale_op = c.range("staleness.operator_heartbeat_ms", r.staleness.operator_heartbeat_ms, 10.0, 60_000.0);
        let window = c.range("link_health.window_ms", r.link_health.window_ms, 10.0, 60_000.0);
        let reply = c.range("link_health.reply_deadline_ms", r.link_health.reply_deadline_ms, 1.0, 10_000.0);
        let wd = r.controller_watchdog.window_ms;
        c.require((2..=1000).contains(&wd), "controller_watchdog.window_ms", wd, "must be within [2, 1000]");
        let tissue =
            c.range("orientation_interlock.in_tissue_depth_mm", r.orientation_interlock.in_tissue_depth_mm, 0.0, 50.0);
        let depth = c.range("insertion_depth.max_depth_mm", r.insertion_depth.max_depth_mm, 1.0, 1000.0);
        if let Some(j) = robot.insertion_joint().and_then(|i| robot.joints.get(i)) {
            c.require(
                depth <= j.max,
                "insertion_depth.max_depth_mm",
                depth,
                format!("exceeds the insertion joint's travel ({} mm)", j.max),
            );
        }
        let gate = c.range("respiratory_gate.deadline_ms", r.respiratory_gate.deadline_ms, 1.0, 10_000.0);
        let cfg = SafetyConfig {
            robot,
            period,
            max_lateness: ms(max_lateness),
            soft_margin_rad: rad_from_deg(soft_deg),
            soft_margin_mm: soft_mm,
            stop_deceleration_fraction: frac,
            following_error_rad: rad_from_deg(fe_deg),
            following_error_mm: fe_mm,
            overcurrent_states: oc,
            encoder_jump_rad: rad_from_deg(jump_deg),
            encoder_jump_mm: jump_mm,
            controller_state_deadline: ms(stale_state),
            operator_deadline: ms(stale_op),
            link_window: ms(window),
            link_max_errors: r.link_health.max_errors,
            link_max_sequence_gap: r.link_health.max_sequence_gap,
            reply_deadline: ms(reply),
            controller_watchdog_ms: wd,
            in_tissue_depth_mm: tissue,
            require_pedal: r.enable_interlock.require_pedal,
            max_depth_mm: depth,
            gate_deadline: ms(gate),
            checked: Checked,
        };
        c.finish(path, cfg)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    cycle: RawCycle,
    soft_limits: RawSoft,
    following_error: RawFollowing,
    motor_current: RawCurrent,
    encoder: RawEncoder,
    staleness: RawStale,
    link_health: RawLink,
    controller_watchdog: RawWatchdog,
    orientation_interlock: RawOrientation,
    enable_interlock: RawEnable,
    insertion_depth: RawDepth,
    respiratory_gate: RawGate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCycle {
    rule: String,
    rate_hz: f64,
    max_lateness_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoft {
    rule: String,
    margin_deg: f64,
    margin_mm: f64,
    stop_deceleration_fraction: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFollowing {
    rule: String,
    limit_deg: f64,
    limit_mm: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCurrent {
    rule: String,
    consecutive_states: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncoder {
    rule: String,
    jump_deg: f64,
    jump_mm: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStale {
    rule: String,
    controller_state_ms: f64,
    operator_heartbeat_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    rule: String,
    window_ms: f64,
    max_errors: u32,
    max_sequence_gap: u16,
    reply_deadline_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatchdog {
    rule: String,
    window_ms: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrientation {
    rule: String,
    in_tissue_depth_mm: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnable {
    rule: String,
    require_pedal: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDepth {
    rule: String,
    max_depth_mm: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    rule: String,
    deadline_ms: f64,
}
