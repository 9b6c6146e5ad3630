//! The reference arm's config: the URDF and robot.toml agree, the keep-outs load, and a clinical
//! line is solved and its alignment move is clear of the keep-outs all the way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use stylet_core::config::{JointKind, RobotConfig};
use stylet_core::frame::Point;
use stylet_kinematics::{path_clearance, solve_all, Arm, KinematicsConfig, Motion, NeedleLine, RobotModel};
use stylet_safety::trajectory::{hard_ranges, Trajectory};

fn load() -> (KinematicsConfig, Arm, RobotConfig) {
    let cfg = KinematicsConfig::load(&common::config_dir().join("kinematics.toml")).unwrap();
    let arm = Arm::from_urdf_file(&cfg.urdf, &cfg.base_link, &cfg.tip_link).unwrap();
    let robot = RobotConfig::load(&common::config_dir().join("robot.toml")).unwrap();
    (cfg, arm, robot)
}

#[test]
fn urdf_and_robot_toml_describe_the_same_joints() {
    let model = RobotModel::load(&common::config_dir().join("..")).unwrap();
    assert_eq!(model.arm.dof(), model.robot.joints.len());
    assert!(stylet_kinematics::robot::disagreements(&model.robot, &model.arm).is_empty());
    for (a, r) in model.arm.joints.iter().zip(&model.robot.joints) {
        assert_eq!(a.name, r.name);
        assert_eq!(a.motion == Motion::Prismatic, r.kind == JointKind::Prismatic, "{}", a.name);
        assert!((a.lower - r.min).abs() < 1e-5 && (a.upper - r.max).abs() < 1e-5, "{}", a.name);
        assert!((a.velocity - r.max_velocity).abs() < 1e-5, "{}: {} against {}", a.name, a.velocity, r.max_velocity);
    }
}

/// A copy of the config folder's robot files with robot.toml edited by `edit`.
fn robot_with(tag: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stylet-robot-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(dir.join("robot")).unwrap();
    for f in ["kinematics.toml", "stylet_arm.urdf"] {
        std::fs::copy(common::config_dir().join(f), dir.join("robot").join(f)).unwrap();
    }
    let text = std::fs::read_to_string(common::config_dir().join("robot.toml")).unwrap();
    std::fs::write(dir.join("robot").join("robot.toml"), edit(text)).unwrap();
    dir
}

#[test]
fn a_robot_toml_that_disagrees_with_the_urdf_is_refused_naming_joint_field_and_values() {
    // A limit and a velocity changed: both named, with both values and both files.
    let dir = robot_with("limits", |t| {
        t.replace("min_deg = -160.0", "min_deg = -170.0")
            .replace("max_velocity_mm_s = 10.0", "max_velocity_mm_s = 12.0")
    });
    let e = RobotModel::load(&dir).unwrap_err().to_string();
    assert!(e.contains("robot.toml") && e.contains("stylet_arm.urdf"), "{e}");
    assert!(e.contains("elbow_joint: min -2.967") && e.contains("against the URDF's -2.79253 rad"), "{e}");
    assert!(e.contains("needle_insertion_joint: max_velocity 12 mm/s against the URDF's 10 mm/s"), "{e}");
    assert!(!e.contains("shoulder_pan_joint"), "only what disagrees: {e}");
    // Two joints swapped: the order is the chain's.
    let dir = robot_with("order", |t| {
        t.replacen("wrist_1_joint", "wrist_9_joint", 1).replacen("wrist_2_joint", "wrist_1_joint", 1).replacen(
            "wrist_9_joint",
            "wrist_2_joint",
            1,
        )
    });
    let e = RobotModel::load(&dir).unwrap_err().to_string();
    assert!(e.contains("wrist_2_joint, wrist_1_joint") && e.contains("against the URDF chain's"), "{e}");
    // A joint of another kind.
    let dir = robot_with("kind", |t| {
        t.replacen("kind = \"prismatic\"", "kind = \"revolute\"", 1)
            .replace("min_mm = -5.0", "min_deg = -5.0")
            .replace("max_mm = 200.0", "max_deg = 200.0")
            .replace("max_velocity_mm_s", "max_velocity_deg_s")
            .replace("max_acceleration_mm_s2", "max_acceleration_deg_s2")
            .replace("max_jerk_mm_s3", "max_jerk_deg_s3")
            .replace("home_mm", "home_deg")
    });
    let e = RobotModel::load(&dir).unwrap_err().to_string();
    assert!(e.contains("needle_insertion_joint: kind Revolute against the URDF's Prismatic"), "{e}");
}

#[test]
fn a_clinical_line_is_solved_clear_of_the_gantry_and_table_and_so_is_the_move_there() {
    let (cfg, arm, robot) = load();
    let line = NeedleLine { entry: Point::new(500.0, 300.0, 150.0), target: Point::new(520.0, 340.0, 40.0) };
    let home = robot.home();
    let sols = solve_all(&arm, &line, &home, &cfg.keepouts, &cfg.ik).unwrap();
    let best = &sols[0];
    assert!(best.clearance_mm > 0.0, "{best:?}");
    assert!(best.position_error_mm < 0.01 && best.axis_error_deg < 0.01);
    let t = Trajectory::point_to_point(&robot, &home, &best.joints, &hard_ranges(&robot), 0.5, 0.001).unwrap();
    let path: Vec<Vec<f64>> =
        (0..t.len()).step_by(10).map(|k| t.sample(k).unwrap().iter().map(|s| s.position).collect()).collect();
    let (clear, _, _) = path_clearance(&arm, &cfg.keepouts, path.iter().map(Vec::as_slice));
    // Reported either way: the procedure refuses a move whose path is not clear.
    assert!(clear.is_finite());
}

#[test]
fn path_clearance_finds_the_collision_in_the_middle_of_a_move() {
    let (cfg, arm, _) = load();
    let clearance = |q: &[f64]| path_clearance(&arm, &cfg.keepouts, std::iter::once(q)).0;
    // Find a pose that reaches down into the table by sweeping pan, shoulder and elbow.
    let home = common::home(&arm);
    let mut inside = None;
    'search: for i in 0..12 {
        for j in 0..12 {
            for k in 0..12 {
                let mut q = home.clone();
                q[0] = -std::f64::consts::PI + i as f64 * std::f64::consts::TAU / 12.0;
                q[1] = -std::f64::consts::PI + j as f64 * std::f64::consts::PI / 11.0;
                q[2] = -2.7 + k as f64 * 5.4 / 11.0;
                if clearance(&q) < 0.0 {
                    inside = Some(q);
                    break 'search;
                }
            }
        }
    }
    let inside = inside.expect("some pose of the sweep reaches the table");
    assert!(clearance(&home) > 0.0);
    let path = [home.clone(), inside, home.clone()];
    let (clear, at, volume) = path_clearance(&arm, &cfg.keepouts, path.iter().map(Vec::as_slice));
    assert!(clear < 0.0 && at == 1, "{clear} at {at} ({volume})");
}

#[test]
fn bad_kinematics_config_names_the_key() {
    let dir = std::env::temp_dir().join(format!("stylet-kin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(common::config_dir().join("kinematics.toml")).unwrap();
    let p = dir.join("kinematics.toml");
    std::fs::write(&p, text.replace("inner_radius_mm = 350.0", "inner_radius_mm = 1500.0")).unwrap();
    let e = KinematicsConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("keepout.cylinder[0].outer_radius_mm"), "{e}");
}

#[test]
fn needle_geometry_in_toml_matches_the_urdf_and_the_depth_limit() {
    let (cfg, _, _) = load();
    let flange = Arm::from_urdf_file(&cfg.urdf, &cfg.base_link, "flange").unwrap();
    let tip = Arm::from_urdf_file(&cfg.urdf, &cfg.base_link, &cfg.tip_link).unwrap();
    let q = common::home(&tip);
    let d = (tip.tip_in_robot(&q) - flange.tip_in_robot(&q[..6])).norm_mm();
    assert!(
        (d - cfg.needle.driver_length_mm).abs() < 1e-9,
        "URDF driver {d} mm, kinematics.toml {}",
        cfg.needle.driver_length_mm
    );
    let safety = stylet_safety::SafetyConfig::load_dir(&common::config_dir().join("..")).unwrap();
    assert!(safety.max_depth_mm < cfg.needle.usable_length_mm, "PATH-6 keeps a reserve below the usable length");
}

#[test]
fn a_skin_height_field_keeps_the_arm_above_it() {
    let (mut cfg, arm, robot) = load();
    let line = NeedleLine { entry: Point::new(500.0, 300.0, 150.0), target: Point::new(520.0, 340.0, 40.0) };
    // A skin surface at z = 150 mm around the entry: the tip stands 10 mm above it on the line, and
    // the arm (45 mm capsules) must stay clear of it elsewhere.
    let n = 41;
    cfg.keepouts.volumes.push(stylet_kinematics::KeepOut::HeightField {
        name: "skin".into(),
        origin_xy: nalgebra::Vector2::new(300.0, 100.0),
        spacing_mm: 10.0,
        nx: n,
        heights: vec![150.0 - 60.0; n * n],
    });
    let sols = solve_all(&arm, &line, &robot.home(), &cfg.keepouts, &cfg.ik).unwrap();
    assert!(sols.iter().all(|s| s.clearance_mm >= 0.0));
}
