//! Hand-built label volumes where the right answer is known for each rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use nalgebra::{Matrix3, Vector3};
use stylet_core::frame::Point;
use stylet_imaging::Volume;
use stylet_planning::{load_zone, plan, LabelTable, PlanError, PlanInput, PlanReport, Rules, Status, TumourSpec, Zone};

// Phantom label values (config/labels.toml [tables.phantom]).
const BODY: f32 = 1.0;
const LIVER: f32 = 2.0;
const TUMOUR: f32 = 3.0;
const VESSEL: f32 = 4.0;
const BONE: f32 = 5.0;
const LUNG: f32 = 6.0;
const GALLBLADDER: f32 = 7.0;
const SPINE: f32 = 11.0;

fn config(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config").join(name)
}

fn table() -> LabelTable {
    LabelTable::load(&config("labels.toml"), "phantom").unwrap()
}

fn zone(setting: &str) -> Zone {
    load_zone(&config("devices.toml"), "mwa-generic", setting).unwrap()
}

/// A 1 mm grid centred on the origin: body everywhere inside a box margin, a liver ellipsoid.
struct Scene {
    dims: [usize; 3],
    labels: Vec<f32>,
}

impl Scene {
    fn new(n: [usize; 3]) -> Self {
        let mut s = Scene { dims: n, labels: vec![0.0; n[0] * n[1] * n[2]] };
        s.paint(|p| p.x.abs() < n[0] as f64 / 2.0 - 3.0 && p.y.abs() < n[1] as f64 / 2.0 - 3.0, BODY);
        s
    }
    fn pos(&self, idx: usize) -> Vector3<f64> {
        let [nx, ny, nz] = self.dims;
        Vector3::new(
            (idx % nx) as f64 - (nx as f64 - 1.0) / 2.0,
            ((idx / nx) % ny) as f64 - (ny as f64 - 1.0) / 2.0,
            (idx / (nx * ny)) as f64 - (nz as f64 - 1.0) / 2.0,
        )
    }
    fn paint(&mut self, f: impl Fn(&Vector3<f64>) -> bool, v: f32) {
        for i in 0..self.labels.len() {
            if f(&self.pos(i)) {
                self.labels[i] = v;
            }
        }
    }
    fn sphere(&mut self, c: Vector3<f64>, r: f64, v: f32) {
        self.paint(|p| (p - c).norm() <= r, v);
    }
    fn volumes(&self) -> (Volume, Volume) {
        let [nx, ny, nz] = self.dims;
        let origin = Vector3::new(-(nx as f64 - 1.0) / 2.0, -(ny as f64 - 1.0) / 2.0, -(nz as f64 - 1.0) / 2.0);
        let labels = Volume {
            dims: self.dims,
            spacing_mm: [1.0; 3],
            origin: Point::from_coords(origin),
            direction: Matrix3::identity(),
            voxels: self.labels.clone(),
        };
        let hu = self
            .labels
            .iter()
            .map(|l| {
                if *l == 0.0 {
                    -1000.0
                } else if *l == BONE {
                    1500.0
                } else {
                    50.0
                }
            })
            .collect();
        (Volume { voxels: hu, ..labels.clone() }, labels)
    }
    fn plan(&self, tumour: TumourSpec, zone: Zone, rules: Rules) -> Result<PlanReport, PlanError> {
        let (ct, labels) = self.volumes();
        let t = table();
        plan(&PlanInput { ct: &ct, labels: &labels, table: &t, tumour, zone, rules, max_plans: 5 })
    }
}

fn tumour() -> TumourSpec {
    TumourSpec::Label { value: 3, component: 0 }
}

fn status(r: &stylet_planning::Plan, rule: &str) -> Status {
    r.checks.iter().find(|c| c.rule == rule).unwrap().status
}

/// A bone shell around the liver with one window facing anterior (-y): the only straight paths.
fn shelled(vessel_in_window: bool) -> Scene {
    let mut s = Scene::new([120, 120, 90]);
    s.sphere(Vector3::zeros(), 38.0, LIVER);
    s.paint(|p| (40.0..44.0).contains(&p.norm()) && !(p.y < 0.0 && (p.x * p.x + p.z * p.z).sqrt() < 0.13 * -p.y), BONE);
    s.sphere(Vector3::zeros(), 8.0, TUMOUR);
    if vessel_in_window {
        // A 10 mm vessel across the window, in front of the liver.
        s.paint(|p| ((p.y + 50.0).powi(2) + p.z * p.z).sqrt() <= 5.0, VESSEL);
    }
    s
}

#[test]
fn the_only_straight_path_blocked_by_a_vessel_means_no_safe_path() {
    let open = shelled(false).plan(tumour(), zone("100W-8min"), Rules::default()).unwrap();
    assert!(!open.plans.is_empty(), "{:?}", open.failures_by_rule);
    for p in &open.plans {
        assert!(p.positions[0].axis.to_array()[1] > 0.9, "enters through the window: {:?}", p.positions[0]);
        assert_eq!(status(p, "PATH-1"), Status::Pass);
    }
    let blocked = shelled(true).plan(tumour(), zone("100W-8min"), Rules::default()).unwrap();
    assert!(blocked.plans.is_empty(), "{:?}", blocked.plans.first().map(|p| &p.positions));
    assert!(
        blocked.failures_by_rule["PATH-1"] >= blocked.candidates - blocked.failures_by_rule.get("PATH-6").unwrap_or(&0)
    );
}

#[test]
fn a_tumour_4_mm_from_the_gallbladder_is_high_risk() {
    let make = |gap: f64| {
        let mut s = Scene::new([120, 120, 90]);
        s.sphere(Vector3::zeros(), 40.0, LIVER);
        s.sphere(Vector3::zeros(), 8.0, TUMOUR);
        // Gallbladder surface `gap` mm from the tumour surface, inferior (-z).
        s.sphere(Vector3::new(0.0, 0.0, -(8.0 + gap + 9.0)), 9.0, GALLBLADDER);
        s.plan(tumour(), zone("60W-5min"), Rules::default()).unwrap()
    };
    // Listed as high-risk, not dropped: every plan needs the operator's override (OAR-2).
    let near = make(4.0);
    assert_eq!(near.feasible, 0, "{:?}", near.plans.first().map(|p| &p.checks));
    assert!(near.high_risk > 0 && !near.plans.is_empty(), "{:?}", near.failures_by_rule);
    for p in &near.plans {
        assert!(p.high_risk);
        let rules: Vec<&str> = p.high_risk_rules().map(|c| c.rule).collect();
        assert_eq!(rules, ["OAR-2"]);
        let oar2 = p.checks.iter().find(|c| c.rule == "OAR-2").unwrap();
        assert!(oar2.measured.unwrap() < 5.0 && oar2.detail.contains("override"), "{oar2:?}");
    }
    let far = make(25.0);
    assert!(!far.plans.is_empty(), "{:?}", far.failures_by_rule);
    assert!(!far.plans[0].high_risk);
    let oar2 = far.plans[0].checks.iter().find(|c| c.rule == "OAR-2").unwrap();
    assert_eq!(oar2.status, Status::Pass);
    assert!(oar2.measured.unwrap() >= 5.0);
}

#[test]
fn a_tumour_larger_than_one_zone_gets_overlapping_ablations() {
    let mut s = Scene::new([130, 130, 110]);
    s.sphere(Vector3::zeros(), 45.0, LIVER);
    s.sphere(Vector3::zeros(), 9.0, TUMOUR);
    // 60W-3min after shrink: 36 x 25.2 mm: the 18 mm tumour plus 5 mm margin needs 28 mm across.
    let r = s.plan(tumour(), zone("60W-3min"), Rules::default()).unwrap();
    assert!(!r.plans.is_empty(), "{:?}", r.failures_by_rule);
    let best = &r.plans[0];
    assert!(best.positions.len() >= 2, "{} positions", best.positions.len());
    assert!(best.margin_mm >= 5.0, "margin {}", best.margin_mm);
    assert_ne!(status(best, "MAR-1"), Status::Fail);
    assert_eq!(status(best, "MAR-3"), Status::Pass);
    // With the big zone one position suffices.
    let one = s.plan(tumour(), zone("100W-8min"), Rules::default()).unwrap();
    assert_eq!(one.plans[0].positions.len(), 1);
}

#[test]
fn paths_through_the_lung_are_refused_and_near_misses_warned() {
    let mut s = Scene::new([120, 120, 120]);
    s.sphere(Vector3::zeros(), 40.0, LIVER);
    s.sphere(Vector3::new(0.0, 0.0, 12.0), 7.0, TUMOUR);
    // Lung above the liver dome (superior is +z), across the whole body.
    s.paint(|p| p.z > 42.0 && p.x.abs() < 55.0 && p.y.abs() < 55.0, LUNG);
    let r = s.plan(tumour(), zone("60W-5min"), Rules::default()).unwrap();
    assert!(r.failures_by_rule.get("PATH-5").copied().unwrap_or(0) > 0, "{:?}", r.failures_by_rule);
    assert!(!r.plans.is_empty());
    for p in &r.plans {
        let c = p.checks.iter().find(|c| c.rule == "PATH-5").unwrap();
        assert_ne!(c.status, Status::Fail);
        assert!(c.measured.unwrap() > 0.0);
    }
}

#[test]
fn an_intercostal_entry_beside_the_spine_is_refused() {
    // The tumour near the back; ribs everywhere on the back; the spine at the midline.
    let mut s = Scene::new([160, 120, 80]);
    s.paint(|p| (p.x / 70.0).powi(2) + (p.y / 50.0).powi(2) <= 1.0, LIVER);
    s.sphere(Vector3::new(-20.0, 38.0, 0.0), 6.0, TUMOUR);
    // Horizontal ribs (3 mm thick, 12 mm apart) in the posterior wall; the spine posterior midline.
    s.paint(|p| p.y > 50.0 && p.y < 55.0 && (p.z.rem_euclid(12.0)) < 3.0, BONE);
    s.paint(|p| p.x.abs() < 10.0 && p.y > 40.0, SPINE);
    // Anterior and lateral walls shielded with solid bone so only the back is open.
    s.paint(|p| p.y < 50.0 && (p.y < -50.0 || p.x.abs() > 70.0), BONE);
    let rules = Rules { exclude_posterior_fraction: 0.0, ..Rules::default() };
    let r = s.plan(tumour(), zone("60W-5min"), rules).unwrap();
    assert!(r.failures_by_rule.get("PATH-3").copied().unwrap_or(0) > 0, "{:?}", r.failures_by_rule);
    for p in &r.plans {
        let c = p.checks.iter().find(|c| c.rule == "PATH-3").unwrap();
        assert_ne!(c.status, Status::Fail);
        if let Some(l) = c.measured {
            assert!(l >= 70.0, "{l}");
        }
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let mut s = Scene::new([60, 60, 40]);
    s.sphere(Vector3::zeros(), 20.0, LIVER);
    // Target outside the liver.
    let e = s
        .plan(
            TumourSpec::Sphere { centre: Point::new(0.0, 25.0, 0.0), diameter_mm: 10.0 },
            zone("60W-5min"),
            Rules::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("outside the liver"), "{e}");
    // No tumour label voxels.
    let e = s.plan(tumour(), zone("60W-5min"), Rules::default()).unwrap_err();
    assert!(matches!(e, PlanError::NoTumour { value: 3, .. }), "{e}");
    // A label the table does not know.
    s.sphere(Vector3::new(0.0, 0.0, 10.0), 2.0, 42.0);
    let e = s
        .plan(
            TumourSpec::Sphere { centre: Point::new(0.0, 0.0, -5.0), diameter_mm: 10.0 },
            zone("60W-5min"),
            Rules::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("42"), "{e}");
    // A label map on another grid.
    let (ct, mut labels) = Scene::new([60, 60, 40]).volumes();
    labels.origin = labels.origin + stylet_core::frame::Vector::new(5.0, 0.0, 0.0);
    let t = table();
    let e = plan(&PlanInput {
        ct: &ct,
        labels: &labels,
        table: &t,
        tumour: tumour(),
        zone: zone("60W-5min"),
        rules: Rules::default(),
        max_plans: 1,
    })
    .unwrap_err();
    assert!(matches!(e, PlanError::GridMismatch(_)), "{e}");
    // Unknown device and setting name the known ones.
    let e = load_zone(&config("devices.toml"), "mwa-generic", "9000W").unwrap_err().to_string();
    assert!(e.contains("60W-5min"), "{e}");
    let e = LabelTable::load(&config("labels.toml"), "nope").unwrap_err().to_string();
    assert!(e.contains("totalsegmentator"), "{e}");
}

#[test]
fn a_large_vessel_beside_the_tumour_is_a_heat_sink_warning() {
    let mut s = Scene::new([120, 120, 90]);
    s.sphere(Vector3::zeros(), 40.0, LIVER);
    s.sphere(Vector3::zeros(), 8.0, TUMOUR);
    // A 6 mm vessel running superior-inferior 3 mm from the tumour's surface (posterior side,
    // away from the anterior entries).
    s.paint(|p| ((p.x).powi(2) + (p.y - 14.0).powi(2)).sqrt() <= 3.0, VESSEL);
    let r = s.plan(tumour(), zone("100W-8min"), Rules::default()).unwrap();
    assert!(!r.plans.is_empty(), "{:?}", r.failures_by_rule);
    for p in &r.plans {
        let c = p.checks.iter().find(|c| c.rule == "OAR-3").unwrap();
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.measured.unwrap() < 5.0, "{c:?}");
        assert!(c.detail.contains("heat sink"));
    }
    // The same vessel 30 mm away: no warning.
    let mut far = Scene::new([120, 120, 90]);
    far.sphere(Vector3::zeros(), 40.0, LIVER);
    far.sphere(Vector3::zeros(), 8.0, TUMOUR);
    far.paint(|p| ((p.x).powi(2) + (p.y - 38.0).powi(2)).sqrt() <= 3.0, VESSEL);
    let r = far.plan(tumour(), zone("100W-8min"), Rules::default()).unwrap();
    assert!(!r.plans.is_empty());
    assert!(r.plans.iter().all(|p| p.checks.iter().any(|c| c.rule == "OAR-3" && c.status == Status::Pass)));
}

#[test]
fn an_intercostal_path_should_hug_the_lower_rib() {
    // Only the right lateral wall (LPS +x) is open, and it is a rib cage: 3 mm ribs every 12 mm
    // (z in [12k, 12k + 3)). Paths cross it through the gaps; nearer the upper rib's lower border
    // (where the intercostal vessels run) is a PATH-4 warning, nearer the lower rib passes.
    let mut s = Scene::new([120, 120, 90]);
    s.sphere(Vector3::zeros(), 40.0, LIVER);
    s.sphere(Vector3::zeros(), 6.0, TUMOUR);
    s.paint(|p| p.x < -44.0 || p.y.abs() > 44.0, BONE);
    s.paint(|p| (48.0..51.0).contains(&p.x) && p.z.rem_euclid(12.0) < 3.0, BONE);
    let (ct, labels) = s.volumes();
    let t = table();
    let rules = Rules { exclude_posterior_fraction: 0.0, ..Rules::default() };
    let r = plan(&PlanInput {
        ct: &ct,
        labels: &labels,
        table: &t,
        tumour: tumour(),
        zone: zone("100W-8min"),
        rules,
        max_plans: 400,
    })
    .unwrap();
    assert!(!r.plans.is_empty(), "{:?}", r.failures_by_rule);
    let (mut warned, mut passed) = (0, 0);
    for p in &r.plans {
        let pos = &p.positions[0];
        let (e, a) = (pos.entry.to_nalgebra().coords, pos.axis.to_nalgebra());
        // Where the shaft crosses the rib wall (x = 49.5), as a height within its gap.
        let z = (e + a * ((49.5 - e.x) / a.x)).z.rem_euclid(12.0);
        let c = p.checks.iter().find(|c| c.rule == "PATH-4").unwrap();
        if z > 9.0 {
            assert_eq!(c.status, Status::Warn, "crossing at {z:.1} mm in the gap: {c:?}");
            warned += 1;
        } else if z < 6.0 {
            assert_eq!(c.status, Status::Pass, "crossing at {z:.1} mm in the gap: {c:?}");
            passed += 1;
        }
    }
    assert!(warned > 0 && passed > 0, "{warned} warned, {passed} passed of {}", r.plans.len());
}
