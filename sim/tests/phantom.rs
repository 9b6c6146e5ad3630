//! Generated phantoms: marker detection never takes a rib, vessel, wire or streak, and the
//! detected markers, matched to the frame without labels and registered, recover `robot_from_ct`
//! at the tumour within 0.5 mm with sub-millimetre voxels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nalgebra::Vector3;
use stylet_core::frame::{Ct, Point, Robot, Vector};
use stylet_imaging::{detect, FiducialSettings};
use stylet_registration::{match_markers, register, Gates};
use stylet_sim::phantom::{generate, PhantomSpec, TumourSpec};

/// The registration frame (robot frame, mm) from config/robot/marker_frame.txt.
fn frame() -> Vec<Point<Robot>> {
    stylet_registration::read_points(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/robot/marker_frame.txt"),
    )
    .unwrap()
}

#[test]
fn detection_and_registration_on_generated_phantoms() {
    let mut worst = 0.0f64;
    for seed in 0..12 {
        // Every third phantom misses a bead, every third has two bead-like extras.
        let missing_beads = if seed % 3 == 1 { vec![seed as usize % 7] } else { Vec::new() };
        let extra_beads = if seed % 3 == 2 { 2 } else { 0 };
        let spec = PhantomSpec {
            seed,
            dims: [300, 300, 190],
            spacing_mm: [0.8, 0.8, 1.0],
            markers_in_robot: frame(),
            marker_diameter_mm: 4.0,
            noise_hu: 15.0,
            missing_beads: missing_beads.clone(),
            extra_beads,
            tumours: vec![TumourSpec::default()],
            metal_wire: true,
        };
        let ph = generate(&spec);
        let (found, rejected) = detect(&ph.volume, &FiducialSettings::default());
        // Every detection is a bead (never the rib, vessel, wire or its streaks).
        for f in &found {
            let c = f.center.to_nalgebra().coords;
            let nearest = ph
                .markers_in_ct
                .iter()
                .chain(&ph.extra_beads_in_ct)
                .map(|m| (m.to_nalgebra().coords - c).norm())
                .fold(f64::INFINITY, f64::min);
            assert!(nearest < 1.0, "seed {seed}: detection {c:?} is {nearest:.2} mm from any bead");
        }
        // The ribs (2000 HU cortical bone) and the wire pass the threshold and are rejected by size
        // and shape.
        assert!(rejected.iter().filter(|r| r.reason.starts_with("too large")).count() >= 6, "{rejected:?}");
        assert!(
            found.len() + missing_beads.len() >= frame().len() - 1,
            "seed {seed}: {} of {} markers found; rejected: {rejected:?}; truth {:?}",
            found.len(),
            frame().len(),
            ph.markers_in_ct
        );
        // Label-free correspondence, then registration.
        let detected: Vec<Point<Ct>> = found.iter().map(|f| f.center).collect();
        let pairs = match_markers(&detected, &frame(), 2.0, 4).unwrap();
        let ct: Vec<Point<Ct>> = pairs.iter().map(|(i, _)| detected[*i]).collect();
        let robot: Vec<Point<Robot>> = pairs.iter().map(|(_, k)| frame()[*k]).collect();
        let t = ph.tumour_in_ct;
        let reg = register(&ct, &robot, Some(t), &Gates::default()).unwrap();
        let truth = ph.ct_from_robot.inverse();
        let err = (reg.robot_from_ct * t).distance_mm(truth * t);
        worst = worst.max(err);
        assert!(err < 0.5, "seed {seed}: error at the tumour {err:.3} mm (predicted TRE {:?})", reg.predicted_tre_mm);
    }
    println!("worst error at the tumour over 12 phantoms: {worst:.3} mm");
}

#[test]
fn the_label_map_holds_every_structure_on_the_ct_grid() {
    let spec = PhantomSpec {
        seed: 3,
        dims: [220, 220, 160],
        spacing_mm: [1.0, 1.0, 1.0],
        markers_in_robot: frame(),
        marker_diameter_mm: 4.0,
        noise_hu: 0.0,
        missing_beads: Vec::new(),
        extra_beads: 0,
        tumours: vec![TumourSpec::default()],
        metal_wire: true,
    };
    let ph = generate(&spec);
    assert_eq!(
        (ph.labels.dims, ph.labels.origin, ph.labels.spacing_mm),
        (ph.volume.dims, ph.volume.origin, ph.volume.spacing_mm)
    );
    for (value, name) in stylet_sim::phantom::LABELS {
        let n = ph.labels.voxels.iter().filter(|v| **v == f32::from(value)).count();
        assert!(n > 0, "label {value} ({name}) is empty");
        // Noise-free: each structure has its own HU (streaks aside).
        if name == "liver" {
            let hu: Vec<f32> =
                ph.labels.voxels.iter().zip(&ph.volume.voxels).filter(|(l, _)| **l == 2.0).map(|(_, h)| *h).collect();
            assert!(hu.iter().filter(|h| **h == 60.0).count() > hu.len() * 9 / 10);
        }
    }
    assert_eq!(ph.labels.sample_nearest(ph.tumour_in_ct), Some(3.0));
}

#[test]
fn several_tumours_each_a_whole_sphere_and_no_metal_when_asked() {
    let tumours = vec![
        TumourSpec { offset_from_liver_centre_mm: [5.0, -5.0, 3.0], diameter_mm: 30.0 },
        TumourSpec { offset_from_liver_centre_mm: [-20.0, 15.0, -30.0], diameter_mm: 12.0 },
    ];
    let spec = PhantomSpec {
        seed: 5,
        dims: [240, 240, 190],
        spacing_mm: [1.0, 1.0, 1.0],
        markers_in_robot: frame(),
        marker_diameter_mm: 4.0,
        noise_hu: 0.0,
        missing_beads: Vec::new(),
        extra_beads: 0,
        tumours: tumours.clone(),
        metal_wire: false,
    };
    let ph = generate(&spec);
    assert_eq!(ph.tumours_in_ct.len(), 2);
    let tumour_voxels = ph.labels.voxels.iter().filter(|v| **v == 3.0).count() as f64;
    let expected: f64 = tumours.iter().map(|t| std::f64::consts::PI / 6.0 * t.diameter_mm.powi(3)).sum();
    assert!((tumour_voxels / expected - 1.0).abs() < 0.03, "{tumour_voxels} voxels vs {expected:.0} mm3");
    for (c, _) in &ph.tumours_in_ct {
        assert_eq!(ph.labels.sample_nearest(*c), Some(3.0));
    }
    // Hepatic veins and the vena cava: a vessel column behind the liver, all the way up.
    let vessel = ph.labels.voxels.iter().filter(|v| **v == 4.0).count();
    assert!(vessel > 20_000, "{vessel} vessel voxels");
    assert_eq!(ph.labels.voxels.iter().filter(|v| **v == 10.0).count(), 0, "metal without metal_wire");
    // Without the wire, every voxel at metal density belongs to a frame bead.
    let [nx, ny, _] = ph.volume.dims;
    for (idx, hu) in ph.volume.voxels.iter().enumerate() {
        if *hu >= 2500.0 {
            let p = ph.volume.ct_from_index((idx % nx) as f64, ((idx / nx) % ny) as f64, (idx / (nx * ny)) as f64);
            let p = Vector3::from(p.to_array());
            let d = ph.markers_in_ct.iter().map(|m| (m.to_nalgebra().coords - p).norm()).fold(f64::INFINITY, f64::min);
            assert!(d < 3.0, "{hu} HU at {p:?}, {d:.1} mm from the nearest bead");
        }
    }
}

#[test]
fn shipped_scenarios_load_and_a_tumour_outside_the_liver_is_named() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = stylet_sim::scenario::Scenario::load(&path).unwrap();
            assert!(!s.phantom.tumours.is_empty());
            n += 1;
        }
    }
    assert!(n >= 2);
    let text = std::fs::read_to_string(dir.join("easy.toml"))
        .unwrap()
        .replace("offset_from_liver_centre_mm = [5.0, -5.0, 3.0]", "offset_from_liver_centre_mm = [90.0, 0.0, 0.0]");
    let bad = std::env::temp_dir().join(format!("stylet-bad-scenario-{}.toml", std::process::id()));
    std::fs::write(&bad, text).unwrap();
    let err = stylet_sim::scenario::Scenario::load(&bad).unwrap_err().to_string();
    let _ = std::fs::remove_file(&bad);
    assert!(err.contains("phantom.tumours[0].offset_from_liver_centre_mm"), "{err}");
    assert!(err.contains("[90.0, 0.0, 0.0]"), "{err}");
}

#[test]
fn a_checkpoint_ct_shows_the_liver_where_breathing_carried_it_and_the_driver_measures_how_far() {
    let spec = PhantomSpec {
        seed: 5,
        dims: [300, 300, 190],
        spacing_mm: [0.8, 0.8, 1.0],
        markers_in_robot: frame(),
        marker_diameter_mm: 4.0,
        noise_hu: 15.0,
        missing_beads: Vec::new(),
        extra_beads: 0,
        tumours: vec![TumourSpec::default()],
        metal_wire: true,
    };
    let ph = generate(&spec);
    let moved = Vector3::new(0.4, -1.1, -3.2);
    let mut ct = ph.volume.clone();
    stylet_sim::phantom::displace_liver(&mut ct, &ph.volume, &ph.labels, Vector::from_nalgebra(moved));
    // Deep in the liver each voxel shows what the planning CT had `moved` back; the marker
    // frame on the skin (and so the CT-to-robot registration) stays where it was.
    let t = ph.tumour_in_ct.to_nalgebra().coords;
    for d in [Vector3::zeros(), Vector3::new(8.0, 0.0, 0.0), Vector3::new(0.0, 0.0, -9.0)] {
        let idx = ct.index_from_ct(Point::new(t.x + d.x, t.y + d.y, t.z + d.z)).unwrap().map(|x| x.round() as usize);
        let p = ct.ct_from_index(idx.x as f64, idx.y as f64, idx.z as f64).to_nalgebra().coords - moved;
        let was = ph.volume.sample_linear(Point::new(p.x, p.y, p.z)).unwrap();
        let now = f64::from(ct.get(idx.x, idx.y, idx.z).unwrap());
        assert!((now - was).abs() < 0.01, "at {d}: {now} against {was}");
    }
    for &p in &ph.markers_in_ct {
        assert_eq!(ct.sample_nearest(p), ph.volume.sample_nearest(p));
    }
    // A low-dose checkpoint CT with a needle in the liver: the liver's motion is measured on
    // its own voxels near the target within 0.3 mm.
    let tip = t + moved;
    stylet_sim::phantom::render_needle(
        &mut ct,
        Point::from_coords(tip + Vector3::new(-20.0, -70.0, 0.0)),
        Point::from_coords(tip),
        1.5,
    );
    stylet_sim::phantom::lower_dose(&mut ct, 15.0, 0.25, 9);
    let liver = |v: f32| matches!(v as u8, 2..=4);
    let got = stylet_imaging::organ_shift(
        &ph.volume,
        &ph.labels,
        &liver,
        &ct,
        Point::new(t.x, t.y, t.z),
        &stylet_imaging::OrganSettings::default(),
    )
    .unwrap();
    let err = (got.shift.to_nalgebra() - moved).norm();
    assert!(err < 0.3, "measured {:?} for {moved}: {err:.2} mm", got.shift);
}
