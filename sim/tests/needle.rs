//! Needle detection in checkpoint CTs: a needle rendered into generated phantoms (metal shaft,
//! blooming, streaks) is found with its tip and axis, never confused with the clip or the beads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nalgebra::Vector3;
use stylet_core::frame::Point;
use stylet_imaging::{detect_needle, NeedleSettings};
use stylet_sim::phantom::{generate, render_needle, PhantomSpec, TumourSpec};

#[test]
fn tip_and_axis_of_an_inserted_needle() {
    let frame = stylet_registration::read_points(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/robot/marker_frame.txt"),
    )
    .unwrap();
    let base = generate(&PhantomSpec {
        seed: 3,
        dims: [200, 200, 120],
        spacing_mm: [0.8, 0.8, 1.0],
        markers_in_robot: frame,
        marker_diameter_mm: 4.0,
        noise_hu: 15.0,
        missing_beads: Vec::new(),
        extra_beads: 0,
        tumours: vec![TumourSpec { offset_from_liver_centre_mm: [5.0, -5.0, 3.0], diameter_mm: 16.0 }],
        metal_wire: true,
    });
    let target = base.tumour_in_ct.to_nalgebra().coords;
    let (mut worst_tip, mut worst_axis): (f64, f64) = (0.0, 0.0);
    // Three approaches (anterior; anterior-lateral and cranio-caudal tilt; steep), partial depths.
    for (k, (dir, depth_short_mm)) in [
        (Vector3::new(0.0, -1.0, 0.0), 0.0),
        (Vector3::new(-0.5, -0.8, 0.3), 6.0),
        (Vector3::new(0.3, -0.9, -0.35), 15.0),
    ]
    .into_iter()
    .enumerate()
    {
        let dir: Vector3<f64> = dir.normalize();
        let entry = target + dir * 70.0;
        // The tip stops short of the target on some (an intermediate checkpoint).
        let tip = target + dir * depth_short_mm + Vector3::new(0.37, -0.21, 0.13);
        let mut ct = base.volume.clone();
        render_needle(&mut ct, Point::from_coords(entry), Point::from_coords(tip), 1.5);
        for expected in [Some((Point::from_coords(entry), Point::from_coords(target))), None] {
            let found = detect_needle(&ct, expected, &NeedleSettings::default()).unwrap();
            let tip_err = (found.tip.to_nalgebra().coords - tip).norm();
            let axis = found.axis.to_nalgebra();
            let want = (tip - entry).normalize();
            let angle = axis.dot(&want).clamp(-1.0, 1.0).acos().to_degrees();
            println!(
                "needle {k} (expected line given: {}): tip error {tip_err:.3} mm, axis {angle:.3} deg, {} voxels",
                expected.is_some(),
                found.voxels
            );
            assert!(tip_err < 0.5, "needle {k}: tip error {tip_err} mm: {found:?}");
            assert!(angle < 1.0, "needle {k}: axis {angle} deg");
            worst_tip = worst_tip.max(tip_err);
            worst_axis = worst_axis.max(angle);
        }
    }
    println!("worst tip error {worst_tip:.3} mm, worst axis error {worst_axis:.3} deg");
    // No needle in the planning CT: the clip (20 mm of metal) is far from the expected path.
    let e = detect_needle(
        &base.volume,
        Some((Point::new(target.x, target.y - 70.0, target.z), Point::from_coords(target))),
        &NeedleSettings::default(),
    );
    assert!(e.is_err(), "{e:?}");
}
