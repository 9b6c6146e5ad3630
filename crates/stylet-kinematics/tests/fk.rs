//! Forward kinematics against the published UR5e DH parameters and against `k`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use nalgebra::{Isometry3, Translation3, UnitQuaternion, Vector3};
use proptest::prelude::*;

/// Standard DH product, metres -> mm: T = prod Rz(q) Tz(d) Tx(a) Rx(alpha).
fn ur5e_dh(q: &[f64]) -> Isometry3<f64> {
    let d = [0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996];
    let a = [0.0, -0.425, -0.3922, 0.0, 0.0, 0.0];
    let alpha = [std::f64::consts::FRAC_PI_2, 0.0, 0.0, std::f64::consts::FRAC_PI_2, -std::f64::consts::FRAC_PI_2, 0.0];
    let mut t = Isometry3::identity();
    for i in 0..6 {
        t =
            t * Isometry3::from_parts(
                Translation3::identity(),
                UnitQuaternion::from_axis_angle(&Vector3::z_axis(), q[i]),
            ) * Isometry3::from_parts(Translation3::new(a[i] * 1e3, 0.0, d[i] * 1e3), UnitQuaternion::identity())
                * Isometry3::from_parts(
                    Translation3::identity(),
                    UnitQuaternion::from_axis_angle(&Vector3::x_axis(), alpha[i]),
                );
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn fk_matches_the_published_dh_parameters(q in proptest::array::uniform6(-std::f64::consts::PI..std::f64::consts::PI)) {
        let arm = common::reference_arm("flange");
        prop_assert_eq!(arm.dof(), 6);
        let ours = arm.tip_pose(&q).to_nalgebra();
        let dh = ur5e_dh(&q);
        let dp = (ours.translation.vector - dh.translation.vector).norm();
        prop_assert!(dp < 1e-6, "position differs by {} mm", dp);
        prop_assert!(ours.rotation.angle_to(&dh.rotation) < 1e-9);
    }
}

#[test]
fn fk_matches_k_on_the_needle_chain() {
    let path = common::config_dir().join("stylet_arm.urdf");
    let arm = common::reference_arm("needle_tip");
    let chain = k::Chain::<f64>::from_urdf_file(&path).unwrap();
    let end = chain.find_link("needle_tip").unwrap();
    let serial = k::SerialChain::from_end(end);
    for (q, _) in common::random_lines(&arm, 200, 10.0, 7) {
        let mut q = q;
        q[6] = 42.0; // mm
        let mut q_k = q.clone();
        q_k[6] = 0.042; // k works in metres
        serial.set_joint_positions_unchecked(&q_k);
        let t = serial.end_transform();
        let ours = arm.tip_pose(&q).to_nalgebra();
        assert!((ours.translation.vector - t.translation.vector * 1e3).norm() < 1e-6);
        assert!(ours.rotation.angle_to(&t.rotation) < 1e-9);
    }
}

#[test]
fn jacobian_matches_finite_differences() {
    let arm = common::reference_arm("needle_tip");
    let mut points = Vec::new();
    let mut jac = nalgebra::Matrix6xX::zeros(arm.dof());
    for (q, _) in common::random_lines(&arm, 50, 10.0, 3) {
        let t0 = arm.tip_and_jacobian(&q, &mut points, &mut jac).to_nalgebra();
        for i in 0..arm.dof() {
            let h = 1e-6;
            let mut qh = q.clone();
            qh[i] += h;
            let t1 = arm.tip_pose(&qh).to_nalgebra();
            let dp = (t1.translation.vector - t0.translation.vector) / h;
            for r in 0..3 {
                assert!(
                    (dp[r] - jac[(r, i)]).abs() < 1e-3 * (1.0 + dp[r].abs()),
                    "joint {i} row {r}: {} vs {}",
                    dp[r],
                    jac[(r, i)]
                );
            }
        }
    }
}

/// The reference arm written as xacro (config/robot/arms/stylet_arm.urdf.xacro), expanded by the
/// real `xacro` (PyPI), is the arm of the URDF: the same joints, limits and forward kinematics;
/// and an argument of it reaches the arm. With CI set a missing `xacro` fails the test; elsewhere
/// it skips.
#[test]
fn the_xacro_arm_is_the_urdf_arm() {
    let xacro_file = common::config_dir().join("arms/stylet_arm.urdf.xacro");
    if std::process::Command::new("xacro").arg("--help").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "xacro is required in CI (.ci/run installs it from PyPI)");
        eprintln!("SKIPPED: no xacro on PATH (pip install xacro)");
        return;
    }
    let urdf = stylet_kinematics::Arm::from_urdf_file(
        &common::config_dir().join("stylet_arm.urdf"),
        "base_link",
        "needle_tip",
    )
    .unwrap();
    let xacro = stylet_kinematics::Arm::from_urdf_file(&xacro_file, "base_link", "needle_tip").unwrap();
    assert_eq!(urdf.dof(), xacro.dof());
    for (a, b) in urdf.joints.iter().zip(&xacro.joints) {
        assert_eq!(
            (&a.name, a.motion, a.lower, a.upper, a.velocity),
            (&b.name, b.motion, b.lower, b.upper, b.velocity)
        );
    }
    for k in 0..50 {
        let q: Vec<f64> = (0..urdf.dof()).map(|j| ((k * 7 + j * 3) % 11) as f64 * 0.25 - 1.25).collect();
        let (a, b) = (urdf.tip_pose(&q).to_nalgebra(), xacro.tip_pose(&q).to_nalgebra());
        assert!((a.translation.vector - b.translation.vector).norm() < 1e-9, "{q:?}");
        assert!(a.rotation.angle_to(&b.rotation) < 1e-12, "{q:?}");
    }
    // A file xacro refuses: its message, naming the file.
    let bad = std::env::temp_dir().join(format!("stylet-bad-{}.urdf.xacro", std::process::id()));
    std::fs::write(&bad, "<robot xmlns:xacro=\"http://www.ros.org/wiki/xacro\"><xacro:nope/></robot>").unwrap();
    let e = stylet_kinematics::Arm::from_urdf_file(&bad, "a", "b").unwrap_err().to_string();
    assert!(e.contains("cannot expand xacro") && e.contains(&bad.display().to_string()), "{e}");
    let _ = std::fs::remove_file(bad);
}
