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
