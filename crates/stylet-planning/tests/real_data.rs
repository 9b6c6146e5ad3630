//! The real TotalSegmentator label map (liver = 5) with a synthetic tumour inserted into the
//! liver, and a generated phantom.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use stylet_core::frame::Point;
use stylet_imaging::load_nifti;
use stylet_planning::{edt::edt, load_zone, plan, LabelTable, PlanError, PlanInput, Rules, Status, TumourSpec};

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

/// The shared TotalSegmentator CT, its label map and the label table for it.
fn totalsegmentator() -> (stylet_imaging::Volume, stylet_imaging::Volume, LabelTable) {
    let dir = repo("../shared/data/ct/totalsegmentator-abdomen");
    let ct = load_nifti(&dir.join("example_ct_sm.nii.gz")).unwrap();
    let labels = load_nifti(&dir.join("example_seg.nii.gz")).unwrap();
    (ct, labels, LabelTable::load(&repo("config/labels.toml"), "totalsegmentator").unwrap())
}

/// A 20 mm tumour at `target`, planned with the shipped device and rules.
fn sphere_at<'a>(
    ct: &'a stylet_imaging::Volume,
    labels: &'a stylet_imaging::Volume,
    table: &'a LabelTable,
    target: [f64; 3],
) -> PlanInput<'a> {
    PlanInput {
        ct,
        labels,
        table,
        tumour: TumourSpec::Sphere { centre: Point::new(target[0], target[1], target[2]), diameter_mm: 20.0 },
        zone: load_zone(&repo("config/devices.toml"), "mwa-generic", "100W-8min").unwrap(),
        rules: Rules::load(&repo("config/clinical-rules.toml")).unwrap(),
        max_plans: 5,
    }
}

#[test]
fn totalsegmentator_liver_with_an_inserted_tumour() {
    let (ct, labels, table) = totalsegmentator();
    // The deepest liver point away from the slab's cut faces.
    let not_liver: Vec<bool> = labels.voxels.iter().map(|v| (*v - 5.0).abs() > 0.5).collect();
    let depth = edt(&not_liver, labels.dims, labels.spacing_mm);
    let [nx, ny, nz] = labels.dims;
    let best = (0..depth.len())
        .filter(|i| {
            let k = i / (nx * ny);
            k >= 8 && k + 8 < nz
        })
        .max_by(|a, b| depth[*a].total_cmp(&depth[*b]))
        .unwrap();
    let target =
        labels.ct_from_index((best % nx) as f64, ((best / nx) % ny) as f64, (best / (nx * ny)) as f64).to_array();
    assert!(depth[best] > 20.0, "liver depth {}", depth[best]);
    let input = sphere_at(&ct, &labels, &table, target);
    let r = plan(&input).unwrap();
    println!(
        "TotalSegmentator: target {target:?}, {} candidates, {} path-feasible, {} feasible, failures {:?}",
        r.candidates, r.path_feasible, r.feasible, r.failures_by_rule
    );
    // No body label in TotalSegmentator's map: the skin comes from the CT.
    assert_eq!(r.skin_source, "CT body outline");
    assert!(r.candidates > 300, "{}", r.candidates);
    // A 20 mm sphere at 3 mm voxels.
    let expected = std::f64::consts::PI / 6.0 * 20f64.powi(3) / 27.0;
    assert!((r.tumour_voxels as f64 / expected - 1.0).abs() < 0.25, "{} voxels", r.tumour_voxels);
    assert!(!r.plans.is_empty(), "{:?}", r.failures_by_rule);
    for p in &r.plans {
        for c in &p.checks {
            assert_ne!(c.status, Status::Fail, "{c:?}");
        }
    }
    // The ribs (TotalSegmentator 92-117) are on many straight lines: PATH-1 refuses those.
    assert!(r.failures_by_rule.get("PATH-1").copied().unwrap_or(0) > 0);
    // A target in the stomach (label 6) is refused.
    let stomach = labels.voxels.iter().position(|v| (*v - 6.0).abs() < 0.5).unwrap();
    let s = labels
        .ct_from_index((stomach % nx) as f64, ((stomach / nx) % ny) as f64, (stomach / (nx * ny)) as f64)
        .to_array();
    let e = plan(&PlanInput {
        tumour: TumourSpec::Sphere { centre: Point::new(s[0], s[1], s[2]), diameter_mm: 20.0 },
        ..input.clone()
    })
    .unwrap_err();
    assert!(matches!(e, PlanError::TargetOutsideLiver { class: Some(stylet_planning::Class::Bowel), .. }), "{e}");
}

#[test]
fn generated_phantoms_from_the_shipped_scenarios() {
    use stylet_sim::phantom::{generate, PhantomSpec};
    use stylet_sim::scenario::Scenario;
    let table = LabelTable::load(&repo("config/labels.toml"), "phantom").unwrap();
    let frame = stylet_registration::read_points(&repo("config/robot/marker_frame.txt")).unwrap();
    for (name, tumours) in [("easy.toml", 1usize), ("two-tumours.toml", 2)] {
        let sc = Scenario::load(&repo("config/scenarios").join(name)).unwrap().phantom;
        // A coarser grid than the scenario's keeps the test quick.
        let ph = generate(&PhantomSpec {
            seed: sc.seed,
            dims: [160, 160, 127],
            spacing_mm: [1.5, 1.5, 1.5],
            markers_in_robot: frame.clone(),
            marker_diameter_mm: 4.0,
            noise_hu: sc.noise_hu,
            missing_beads: sc.missing_beads.clone(),
            extra_beads: sc.extra_beads,
            tumours: sc.tumours.clone(),
            metal_wire: sc.metal_wire,
        });
        for component in 0..tumours {
            let r = plan(&PlanInput {
                ct: &ph.volume,
                labels: &ph.labels,
                table: &table,
                tumour: TumourSpec::Label { value: 3, component },
                zone: load_zone(&repo("config/devices.toml"), "mwa-generic", "100W-8min").unwrap(),
                rules: Rules::default(),
                max_plans: 3,
            })
            .unwrap();
            println!(
                "{name} tumour {component}: {:.1} mm, {} candidates, {} feasible, best {:?}, failures {:?}",
                r.tumour_diameter_mm,
                r.candidates,
                r.feasible,
                r.plans.first().map(|p| (p.positions.len(), p.margin_mm, p.clearance_mm)),
                r.failures_by_rule
            );
            assert!(!r.plans.is_empty(), "{name} tumour {component}: {:?}", r.failures_by_rule);
            // The tumour found is one of the generated ones.
            let c = r.tumour_centre;
            assert!(ph.tumours_in_ct.iter().any(|(t, _)| t.distance_mm(c) < 1.5), "{c:?} vs {:?}", ph.tumours_in_ct);
            let best = &r.plans[0];
            assert!(best.margin_mm >= 5.0 && best.clearance_mm >= 2.75);
            // The zone drawn on the grid (as a DICOM SEG shows it) holds every tumour voxel, with
            // room: MAR-1's 5 mm is more than three voxels.
            let zone = best.zone_mask(&ph.volume);
            assert_eq!(r.tumour_voxel_indices.len(), r.tumour_voxels);
            assert!(r.tumour_voxel_indices.iter().all(|i| zone[*i]), "{name} tumour {component}");
            let inside = zone.iter().filter(|z| **z).count();
            assert!(inside > 2 * r.tumour_voxels, "{inside} zone voxels, {} tumour voxels", r.tumour_voxels);
            // IND-2 for two tumours, IND-1 for one.
            assert_eq!(r.indication[0].rule, if tumours == 1 { "IND-1" } else { "IND-2" });
        }
    }
}

#[test]
fn a_tumour_beside_the_real_gallbladder_is_listed_high_risk_not_refused() {
    // The shared TotalSegmentator labels: a 20 mm tumour in the liver 12-16 mm from the
    // gallbladder (label 4). The zone comes within OAR-2's 5 mm of it: the plans are kept and
    // flagged, for the operator's explicit override, instead of "no safe path".
    let (ct, labels, table) = totalsegmentator();
    let [nx, ny, nz] = labels.dims;
    // edt(mask): each voxel's distance to the nearest voxel of the mask.
    let is = |v: f32| labels.voxels.iter().map(|x| (*x - v).abs() < 0.5).collect::<Vec<bool>>();
    let not_liver: Vec<bool> = is(5.0).iter().map(|b| !b).collect();
    let to_gallbladder = edt(&is(4.0), labels.dims, labels.spacing_mm);
    let liver_depth = edt(&not_liver, labels.dims, labels.spacing_mm);
    let best = (0..labels.voxels.len())
        .filter(|i| {
            let k = i / (nx * ny);
            (labels.voxels[*i] - 5.0).abs() < 0.5 && k >= 6 && k + 6 < nz && (12.0..16.0).contains(&to_gallbladder[*i])
        })
        .max_by(|a, b| liver_depth[*a].total_cmp(&liver_depth[*b]))
        .expect("liver 12-16 mm from the gallbladder");
    let target =
        labels.ct_from_index((best % nx) as f64, ((best / nx) % ny) as f64, (best / (nx * ny)) as f64).to_array();
    let r = plan(&sphere_at(&ct, &labels, &table, target)).unwrap();
    println!(
        "beside the gallbladder: target {target:?}, {} feasible, {} high-risk, {:?}",
        r.feasible, r.high_risk, r.failures_by_rule
    );
    assert!(r.high_risk > 0 && !r.plans.is_empty(), "{:?}", r.failures_by_rule);
    for p in r.plans.iter().filter(|p| p.high_risk) {
        let oar2 = p.checks.iter().find(|c| c.rule == "OAR-2").unwrap();
        assert_eq!(oar2.status, Status::HighRisk, "{oar2:?}");
        assert!(oar2.detail.contains("Gallbladder"), "{oar2:?}");
    }
    // Safe plans, if any, come first.
    let first_risky = r.plans.iter().position(|p| p.high_risk).unwrap();
    assert!(r.plans[first_risky..].iter().all(|p| p.high_risk));
}
