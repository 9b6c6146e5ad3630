//! Verification from the post-ablation CT (issue 18) on simulated worlds with known zones: the
//! phantom's planning CT, a true zone (the device's ellipsoid, or the heat-sunk shape beside the
//! middle hepatic vein), the post-ablation contrast CT rendered from it with the liver moved by
//! another breath-hold; verification must find the zone (Dice >= 0.9 with the truth), the liver's
//! shift, and the minimal margin within 1 mm of the truth's, and say whether VER-1 holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nalgebra::Vector3;
use stylet_core::frame::{Ct, Point, Robot, Transform, Vector};
use stylet_imaging::Volume;
use stylet_planning::heat_sink::{sink_points, HeatSink, ZoneShape};
use stylet_sim::phantom::{generate, Phantom, PhantomSpec, TumourSpec};
use stylet_sim::post_ablation::{render_post_ablation, Ablated, Look};
use stylet_verification::{verify, VerifyInput, VerifySettings};

fn phantom(seed: u64, offset: [f64; 3], diameter_mm: f64) -> Phantom {
    let frame: Vec<Point<Robot>> = [
        [0.0, 0.0, 0.0],
        [60.0, 0.0, 0.0],
        [0.0, 45.0, 0.0],
        [60.0, 45.0, 10.0],
        [30.0, 20.0, 25.0],
        [15.0, 40.0, 15.0],
        [45.0, 10.0, 20.0],
    ]
    .iter()
    .map(|p| Point::new(p[0], p[1], p[2]))
    .collect();
    generate(&PhantomSpec {
        seed,
        dims: [300, 300, 190],
        spacing_mm: [0.8, 0.8, 1.0],
        markers_in_robot: frame,
        marker_diameter_mm: 4.0,
        noise_hu: 15.0,
        missing_beads: Vec::new(),
        extra_beads: 0,
        tumours: vec![TumourSpec { offset_from_liver_centre_mm: offset, diameter_mm }],
        metal_wire: false,
    })
}

fn is_liver(l: f32) -> bool {
    [2.0, 3.0, 4.0].contains(&l)
}

/// The signed distance from each tumour surface voxel to the surface of `zone` (a mask), by
/// brute force over the zone's boundary voxels: the truth's margin.
fn true_margin(grid: &Volume, tumour: &[usize], zone: &[bool]) -> f64 {
    let [nx, ny, nz] = grid.dims;
    let at = |i: usize, j: usize, k: usize| (k * ny + j) * nx + i;
    let ijk = |x: usize| [x % nx, (x / nx) % ny, x / (nx * ny)];
    let is_t: std::collections::HashSet<usize> = tumour.iter().copied().collect();
    let face = |x: usize, m: &dyn Fn(usize) -> bool| {
        let [i, j, k] = ijk(x);
        [
            (i > 0).then(|| at(i - 1, j, k)),
            (i + 1 < nx).then(|| at(i + 1, j, k)),
            (j > 0).then(|| at(i, j - 1, k)),
            (j + 1 < ny).then(|| at(i, j + 1, k)),
            (k > 0).then(|| at(i, j, k - 1)),
            (k + 1 < nz).then(|| at(i, j, k + 1)),
        ]
        .iter()
        .any(|q| q.is_none_or(|q| !m(q)))
    };
    // The zone's surface: midpoints between a zone voxel and a face neighbour outside it.
    let mut wall = Vec::new();
    for (x, _) in zone.iter().enumerate().filter(|(_, z)| **z) {
        let [i, j, k] = ijk(x);
        for (q, d) in [
            (i.checked_sub(1).map(|a| at(a, j, k)), 0),
            ((i + 1 < nx).then(|| at(i + 1, j, k)), 0),
            (j.checked_sub(1).map(|a| at(i, a, k)), 1),
            ((j + 1 < ny).then(|| at(i, j + 1, k)), 1),
            (k.checked_sub(1).map(|a| at(i, j, a)), 2),
            ((k + 1 < nz).then(|| at(i, j, k + 1)), 2),
        ] {
            if let Some(q) = q.filter(|q| !zone[*q]) {
                let (p, r) = (grid.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords, {
                    let [a, b, c] = ijk(q);
                    grid.ct_from_index(a as f64, b as f64, c as f64).to_nalgebra().coords
                });
                let _ = d;
                wall.push((p + r) * 0.5);
            }
        }
    }
    tumour
        .iter()
        .copied()
        .filter(|&t| face(t, &|q| is_t.contains(&q)))
        .map(|t| {
            let [i, j, k] = ijk(t);
            let p = grid.ct_from_index(i as f64, j as f64, k as f64).to_nalgebra().coords;
            let d = wall.iter().map(|w| (w - p).norm()).fold(f64::INFINITY, f64::min);
            if zone[t] {
                d
            } else {
                -d
            }
        })
        .fold(f64::INFINITY, f64::min)
}

struct Case {
    name: &'static str,
    seed: u64,
    tumour_offset: [f64; 3],
    tumour_mm: f64,
    /// The zone's centre from the tumour's, mm, and its axis.
    zone_offset: [f64; 3],
    axis: [f64; 3],
    heat_sink: bool,
    liver_shift: [f64; 3],
    /// The patient moved on the table between the CTs: a rotation about z, degrees, and a
    /// translation, mm (the markers on the skin move with the patient).
    table_motion: Option<(f64, [f64; 3])>,
}

fn run(c: &Case) {
    let ph = phantom(c.seed, c.tumour_offset, c.tumour_mm);
    let tumour_centre = ph.tumour_in_ct.to_nalgebra().coords;
    let centre = Point::<Ct>::from_coords(tumour_centre + Vector3::from(c.zone_offset));
    let axis = Vector3::from(c.axis).normalize();
    let mut shape = ZoneShape::ellipsoid(centre, axis, 52.2, 33.3);
    if c.heat_sink {
        let vessel: Vec<bool> = ph.labels.voxels.iter().map(|l| *l == 4.0).collect();
        let hs = HeatSink::default();
        let sinks = sink_points(&ph.labels, &vessel, centre, 45.0, &hs);
        shape = shape.with_heat_sinks(&sinks, &hs);
        assert!(shape.heat_sunk(), "{}: no heat sink near the zone", c.name);
    }
    // The truth: the shape where the tissue shows it.
    let tissue: Vec<bool> = ph.labels.voxels.iter().map(|l| is_liver(*l)).collect();
    let truth: Vec<bool> = shape.mask(&ph.labels).iter().zip(&tissue).map(|(z, t)| *z && *t).collect();
    let tip = Point::<Ct>::from_coords(centre.to_nalgebra().coords + axis * 5.0);
    let entry = Point::<Ct>::from_coords(tip.to_nalgebra().coords + axis * 120.0);
    let shift = Vector::<Ct>::new(c.liver_shift[0], c.liver_shift[1], c.liver_shift[2]);
    let post = render_post_ablation(
        &ph.volume,
        &ph.labels,
        &[Ablated { zone: truth.clone(), tip, entry }],
        shift,
        &Look::default(),
        1.0,
        c.seed,
    );
    let tumour: Vec<usize> = ph.labels.voxels.iter().enumerate().filter(|(_, l)| **l == 3.0).map(|(i, _)| i).collect();
    // The patient moved on the table: the whole post CT moved rigidly, found from the markers.
    let (post, pre_from_post) = match c.table_motion {
        None => (post, Transform::identity()),
        Some((deg, t)) => {
            let moved_from_pre = Transform::<Ct, Ct>::from_parts(
                nalgebra::UnitQuaternion::from_axis_angle(&Vector3::z_axis(), deg.to_radians()),
                t,
            );
            let pre_from_moved = moved_from_pre.inverse();
            let mut moved = post.clone();
            let [nx, ny, nz] = post.dims;
            for k in 0..nz {
                for j in 0..ny {
                    for i in 0..nx {
                        let p = post.ct_from_index(i as f64, j as f64, k as f64);
                        moved.voxels[(k * ny + j) * nx + i] =
                            post.sample_linear(pre_from_moved * p).unwrap_or(-1000.0) as f32;
                    }
                }
            }
            let settings = stylet_imaging::FiducialSettings::default();
            let beads = |v: &Volume| -> Vec<Point<Ct>> {
                stylet_imaging::detect(v, &settings).0.iter().map(|m| m.center).collect()
            };
            let (t_found, rms) = stylet_verification::body_motion(
                &beads(&ph.volume),
                &beads(&moved),
                VerifySettings::default().marker_pairing_mm,
            )
            .unwrap_or_else(|| panic!("{}: the markers were not paired", c.name));
            let error = (t_found * Point::<Ct>::from_coords(tumour_centre))
                .distance_mm(pre_from_moved * Point::from_coords(tumour_centre));
            eprintln!(
                "{}: the table motion from the markers, RMS {rms:.2} mm, {error:.2} mm off at the tumour",
                c.name
            );
            assert!(error < 0.5, "{}: the body motion {error} mm off at the tumour", c.name);
            (moved, t_found)
        }
    };
    let input = VerifyInput {
        pre: &ph.volume,
        post: &post,
        labels: &ph.labels,
        is_liver: &is_liver,
        tumour: &tumour,
        seed: centre,
        pre_from_post,
    };
    let v = verify(&input, &VerifySettings::default()).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let found = v.zone.to_full(ph.volume.dims);
    let both = found.iter().zip(&truth).filter(|(a, b)| **a && **b).count();
    let dice = 2.0 * both as f64 / (found.iter().filter(|x| **x).count() + truth.iter().filter(|x| **x).count()) as f64;
    let margin = true_margin(&ph.volume, &tumour, &truth);
    let shift_error = (v.liver_shift.to_nalgebra() - shift.to_nalgebra()).norm();
    eprintln!(
        "{}: Dice {dice:.3}, margin {:.2} mm (truth {margin:.2}), liver shift error {shift_error:.2} mm, levels {:?}, under-treated {:.1} % {:?}",
        c.name,
        v.min_margin.margin_mm,
        v.levels_hu,
        100.0 * v.under_treated_fraction,
        v.where_under_treated()
    );
    assert!(dice >= 0.9, "{}: Dice {dice}", c.name);
    assert!(
        (v.min_margin.margin_mm - margin).abs() <= 1.0,
        "{}: margin {} vs {margin}",
        c.name,
        v.min_margin.margin_mm
    );
    assert!(shift_error <= 1.0, "{}: the liver's shift {:?} vs {shift:?}", c.name, v.liver_shift);
    assert_eq!(v.passes(), margin >= 5.0, "{}: VER-1 on {} vs the truth's {margin}", c.name, v.min_margin.margin_mm);
}

#[test]
fn a_zone_centred_on_the_tumour_covers_it_and_verification_says_so() {
    run(&Case {
        name: "centred",
        seed: 21,
        tumour_offset: [5.0, -5.0, 3.0],
        tumour_mm: 16.0,
        zone_offset: [0.0, 0.0, -1.0],
        axis: [0.3, -0.8, 0.5],
        heat_sink: false,
        liver_shift: [1.5, -2.0, 7.0],
        table_motion: None,
    });
}

#[test]
fn a_zone_placed_off_the_tumour_leaves_a_rim_and_verification_finds_where() {
    run(&Case {
        name: "off by 5 mm",
        seed: 22,
        tumour_offset: [-4.0, 6.0, -8.0],
        tumour_mm: 18.0,
        zone_offset: [4.0, 3.0, 0.0],
        axis: [-0.2, -0.9, 0.4],
        heat_sink: false,
        liver_shift: [-1.0, 2.5, -5.0],
        table_motion: None,
    });
}

#[test]
fn beside_the_hepatic_vein_the_heat_sunk_zone_is_found_as_it_is() {
    run(&Case {
        name: "heat sink",
        seed: 11,
        tumour_offset: [20.1, -12.6, 24.2],
        tumour_mm: 16.0,
        zone_offset: [0.0, 0.0, 0.0],
        axis: [0.35, -0.85, 0.4],
        heat_sink: true,
        liver_shift: [0.5, 1.0, 9.0],
        table_motion: None,
    });
}

#[test]
fn when_the_patient_moved_on_the_table_the_markers_bring_the_post_ct_back() {
    run(&Case {
        name: "moved on the table",
        seed: 23,
        tumour_offset: [2.0, 4.0, -5.0],
        tumour_mm: 16.0,
        zone_offset: [-1.5, 0.0, 1.0],
        axis: [0.2, -0.9, -0.3],
        heat_sink: false,
        liver_shift: [1.0, 1.0, 6.0],
        table_motion: Some((3.0, [4.0, -3.0, 2.0])),
    });
}

/// The same on a real CT (issue 18, item 5): the shared TotalSegmentator abdomen (contrast CT,
/// 3 mm voxels, its liver label), a zone drawn into a copy around a virtual 20 mm tumour in the
/// liver, the liver then moved by another breath-hold; found with the same accuracy.
///
/// Not passing yet (docs/verification.md, "Known limits"): the liver's shift comes out 1.2 mm
/// off (the unenhanced real liver shows little inside to match, and the post copy has
/// contrast); Dice 0.95 holds, the margin reads 5.2 mm for 6.2 (0.97 mm off: at the bound).
#[test]
#[ignore = "issue 18 item 5 not met yet: the liver's shift on the unenhanced real CT is 1.2 mm off"]
fn a_zone_drawn_into_the_real_totalsegmentator_ct_is_found_as_well() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ct/totalsegmentator-abdomen");
    let ct = stylet_imaging::load_nifti(&dir.join("example_ct_sm.nii.gz")).unwrap();
    let seg = stylet_imaging::load_nifti(&dir.join("example_seg.nii.gz")).unwrap();
    // The liver (TotalSegmentator's 5) as the phantom's label 2: what breathing carries.
    let mut labels = seg.clone();
    for l in &mut labels.voxels {
        *l = if *l == 5.0 { 2.0 } else { 0.0 };
    }
    let liver: Vec<bool> = labels.voxels.iter().map(|l| *l == 2.0).collect();
    // The virtual tumour: 20 mm across at the liver's deepest point.
    let depth = stylet_planning::edt::edt(&liver.iter().map(|l| !l).collect::<Vec<_>>(), ct.dims, ct.spacing_mm);
    let [nx, ny, nz] = ct.dims;
    // Deep in the liver and away from the scan's ends (the field's edge is no liver edge).
    let inner = |i: usize| {
        let ijk = [i % nx, (i / nx) % ny, i / (nx * ny)];
        let edge = (0..3)
            .map(|d| (ijk[d].min([nx, ny, nz][d] - 1 - ijk[d])) as f64 * ct.spacing_mm[d])
            .fold(f64::INFINITY, f64::min);
        f64::from(depth[i]).min(edge)
    };
    let deepest = (0..depth.len()).max_by(|a, b| inner(*a).total_cmp(&inner(*b))).unwrap();
    let at = |i: usize| ct.ct_from_index((i % nx) as f64, ((i / nx) % ny) as f64, (i / (nx * ny)) as f64);
    let centre = at(deepest);
    eprintln!("the liver's deepest point {centre:?}, {:.1} mm from its edge", inner(deepest));
    let tumour: Vec<usize> = (0..liver.len()).filter(|&i| at(i).distance_mm(centre) <= 10.0).collect();
    let axis = Vector3::new(0.6, -0.8, 0.1).normalize();
    let truth: Vec<bool> =
        ZoneShape::ellipsoid(centre, axis, 52.2, 33.3).mask(&ct).iter().zip(&liver).map(|(z, l)| *z && *l).collect();
    let tip = Point::<Ct>::from_coords(centre.to_nalgebra().coords + axis * 5.0);
    let entry = Point::<Ct>::from_coords(tip.to_nalgebra().coords + axis * 100.0);
    // The post CT is a contrast CT (portal venous phase): this unenhanced liver (~45 HU) takes
    // up contrast as the phantom's does.
    let mut drawn = ct.clone();
    for (v, l) in drawn.voxels.iter_mut().zip(&liver) {
        if *l {
            *v += 60.0;
        }
    }
    let look = Look { noise_hu: 12.0, ..Look::default() };
    stylet_sim::post_ablation::draw_ablation(&mut drawn, &truth, &liver, Some((tip, entry)), &look, 7);
    let shift = Vector::<Ct>::new(2.0, -1.5, 4.0);
    let mut post = drawn.clone();
    stylet_sim::phantom::displace_liver(&mut post, &drawn, &labels, shift);
    let is_liver = |l: f32| l == 2.0;
    let input = VerifyInput {
        pre: &ct,
        post: &post,
        labels: &labels,
        is_liver: &is_liver,
        tumour: &tumour,
        seed: centre,
        pre_from_post: Transform::identity(),
    };
    let v = verify(&input, &VerifySettings::default()).unwrap();
    let found = v.zone.to_full(ct.dims);
    let both = found.iter().zip(&truth).filter(|(a, b)| **a && **b).count();
    let dice = 2.0 * both as f64 / (found.iter().filter(|x| **x).count() + truth.iter().filter(|x| **x).count()) as f64;
    let margin = true_margin(&ct, &tumour, &truth);
    let shift_error = (v.liver_shift.to_nalgebra() - shift.to_nalgebra()).norm();
    eprintln!(
        "real CT: Dice {dice:.3}, margin {:.2} mm (truth {margin:.2}), liver shift error {shift_error:.2} mm ({:?}, match {:?}), levels {:?}",
        v.min_margin.margin_mm, v.liver_shift, v.liver_match, v.levels_hu
    );
    assert!(dice >= 0.9, "Dice {dice}");
    assert!((v.min_margin.margin_mm - margin).abs() <= 1.0, "margin {} vs {margin}", v.min_margin.margin_mm);
    assert!(shift_error <= 1.0, "the liver's shift {:?} vs {shift:?}", v.liver_shift);
}
