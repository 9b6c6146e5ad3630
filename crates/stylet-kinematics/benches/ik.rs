//! IK time on the reference arm: Stylet's 5-DOF needle-axis solver and `k`'s 6-DOF
//! JacobianIkSolver on the same random reachable lines from the same home seed.
//! (Success rates and the KDL peer: `bench/ik_side_by_side.sh`.)
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use stylet_kinematics::{random_reachable_lines, solve_first, Arm, KeepOuts, KinematicsConfig};

fn ik(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/robot");
    let kin = KinematicsConfig::load(&dir.join("kinematics.toml")).unwrap();
    let arm = Arm::from_urdf_file(&kin.urdf, &kin.base_link, &kin.tip_link).unwrap();
    let home: Vec<f64> = [0.0f64, -90.0, 90.0, -90.0, -90.0, 0.0, 0.0]
        .iter()
        .enumerate()
        .map(|(i, d)| if i < 6 { d.to_radians() } else { 0.0 })
        .collect();
    let lines = random_reachable_lines(&arm, 256, &kin.ik, 77);
    let none = KeepOuts::default();
    let mut g = c.benchmark_group("ik");
    let mut k = 0;
    g.bench_function("stylet_5dof_needle_axis", |b| {
        b.iter(|| {
            let (_, line) = &lines[k % lines.len()];
            k += 1;
            black_box(solve_first(&arm, line, &home, &none, &kin.ik).ok())
        });
    });
    let baseline = stylet_kinematics::baseline::KBaseline::new(&kin.urdf, &arm).unwrap();
    let targets: Vec<_> = lines.iter().map(|(q, _)| arm.tip_pose(q)).collect();
    let mut k = 0;
    g.bench_function("k_jacobian_6dof_pose", |b| {
        b.iter(|| {
            let t = &targets[k % targets.len()];
            k += 1;
            black_box(baseline.solve(&home, t).is_some())
        });
    });
    g.finish();
}

criterion_group!(benches, ik);
criterion_main!(benches);
