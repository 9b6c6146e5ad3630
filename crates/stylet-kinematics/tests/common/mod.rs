#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use stylet_kinematics::{random_reachable_lines, Arm, IkOptions, NeedleLine};

pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/robot")
}

pub fn reference_arm(tip: &str) -> Arm {
    Arm::from_urdf_file(&config_dir().join("stylet_arm.urdf"), "base_link", tip).unwrap()
}

/// The reference arm's home (robot.toml), for the chain to `tip`.
pub fn home(arm: &Arm) -> Vec<f64> {
    let deg = [0.0, -90.0, 90.0, -90.0, -90.0, 0.0];
    arm.joints.iter().enumerate().map(|(i, _)| deg.get(i).map_or(0.0, |d: &f64| d.to_radians())).collect()
}

/// Random reachable needle lines (see `stylet_kinematics::random_reachable_lines`).
pub fn random_lines(arm: &Arm, n: usize, standoff: f64, seed: u64) -> Vec<(Vec<f64>, NeedleLine)> {
    let opts = IkOptions { standoff_mm: standoff, ..IkOptions::default() };
    random_reachable_lines(arm, n, &opts, seed)
}
