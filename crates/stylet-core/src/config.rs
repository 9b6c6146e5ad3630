//! Strict config loading and the robot description.
//!
//! Every config file is TOML, read into a raw `serde` struct that rejects unknown keys, then
//! parsed into a domain type whose values are range-checked and converted to internal units
//! (millimetres, radians) exactly once. Errors name the file, the key and the value.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::units::rad_from_deg;

/// The most joints a robot config may declare (the wire protocol carries at most this many).
pub const MAX_JOINTS: usize = 8;

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The dotted key, e.g. `joints[2].max_deg`.
    pub key: String,
    /// The offending value as written (empty when the key is missing).
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// cannot read config file {path}: {reason}
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not as a source, so that a chain of causes does not
        /// print it twice).
        reason: std::io::Error,
    },
    /// {path}: not valid TOML for this file: {message}
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line, and unknown keys with the expected ones).
        message: String,
    },
    /// {path}: values out of range
    #[error("{}", render_problems(path, problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found, not only the first.
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if p.value.is_empty() {
            out.push_str(&format!("{}: `{}`: {}", path.display(), p.key, p.reason));
        } else {
            out.push_str(&format!("{}: `{}` = {}: {}", path.display(), p.key, p.value, p.reason));
        }
    }
    out
}

/// Reads and deserialises a TOML file into its raw form.
///
/// # Errors
/// [`ConfigError::Read`] or [`ConfigError::Syntax`] (which covers unknown keys and wrong types).
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|reason| ConfigError::Read { path: path.to_path_buf(), reason })?;
    parse_toml(path, &text)
}

/// Deserialises TOML text (already read from `path`) into its raw form.
///
/// # Errors
/// [`ConfigError::Syntax`].
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', "\n    "),
    })
}

/// Collects range problems while a raw config is parsed into its domain type.
#[derive(Debug, Default)]
pub struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    /// A checker with no problems yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem.
    pub fn problem(&mut self, key: impl Into<String>, value: impl fmt::Display, reason: impl Into<String>) {
        self.problems.push(Problem { key: key.into(), value: value.to_string(), reason: reason.into() });
    }

    /// Checks `lo <= value <= hi` (and finiteness), returning the value either way.
    pub fn range(&mut self, key: impl Into<String>, value: f64, lo: f64, hi: f64) -> f64 {
        if !value.is_finite() || value < lo || value > hi {
            self.problem(key, value, format!("must be within [{lo}, {hi}]"));
        }
        value
    }

    /// An optional setting: when given, checked within `[lo, hi]` and written to `into` (which
    /// keeps its default otherwise).
    pub fn optional(&mut self, key: impl Into<String>, value: Option<f64>, lo: f64, hi: f64, into: &mut f64) {
        if let Some(v) = value {
            *into = self.range(key, v, lo, hi);
        }
    }

    /// Checks `lo <= value <= hi` for a count, returning the value either way.
    pub fn count(&mut self, key: impl Into<String>, value: usize, lo: usize, hi: usize) -> usize {
        if !(lo..=hi).contains(&value) {
            self.problem(key, value, format!("must be within [{lo}, {hi}]"));
        }
        value
    }

    /// Checks `value > 0` (and finiteness).
    pub fn positive(&mut self, key: impl Into<String>, value: f64) -> f64 {
        if !value.is_finite() || value <= 0.0 {
            self.problem(key, value, "must be a positive number");
        }
        value
    }

    /// Records a problem unless `ok`.
    pub fn require(&mut self, ok: bool, key: impl Into<String>, value: impl fmt::Display, reason: impl Into<String>) {
        if !ok {
            self.problem(key, value, reason);
        }
    }

    /// Finishes: the parsed value when there was no problem.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing every problem.
    pub fn finish<T>(self, path: &Path, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::Invalid { path: path.to_path_buf(), problems: self.problems })
        }
    }
}

/// What a joint is for, which decides the interlocks that apply to it (INS-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JointRole {
    /// Positions and orients the needle; frozen while the needle is in tissue.
    Orientation,
    /// Advances the needle along its axis (the prismatic driver).
    Insertion,
}

/// How a joint moves; decides its internal unit (radians or millimetres).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JointKind {
    /// Rotates; internal unit radians, config unit degrees.
    Revolute,
    /// Slides; internal unit millimetres.
    Prismatic,
}

impl JointKind {
    /// The internal unit's name, for messages.
    #[must_use]
    pub fn unit(self) -> &'static str {
        match self {
            JointKind::Revolute => "rad",
            JointKind::Prismatic => "mm",
        }
    }
}

/// One joint's limits in internal units (rad or mm, per second powers).
#[derive(Clone, Debug, PartialEq)]
pub struct JointSpec {
    /// The joint's name (matches the URDF).
    pub name: String,
    /// Revolute or prismatic.
    pub kind: JointKind,
    /// Orientation or insertion.
    pub role: JointRole,
    /// Lower hard position limit.
    pub min: f64,
    /// Upper hard position limit.
    pub max: f64,
    /// Velocity limit (unit/s).
    pub max_velocity: f64,
    /// Acceleration limit (unit/s^2).
    pub max_acceleration: f64,
    /// Jerk limit (unit/s^3).
    pub max_jerk: f64,
    /// Home position.
    pub home: f64,
    /// Motor current limit, amperes.
    pub max_current_a: f64,
}

/// The robot as the supervisor and the simulated controller see it: joints in chain order.
#[derive(Clone, Debug, PartialEq)]
pub struct RobotConfig {
    /// The robot's name.
    pub name: String,
    /// Joints from base to tip.
    pub joints: Vec<JointSpec>,
}

impl RobotConfig {
    /// Index of the insertion joint, if the arm has one.
    #[must_use]
    pub fn insertion_joint(&self) -> Option<usize> {
        self.joints.iter().position(|j| j.role == JointRole::Insertion)
    }

    /// Home positions of every joint.
    #[must_use]
    pub fn home(&self) -> Vec<f64> {
        self.joints.iter().map(|j| j.home).collect()
    }

    /// Loads and checks `robot.toml`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawRobot = read_toml(path)?;
        Self::from_raw(path, raw)
    }

    /// Parses TOML text as if read from `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key and value.
    pub fn from_toml_str(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawRobot = parse_toml(path, text)?;
        Self::from_raw(path, raw)
    }

    fn from_raw(path: &Path, raw: RawRobot) -> Result<Self, ConfigError> {
        let mut c = Checker::new();
        c.require(!raw.joints.is_empty(), "joints", "[]", "at least one joint is required");
        c.require(
            raw.joints.len() <= MAX_JOINTS,
            "joints",
            raw.joints.len(),
            format!("at most {MAX_JOINTS} joints are supported by the wire protocol"),
        );
        let insertion = raw.joints.iter().filter(|j| j.role == JointRole::Insertion).count();
        c.require(insertion <= 1, "joints[].role", insertion, "at most one joint may have role \"insertion\"");
        let mut joints = Vec::with_capacity(raw.joints.len());
        for (i, j) in raw.joints.into_iter().enumerate() {
            joints.push(parse_joint(&mut c, i, j));
        }
        c.finish(path, RobotConfig { name: raw.name, joints })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRobot {
    name: String,
    joints: Vec<RawJoint>,
}

/// A joint as written: revolute joints give degrees (`*_deg`), prismatic ones millimetres (`*_mm`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJoint {
    name: String,
    kind: JointKind,
    role: JointRole,
    min_deg: Option<f64>,
    max_deg: Option<f64>,
    max_velocity_deg_s: Option<f64>,
    max_acceleration_deg_s2: Option<f64>,
    max_jerk_deg_s3: Option<f64>,
    home_deg: Option<f64>,
    min_mm: Option<f64>,
    max_mm: Option<f64>,
    max_velocity_mm_s: Option<f64>,
    max_acceleration_mm_s2: Option<f64>,
    max_jerk_mm_s3: Option<f64>,
    home_mm: Option<f64>,
    max_current_a: f64,
}

fn parse_joint(c: &mut Checker, i: usize, j: RawJoint) -> JointSpec {
    let key = |field: &str| format!("joints[{i}].{field}");
    let (suffix, other, scale) = match j.kind {
        JointKind::Revolute => ("deg", "mm", rad_from_deg(1.0)),
        JointKind::Prismatic => ("mm", "deg", 1.0),
    };
    let deg = [j.min_deg, j.max_deg, j.max_velocity_deg_s, j.max_acceleration_deg_s2, j.max_jerk_deg_s3, j.home_deg];
    let mm = [j.min_mm, j.max_mm, j.max_velocity_mm_s, j.max_acceleration_mm_s2, j.max_jerk_mm_s3, j.home_mm];
    let (mine, theirs) = match j.kind {
        JointKind::Revolute => (deg, mm),
        JointKind::Prismatic => (mm, deg),
    };
    let fields = ["min", "max", "max_velocity", "max_acceleration", "max_jerk", "home"];
    let units = ["", "", "_s", "_s2", "_s3", ""];
    if theirs.iter().any(Option::is_some) {
        c.problem(
            key(&format!("*_{other}")),
            format!("{:?}", j.kind),
            format!("a {:?} joint takes its values in {suffix}, not {other}", j.kind),
        );
    }
    let mut v = [0.0; 6];
    for (k, value) in mine.iter().enumerate() {
        let name = format!("{}_{suffix}{}", fields[k], units[k]);
        match value {
            Some(x) => v[k] = *x,
            None => c.problem(key(&name), "", "missing"),
        }
    }
    let [min, max, vel, acc, jerk, home] = v;
    c.range(key(&format!("min_{suffix}")), min, -1e6, 1e6);
    c.range(key(&format!("max_{suffix}")), max, -1e6, 1e6);
    c.require(min < max, key(&format!("max_{suffix}")), max, format!("must exceed min_{suffix} = {min}"));
    c.positive(key(&format!("max_velocity_{suffix}_s")), vel);
    c.positive(key(&format!("max_acceleration_{suffix}_s2")), acc);
    c.positive(key(&format!("max_jerk_{suffix}_s3")), jerk);
    c.require(
        home >= min && home <= max,
        key(&format!("home_{suffix}")),
        home,
        format!("must lie within [{min}, {max}]"),
    );
    c.range(key("max_current_a"), j.max_current_a, 0.0, 100.0);
    JointSpec {
        name: j.name,
        kind: j.kind,
        role: j.role,
        min: min * scale,
        max: max * scale,
        max_velocity: vel * scale,
        max_acceleration: acc * scale,
        max_jerk: jerk * scale,
        home: home * scale,
        max_current_a: j.max_current_a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "two"
[[joints]]
name = "a"
kind = "revolute"
role = "orientation"
min_deg = -90
max_deg = 90
max_velocity_deg_s = 30
max_acceleration_deg_s2 = 100
max_jerk_deg_s3 = 1000
home_deg = 0
max_current_a = 5
[[joints]]
name = "needle"
kind = "prismatic"
role = "insertion"
min_mm = 0
max_mm = 150
max_velocity_mm_s = 5
max_acceleration_mm_s2 = 20
max_jerk_mm_s3 = 200
home_mm = 0
max_current_a = 2
"#;

    #[test]
    fn parses_and_converts_degrees_once() {
        let r = RobotConfig::from_toml_str(Path::new("robot.toml"), GOOD).unwrap();
        assert_eq!(r.joints.len(), 2);
        assert!((r.joints[0].max - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
        assert_eq!(r.joints[1].max, 150.0);
        assert_eq!(r.insertion_joint(), Some(1));
    }

    #[test]
    fn unknown_key_is_rejected_with_file_and_key() {
        let text = GOOD.replace("home_mm = 0", "home_mm = 0\nspeed = 3");
        let e = RobotConfig::from_toml_str(Path::new("cfg/robot.toml"), &text).unwrap_err().to_string();
        assert!(e.contains("cfg/robot.toml") && e.contains("speed"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_all_reported_with_key_and_value() {
        let text =
            GOOD.replace("max_deg = 90", "max_deg = -100").replace("max_velocity_mm_s = 5", "max_velocity_mm_s = -1");
        let e = RobotConfig::from_toml_str(Path::new("robot.toml"), &text).unwrap_err().to_string();
        assert!(e.contains("`joints[0].max_deg` = -100"), "{e}");
        assert!(
            e.contains("`joints[1].max_velocity_mm_s_s` = -1") || e.contains("`joints[1].max_velocity_mm_s` = -1"),
            "{e}"
        );
    }

    #[test]
    fn wrong_unit_for_the_joint_kind_is_named() {
        let text = GOOD.replace("min_mm = 0", "min_deg = 0");
        let e = RobotConfig::from_toml_str(Path::new("robot.toml"), &text).unwrap_err().to_string();
        assert!(e.contains("joints[1]") && e.contains("min_mm") && e.contains("missing"), "{e}");
    }
}
