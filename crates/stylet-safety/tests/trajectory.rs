//! Property: sampled point-to-point profiles never exceed the fraction of the limits they were
//! planned for, all joints arrive together, and the last sample is exactly the goal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use proptest::prelude::*;
use stylet_safety::trajectory::{hard_ranges, Trajectory};

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn profiles_respect_the_limits_and_end_exactly_on_the_goal(
        from_f in proptest::collection::vec(0.0f64..1.0, 7),
        to_f in proptest::collection::vec(0.0f64..1.0, 7),
        fraction in 0.05f64..1.0,
    ) {
        let cfg = common::config();
        let robot = &cfg.robot;
        let lerp = |f: &[f64]| -> Vec<f64> { robot.joints.iter().zip(f).map(|(j, x)| j.min + x * (j.max - j.min)).collect() };
        let (from, to) = (lerp(&from_f), lerp(&to_f));
        let dt = cfg.dt();
        let t = Trajectory::point_to_point(robot, &from, &to, &hard_ranges(robot), fraction, dt).unwrap();
        prop_assert_eq!(t.start(), &from[..]);
        prop_assert_eq!(t.goal(), to.clone(), "ends exactly on the goal");
        let mut q_prev = from.clone();
        let mut v_prev = [0.0; 7];
        let mut a_prev = [0.0; 7];
        for k in 0..t.len() {
            let s = t.sample(k).unwrap();
            for (i, j) in robot.joints.iter().enumerate() {
                let q = s[i].position;
                let v = (q - q_prev[i]) / dt;
                let a = (v - v_prev[i]) / dt;
                let jerk = (a - a_prev[i]) / dt;
                let tol = 1.0 + 1e-6;
                prop_assert!(q >= j.min.min(from[i]) - 1e-12 && q <= j.max.max(from[i]) + 1e-12);
                prop_assert!(v.abs() <= fraction * j.max_velocity * tol + 1e-9, "joint {} v {} > {}", i, v, fraction * j.max_velocity);
                prop_assert!(f64::from(s[i].velocity).abs() <= fraction * j.max_velocity * tol + 1e-6);
                prop_assert!(a.abs() <= fraction * j.max_acceleration * tol + 1e-6, "joint {} a {} > {}", i, a, fraction * j.max_acceleration);
                prop_assert!(jerk.abs() <= fraction * j.max_jerk * tol + 1e-3, "joint {} jerk {} > {}", i, jerk, fraction * j.max_jerk);
                q_prev[i] = q;
                v_prev[i] = v;
                a_prev[i] = a;
            }
        }
        // Everyone arrives together: no joint is still moving before the last sample and all are
        // at rest after it (velocity feed-forward zero at the end).
        let last = t.sample(t.len() - 1).unwrap();
        prop_assert!(last.iter().all(|s| s.velocity.abs() < 1e-6));
    }
}
