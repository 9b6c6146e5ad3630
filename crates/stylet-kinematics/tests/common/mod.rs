#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use nalgebra::Vector3;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stylet_kinematics::{manipulability, Arm, IkOptions, Motion, NeedleLine};

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

/// Random reachable needle lines: random in-limit, non-singular configurations (prismatic joints at
/// 0; manipulability at least the solver's threshold, so a valid configuration exists) and the
/// lines they reach: entry `standoff` beyond the tip along the tool z axis, target 30-150 mm further.
pub fn random_lines(arm: &Arm, n: usize, standoff: f64, seed: u64) -> Vec<(Vec<f64>, NeedleLine)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let opts = IkOptions::default();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let q: Vec<f64> = arm
            .joints
            .iter()
            .map(|j| match j.motion {
                Motion::Prismatic => 0.0,
                Motion::Revolute => {
                    let lo = j.lower.max(-std::f64::consts::PI);
                    let hi = j.upper.min(std::f64::consts::PI);
                    rng.gen_range(lo..=hi)
                }
            })
            .collect();
        if manipulability(arm, &q, &opts) < opts.min_manipulability {
            continue;
        }
        let tip = arm.tip_pose(&q);
        let z = tip.rotation * Vector3::z();
        let entry = tip.translation.vector + z * standoff;
        let target = entry + z * rng.gen_range(30.0..150.0);
        out.push((q, NeedleLine { entry, target }));
    }
    out
}
