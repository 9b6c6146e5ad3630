//! The needle-axis IK on random reachable lines, on the reference arm and two other real arms.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use nalgebra::Vector3;
use stylet_core::frame::Point;
use stylet_kinematics::{
    check, insertion_path, solve_all, solve_first, Arm, IkFailure, IkOptions, InsertionError, KeepOut, KeepOuts,
    NeedleLine,
};

/// Verifies a solution independently by FK: tip within 0.01 mm of the stand-off point, axis within
/// 0.01 deg of the line, joints within limits.
fn verify(arm: &Arm, q: &[f64], line: &NeedleLine, standoff: f64) -> Result<(), String> {
    let (dp, angle, in_limits) = check(arm, q, line, standoff);
    if dp > 0.01 {
        return Err(format!("tip {dp} mm off"));
    }
    if angle > 0.01 {
        return Err(format!("axis {angle} deg off"));
    }
    if !in_limits {
        return Err(format!("joints out of limits: {q:?}"));
    }
    Ok(())
}

fn success_rate(arm: &Arm, seed: &[f64], n: usize, rng_seed: u64) -> (usize, usize, Vec<String>) {
    let opts = IkOptions::default();
    let mut ok = 0;
    let mut failures = Vec::new();
    for (_, line) in common::random_lines(arm, n, opts.standoff_mm, rng_seed) {
        match solve_first(arm, &line, seed, &KeepOuts::default(), &opts) {
            Ok(sol) => match verify(arm, &sol.joints, &line, opts.standoff_mm) {
                Ok(()) => ok += 1,
                Err(e) => failures.push(e),
            },
            Err(e) => failures.push(e.to_string()),
        }
    }
    (ok, n, failures)
}

#[test]
fn reference_arm_solves_ten_thousand_random_lines_from_home() {
    let arm = common::reference_arm("needle_tip");
    let home = common::home(&arm);
    let (ok, n, failures) = success_rate(&arm, &home, 10_000, 2026);
    let rate = ok as f64 / n as f64;
    assert!(rate >= 0.999, "success {ok}/{n}; first failures: {:?}", &failures[..failures.len().min(5)]);
}

#[test]
fn franka_panda_seven_axes() {
    let arm = Arm::from_urdf_file(&common::config_dir().join("arms/panda.urdf"), "panda_link0", "panda_link8").unwrap();
    assert_eq!(arm.dof(), 7);
    let seed = vec![0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785];
    let (ok, n, failures) = success_rate(&arm, &seed, 1000, 11);
    assert!(ok as f64 / n as f64 >= 0.999, "success {ok}/{n}; {:?}", &failures[..failures.len().min(5)]);
}

#[test]
fn abb_irb120_six_axes() {
    let arm = Arm::from_urdf_file(&common::config_dir().join("arms/abb_irb120.urdf"), "base_link", "tool0").unwrap();
    assert_eq!(arm.dof(), 6);
    let seed = vec![0.0; 6];
    let (ok, n, failures) = success_rate(&arm, &seed, 1000, 12);
    assert!(ok as f64 / n as f64 >= 0.999, "success {ok}/{n}; {:?}", &failures[..failures.len().min(5)]);
}

#[test]
fn every_distinct_solution_is_returned_ranked_and_verified() {
    let arm = common::reference_arm("needle_tip");
    let home = common::home(&arm);
    let opts = IkOptions::default();
    let lines = common::random_lines(&arm, 20, opts.standoff_mm, 99);
    let mut multi = 0;
    for (_, line) in &lines {
        let sols = solve_all(&arm, line, &home, &KeepOuts::default(), &opts).unwrap();
        for w in sols.windows(2) {
            assert!(w[0].score >= w[1].score, "ranked best first");
            assert!(w[0].joints.iter().zip(&w[1].joints).any(|(a, b)| (a - b).abs() > 1e-3), "distinct branches");
        }
        for s in &sols {
            verify(&arm, &s.joints, line, opts.standoff_mm).unwrap();
            assert!(s.manipulability >= opts.min_manipulability);
        }
        if sols.len() > 1 {
            multi += 1;
        }
    }
    assert!(multi > 0, "a 6R arm has several branches for most lines");
}

#[test]
fn the_needle_joint_is_held_during_alignment() {
    let arm = common::reference_arm("needle_tip");
    let mut seed = common::home(&arm);
    seed[6] = 0.0;
    let (_, line) = common::random_lines(&arm, 1, 10.0, 5).remove(0);
    let sol = solve_first(&arm, &line, &seed, &KeepOuts::default(), &IkOptions::default()).unwrap();
    assert_eq!(sol.joints[6], 0.0, "alignment never moves the insertion joint (INS-1)");
}

#[test]
fn unreachable_degenerate_and_colliding_lines_say_why() {
    let arm = common::reference_arm("needle_tip");
    let home = common::home(&arm);
    let opts = IkOptions::default();
    let far = NeedleLine { entry: Point::new(3000.0, 0.0, 0.0), target: Point::new(3100.0, 0.0, 0.0) };
    assert!(matches!(solve_first(&arm, &far, &home, &KeepOuts::default(), &opts), Err(IkFailure::OutOfReach { .. })));
    let same = NeedleLine { entry: Point::new(300.0, 0.0, 0.0), target: Point::new(300.0, 0.0, 0.0) };
    assert_eq!(solve_first(&arm, &same, &home, &KeepOuts::default(), &opts), Err(IkFailure::DegenerateLine));
    let (_, line) = common::random_lines(&arm, 1, 10.0, 8).remove(0);
    // A box around the whole workspace: every solution collides.
    let wall = KeepOuts {
        volumes: vec![KeepOut::Box {
            name: "wall".into(),
            min: Point::new(-2000.0, -2000.0, -2000.0),
            max: Point::new(2000.0, 2000.0, 2000.0),
        }],
        link_radius_mm: 40.0,
    };
    match solve_first(&arm, &line, &home, &wall, &opts) {
        Err(IkFailure::Collision { volume, .. }) => assert_eq!(volume, "wall"),
        other => panic!("expected a collision, got {other:?}"),
    }
    assert!(matches!(
        solve_first(&arm, &line, &[0.0; 3], &KeepOuts::default(), &opts),
        Err(IkFailure::SeedLength { got: 3, want: 7 })
    ));
}

#[test]
fn bad_urdf_and_missing_links_give_clear_errors() {
    let path = common::config_dir().join("stylet_arm.urdf");
    let e = Arm::from_urdf_file(&path, "base_link", "no_such_link").unwrap_err().to_string();
    assert!(e.contains("no_such_link") && e.contains("needle_tip"), "{e}");
    let e = Arm::from_urdf_file(&path, "needle_tip", "base_link").unwrap_err().to_string();
    assert!(e.contains("not below"), "{e}");
    let e = Arm::from_urdf_str("x.urdf", "<robot><link", "a", "b").unwrap_err().to_string();
    assert!(e.contains("x.urdf") && e.contains("not valid"), "{e}");
    let e = Arm::from_urdf_file(std::path::Path::new("/nonexistent.urdf"), "a", "b").unwrap_err().to_string();
    assert!(e.contains("/nonexistent.urdf"), "{e}");
}

/// Distance of a point from the line through `a` along unit `u`.
fn off_line(p: &Vector3<f64>, a: &Vector3<f64>, u: &Vector3<f64>) -> f64 {
    (p - a).cross(u).norm()
}

#[test]
fn insertion_with_a_needle_driver_moves_only_the_driver() {
    let arm = common::reference_arm("needle_tip");
    let home = common::home(&arm);
    let opts = IkOptions::default();
    let (_, line) = common::random_lines(&arm, 1, opts.standoff_mm, 21).remove(0);
    let aligned = solve_first(&arm, &line, &home, &KeepOuts::default(), &opts).unwrap().joints;
    let path = insertion_path(&arm, &line, &aligned, -opts.standoff_mm, 60.0, 1.0, &opts).unwrap();
    let u = (line.target - line.entry).to_nalgebra().normalize();
    for q in &path {
        assert_eq!(&q[..6], &aligned[..6], "orientation joints frozen (INS-1)");
        let tip = arm.tip_pose(q).to_nalgebra().translation.vector;
        assert!(off_line(&tip, &line.entry.to_nalgebra().coords, &u) < 1e-6);
    }
    let last = arm.tip_pose(path.last().unwrap()).to_nalgebra().translation.vector;
    assert!((last - (line.entry.to_nalgebra().coords + u * 60.0)).norm() < 1e-6);
}

#[test]
fn insertion_without_a_driver_is_a_cartesian_straight_line_within_a_tenth_of_a_millimetre() {
    let arm = Arm::from_urdf_file(&common::config_dir().join("arms/abb_irb120.urdf"), "base_link", "tool0").unwrap();
    let opts = IkOptions::default();
    let mut done = 0;
    for (q0, line) in common::random_lines(&arm, 40, opts.standoff_mm, 31) {
        let u = (line.target - line.entry).to_nalgebra().normalize();
        let path = match insertion_path(&arm, &line, &q0, -opts.standoff_mm, 30.0, 0.5, &opts) {
            Ok(p) => p,
            // Random lines can run out of the small arm's workspace: the error must say where.
            Err(e @ (InsertionError::LostLine { .. } | InsertionError::Discontinuous { .. })) => {
                assert!(e.to_string().contains("at depth"), "{e}");
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        done += 1;
        for w in path.windows(2) {
            // Waypoints and the joint-space midpoints between them stay on the line.
            let mid: Vec<f64> = w[0].iter().zip(&w[1]).map(|(a, b)| 0.5 * (a + b)).collect();
            for q in [w[0].clone(), mid] {
                let tip = arm.tip_pose(&q).to_nalgebra();
                let p = tip.translation.vector;
                assert!(
                    off_line(&p, &line.entry.to_nalgebra().coords, &u) <= 0.1,
                    "tip {} mm off the line",
                    off_line(&p, &line.entry.to_nalgebra().coords, &u)
                );
                let axis = (tip.rotation * Vector3::z()).dot(&u).clamp(-1.0, 1.0).acos().to_degrees();
                assert!(axis < 0.05, "axis {axis} deg off");
            }
        }
        let tip = arm.tip_pose(path.last().unwrap()).to_nalgebra().translation.vector;
        assert!((tip - (line.entry.to_nalgebra().coords + u * 30.0)).norm() < 0.01);
    }
    // Lines near the edge of the workspace may leave it within 30 mm; most must work.
    assert!(done >= 20, "only {done} of 40 insertions");
}
