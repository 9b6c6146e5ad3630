//! Rigid registration: exact recovery, noise, the TRE prediction against Monte Carlo, degenerate
//! sets, quality gates and label-free matching.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion, Vector3};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stylet_core::frame::{Ct, Point, Robot};
use stylet_registration::{match_markers, predicted_tre, register, umeyama, Gates, RegistrationError};

/// An asymmetric 8-marker frame, ~150 mm across (all inter-marker distances distinct).
fn frame() -> Vec<Vector3<f64>> {
    vec![
        Vector3::new(0.0, 0.0, 0.0),
        Vector3::new(120.0, 0.0, 0.0),
        Vector3::new(0.0, 90.0, 0.0),
        Vector3::new(135.0, 80.0, 10.0),
        Vector3::new(60.0, 140.0, 35.0),
        Vector3::new(20.0, 40.0, 70.0),
        Vector3::new(100.0, 30.0, 55.0),
        Vector3::new(75.0, 110.0, 80.0),
    ]
}

fn gaussian(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn ct_pts(v: &[Vector3<f64>]) -> Vec<Point<Ct>> {
    v.iter().map(|p| Point::new(p.x, p.y, p.z)).collect()
}

fn robot_pts(v: &[Vector3<f64>]) -> Vec<Point<Robot>> {
    v.iter().map(|p| Point::new(p.x, p.y, p.z)).collect()
}

fn transform(ax: f64, ay: f64, az: f64, t: [f64; 3]) -> Isometry3<f64> {
    Isometry3::from_parts(Translation3::new(t[0], t[1], t[2]), UnitQuaternion::from_euler_angles(ax, ay, az))
}

proptest! {
    #[test]
    fn exact_points_give_the_exact_transform(
        ax in -3.1f64..3.1, ay in -1.5f64..1.5, az in -3.1f64..3.1,
        t in proptest::array::uniform3(-800.0f64..800.0),
    ) {
        let truth = transform(ax, ay, az, t);
        let ct = frame();
        let robot: Vec<_> = ct.iter().map(|p| (truth * Point3::from(*p)).coords).collect();
        let reg = register(&ct_pts(&ct), &robot_pts(&robot), None, &Gates::default()).unwrap();
        let got = reg.robot_from_ct.to_nalgebra();
        prop_assert!((got.translation.vector - truth.translation.vector).norm() < 1e-8);
        prop_assert!(got.rotation.angle_to(&truth.rotation) < 1e-10);
        prop_assert!(reg.fre_rms_mm < 1e-8);
    }

    #[test]
    fn noisy_coplanar_sets_never_give_a_reflection(seed in 0u64..10_000, noise in 0.0f64..2.0) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let ct: Vec<Vector3<f64>> = (0..5).map(|_| Vector3::new(rng.gen_range(-50.0..50.0), rng.gen_range(-50.0..50.0), 0.0)).collect();
        let truth = transform(rng.gen_range(-3.0..3.0), rng.gen_range(-1.0..1.0), rng.gen_range(-3.0..3.0), [10.0, 20.0, 30.0]);
        let robot: Vec<_> = ct.iter().map(|p| (truth * Point3::from(*p)).coords + Vector3::new(gaussian(&mut rng), gaussian(&mut rng), gaussian(&mut rng)) * noise).collect();
        let t: stylet_core::frame::Transform<Robot, Ct> = umeyama(&ct_pts(&ct), &robot_pts(&robot)).unwrap();
        let t = t.to_nalgebra();
        prop_assert!((t.rotation.to_rotation_matrix().matrix().determinant() - 1.0).abs() < 1e-9);
    }
}

#[test]
fn predicted_tre_matches_monte_carlo_within_ten_percent() {
    // Fitzpatrick-West-Maurer is an expectation: check it against 4000 noisy registrations.
    let fid = frame();
    let truth = transform(0.3, -0.2, 1.1, [400.0, -100.0, 250.0]);
    let clean: Vec<_> = fid.iter().map(|p| (truth * Point3::from(*p)).coords).collect();
    let sigma = 0.3; // per axis, mm
    let fle_rms = sigma * 3f64.sqrt();
    let mut rng = SmallRng::seed_from_u64(42);
    for target in [Vector3::new(70.0, 60.0, 40.0), Vector3::new(70.0, 60.0, -150.0), Vector3::new(-200.0, 250.0, 40.0)]
    {
        let mut sum = 0.0;
        let trials = 4000;
        for _ in 0..trials {
            let noisy_ct: Vec<_> = fid
                .iter()
                .map(|p| p + Vector3::new(gaussian(&mut rng), gaussian(&mut rng), gaussian(&mut rng)) * sigma)
                .collect();
            let noisy_robot: Vec<_> = clean
                .iter()
                .map(|p| p + Vector3::new(gaussian(&mut rng), gaussian(&mut rng), gaussian(&mut rng)) * sigma)
                .collect();
            let t = umeyama(&ct_pts(&noisy_ct), &robot_pts(&noisy_robot)).unwrap().to_nalgebra();
            let e = (t * Point3::from(target) - truth * Point3::from(target)).norm();
            sum += e * e;
        }
        let empirical = (sum / trials as f64).sqrt();
        // Both sets are noisy: the effective FLE is sqrt(2) times one set's.
        let predicted = predicted_tre(&ct_pts(&fid), ct_pts(&[target])[0], fle_rms * 2f64.sqrt());
        let ratio = empirical / predicted;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "target {target:?}: empirical {empirical:.4} mm, predicted {predicted:.4} mm"
        );
    }
}

#[test]
fn degenerate_and_coplanar_sets_get_a_clear_result() {
    let line: Vec<_> = (0..5).map(|k| Vector3::new(k as f64 * 10.0, 0.0, 0.0)).collect();
    let e = register(&ct_pts(&line), &robot_pts(&line), None, &Gates::default()).unwrap_err();
    assert!(matches!(e, RegistrationError::Collinear { .. }), "{e}");
    let two = &frame()[..2];
    assert!(matches!(
        register(&ct_pts(two), &robot_pts(two), None, &Gates::default()),
        Err(RegistrationError::TooFew { n: 2, .. })
    ));
    let flat: Vec<_> = frame().iter().map(|p| Vector3::new(p.x, p.y, 0.0)).collect();
    let reg = register(&ct_pts(&flat), &robot_pts(&flat), None, &Gates::default()).unwrap();
    assert!(reg.coplanar);
    assert!(!register(&ct_pts(&frame()), &robot_pts(&frame()), None, &Gates::default()).unwrap().coplanar);
    let e = register(&ct_pts(&frame()), &robot_pts(&frame()[..5]), None, &Gates::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "8 CT points but 5 robot points: point-list registration needs one robot point per CT point"
    );
}

#[test]
fn gates_refuse_a_moved_marker_and_a_target_far_from_the_markers() {
    let ct = frame();
    let mut robot = ct.clone();
    robot[4].z += 5.0;
    match register(&ct_pts(&ct), &robot_pts(&robot), None, &Gates::default()) {
        Err(RegistrationError::ResidualTooLarge { index, .. }) => assert_eq!(index, 4),
        other => panic!("expected a residual refusal, got {other:?}"),
    }
    // The leave-one-out residual points at the moved marker even under the gate's radar.
    let gates = Gates { max_residual_mm: 100.0, ..Gates::default() };
    let reg = register(&ct_pts(&ct), &robot_pts(&robot), None, &gates).unwrap();
    let worst = reg.markers.iter().max_by(|a, b| a.leave_one_out_mm.total_cmp(&b.leave_one_out_mm)).unwrap();
    assert_eq!(worst.index, 4);
    // A target 2 m away magnifies any FLE beyond 1 mm.
    let gates = Gates { fle_mm: Some(0.5), ..Gates::default() };
    let far = Point::<Ct>::new(2000.0, 2000.0, 2000.0);
    assert!(matches!(
        register(&ct_pts(&ct), &robot_pts(&ct), Some(far), &gates),
        Err(RegistrationError::TreTooLarge { .. })
    ));
    let near = Point::<Ct>::new(70.0, 60.0, 40.0);
    let reg = register(&ct_pts(&ct), &robot_pts(&ct), Some(near), &gates).unwrap();
    assert!(reg.predicted_tre_mm.unwrap() < 0.3);
}

#[test]
fn matching_survives_shuffling_missing_and_extra_detections() {
    let mut rng = SmallRng::seed_from_u64(7);
    for trial in 0..50 {
        let model = frame();
        let truth = transform(
            rng.gen_range(-3.0..3.0),
            rng.gen_range(-1.2..1.2),
            rng.gen_range(-3.0..3.0),
            [rng.gen_range(-300.0..300.0), 0.0, 100.0],
        );
        // Detected in CT: the model moved, with 0.3 mm noise, one marker missing, two extra blobs.
        let missing = trial % model.len();
        let mut detected: Vec<(Option<usize>, Vector3<f64>)> = model
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != missing)
            .map(|(k, p)| {
                (
                    Some(k),
                    (truth * Point3::from(*p)).coords
                        + Vector3::new(gaussian(&mut rng), gaussian(&mut rng), gaussian(&mut rng)) * 0.3,
                )
            })
            .collect();
        for _ in 0..2 {
            let p = (truth
                * Point3::from(Vector3::new(
                    rng.gen_range(-50.0..200.0),
                    rng.gen_range(-50.0..200.0),
                    rng.gen_range(-50.0..150.0),
                )))
            .coords;
            detected.push((None, p));
        }
        // Shuffle.
        for i in (1..detected.len()).rev() {
            let j = rng.gen_range(0..=i);
            detected.swap(i, j);
        }
        let points: Vec<_> = detected.iter().map(|(_, p)| *p).collect();
        let pairs = match_markers(&ct_pts(&points), &robot_pts(&model), 2.0, 5).unwrap();
        assert!(pairs.len() >= model.len() - 1, "trial {trial}: {} pairs", pairs.len());
        for (i, k) in pairs {
            assert_eq!(detected[i].0, Some(k), "trial {trial}: detection {i} taken for marker {k}");
        }
    }
    let e = match_markers(&ct_pts(&[Vector3::zeros(), Vector3::x()]), &robot_pts(&frame()), 1.0, 4).unwrap_err();
    assert!(e.to_string().contains("no consistent correspondence"), "{e}");
}
