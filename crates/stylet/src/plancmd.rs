//! `stylet plan`: ranked needle trajectories under the clinical rules, with a picture.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use nalgebra::Vector3;
use serde_json::json;
use stylet_imaging::Volume;
use stylet_planning::{load_zone, plan, Class, LabelTable, Plan, PlanInput, Rules, Status, TumourSpec};

/// Options of `stylet plan`.
#[derive(Debug, clap::Args)]
pub(crate) struct PlanArgs {
    /// The CT: DICOM series folder, NIfTI or NRRD file.
    #[arg(long)]
    ct: PathBuf,
    /// The label map (NIfTI, or NRRD such as 3D Slicer's .seg.nrrd) on the CT grid.
    #[arg(long)]
    labels: PathBuf,
    /// Label table in config/labels.toml (auto: a 3D Slicer segmentation's own segment names when
    /// the label map has them, else totalsegmentator when values above 12 occur, else phantom).
    #[arg(long, default_value = "auto")]
    label_table: String,
    /// Plan for the tumour with this label value (its largest connected component).
    #[arg(long, conflicts_with = "target")]
    tumour: Option<u32>,
    /// Which component of --tumour, largest first.
    #[arg(long, default_value_t = 0, requires = "tumour")]
    component: usize,
    /// Plan for a spherical tumour at this LPS point (mm), inserted into the liver.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    target: Option<Vec<f64>>,
    /// Diameter of the --target tumour, mm.
    #[arg(long, default_value_t = 20.0, requires = "target")]
    tumour_diameter_mm: f64,
    /// Ablation device (config/devices.toml).
    #[arg(long, default_value = "mwa-generic")]
    device: String,
    /// Device setting.
    #[arg(long, default_value = "100W-8min")]
    setting: String,
    /// Plans to list.
    #[arg(long, default_value_t = 5)]
    max_plans: usize,
    /// Write the best plan drawn on the CT along and across the needle.
    #[arg(long)]
    png: Option<PathBuf>,
    /// A registration (JSON with `robot_from_ct`, 4x4 mm, as `stylet register --json` prints
    /// it, or a phantom's truth.json): keep only plans the arm reaches (IK on every position),
    /// and rank reachable ones higher by manipulability.
    #[arg(long)]
    registration: Option<PathBuf>,
    /// The SeriesInstanceUID when the CT folder holds several.
    #[arg(long)]
    series: Option<String>,
    /// The config folder (labels.toml, devices.toml, clinical-rules.toml).
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Write the tumour and the best plan's ablation zone(s) as a DICOM Segmentation here, in the
    /// CT's study and frame of reference (the CT must be a DICOM series folder).
    #[arg(long, value_name = "FILE")]
    dicom_seg: Option<PathBuf>,
}

pub(crate) fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let (ct, series) = if args.ct.is_dir() {
        let (v, r) = stylet_imaging::load_series(&args.ct, args.series.as_deref())?;
        (v, Some(r))
    } else {
        anyhow::ensure!(
            args.dicom_seg.is_none(),
            "--dicom-seg needs the CT as a DICOM series folder: {} has no study or frame of reference to reference",
            args.ct.display()
        );
        (crate::ctcmd::load_ct(&args.ct, None)?, None)
    };
    let (labels, segments) = stylet_suite::planning::load_labels(&args.labels)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.labels.display()))?;
    let (table, table_name) =
        stylet_suite::planning::label_table(&args.label_table, &labels, &segments, &args.config.join("labels.toml"))
            .map_err(|e| anyhow::anyhow!(e))?;
    let table_name = table_name.as_str();
    let zone = load_zone(&args.config.join("devices.toml"), &args.device, &args.setting)?;
    let rules = Rules::load(&args.config.join("clinical-rules.toml"))?;
    let tumour = match (&args.tumour, &args.target) {
        (Some(v), _) => TumourSpec::Label { value: *v, component: args.component },
        (None, Some(t)) => {
            anyhow::ensure!(
                t.len() == 3 && t.iter().all(|x| x.is_finite()),
                "--target takes X,Y,Z in LPS mm, got {t:?}"
            );
            anyhow::ensure!(
                (2.0..=100.0).contains(&args.tumour_diameter_mm),
                "--tumour-diameter-mm {} must be within [2, 100]",
                args.tumour_diameter_mm
            );
            TumourSpec::Sphere {
                centre: stylet_core::frame::Point::new(t[0], t[1], t[2]),
                diameter_mm: args.tumour_diameter_mm,
            }
        }
        (None, None) => anyhow::bail!("give --tumour LABEL or --target X,Y,Z"),
    };
    let started = std::time::Instant::now();
    // With a robot, ask for more plans: some may be out of its reach.
    let wanted = if args.registration.is_some() { (4 * args.max_plans).max(20) } else { args.max_plans };
    let mut report = plan(&PlanInput {
        ct: &ct,
        labels: &labels,
        table: &table,
        tumour: tumour.clone(),
        zone: zone.clone(),
        rules,
        max_plans: wanted,
    })
    .with_context(|| format!("planning on {} with {}", args.ct.display(), args.labels.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let robot = match &args.registration {
        Some(reg) => Some(reachability(reg, &args.config, &mut report.plans, args.max_plans)?),
        None => None,
    };
    if let (Some(png), Some(best)) = (&args.png, report.plans.first()) {
        let inserted = match &tumour {
            TumourSpec::Sphere { centre, diameter_mm } => Some((centre.to_nalgebra().coords, diameter_mm / 2.0)),
            TumourSpec::Label { .. } => None,
        };
        draw(png, &ct, &labels, &table, best, inserted).with_context(|| format!("writing {}", png.display()))?;
    }
    let seg = match (&args.dicom_seg, &series, report.plans.first()) {
        (Some(path), Some(series), Some(best)) => {
            let w = write_plan_seg(path, &ct, series, &report, best, matches!(tumour, TumourSpec::Sphere { .. }))
                .with_context(|| format!("writing {}", path.display()))?;
            Some(json!({ "file": path, "frames": w.frames, "voxels": w.voxels }))
        }
        (Some(path), _, None) => {
            // With --json, `"dicom_seg": null` says it; the JSON stays the only output.
            if !args.json {
                say!("no plan: {} not written", path.display());
            }
            None
        }
        _ => None,
    };
    if args.json {
        say!(
            "{}",
            json!({
                "dicom_seg": seg,
                "ct": args.ct, "labels": args.labels, "label_table": table_name,
                "label_classes": table.entries().iter().map(|(a, b, c, n)| json!({ "values": [a, b], "class": c, "name": n })).collect::<Vec<_>>(),
                "device": zone.device, "setting": zone.setting,
                "plan_seconds": seconds,
                "robot": robot,
                "report": report,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "tumour at ({:.1}, {:.1}, {:.1}) mm LPS, {:.1} mm across, {} voxels; zone {} {} ({:.1} x {:.1} mm after shrink)",
        report.tumour_centre.to_array()[0],
        report.tumour_centre.to_array()[1],
        report.tumour_centre.to_array()[2],
        report.tumour_diameter_mm,
        report.tumour_voxels,
        zone.device,
        zone.setting,
        zone.long_mm,
        zone.short_mm
    );
    for c in &report.indication {
        say!("  {:<6} {:<12} {}", c.rule, format!("{:?}", c.status), c.detail);
    }
    say!(
        "{} candidate lines ({} skin), {} pass the path rules, zone rules on {} of them, {} feasible, {} high-risk ({:.2} s)",
        report.candidates,
        report.skin_source,
        report.path_feasible,
        report.zone_evaluated,
        report.feasible,
        report.high_risk,
        seconds
    );
    if report.feasible == 0 && report.high_risk > 0 {
        say!("NO SAFE PATH WITHOUT AN OVERRIDE: every plan below is HIGH RISK (OAR-2); executing one needs the operator's explicit, logged override.");
    }
    if let Some(r) = &robot {
        say!(
            "robot: {} of the {} best plans reachable ({})",
            r["reachable"],
            r["checked"],
            r["arm"].as_str().unwrap_or("")
        );
    }
    if report.plans.is_empty() {
        if robot.is_some() {
            say!("NO PLAN THE ARM REACHES (see --json for each plan's IK failure).");
            return Ok(ExitCode::SUCCESS);
        }
        say!("NO SAFE PATH. Candidates failing each rule:");
        for (rule, n) in &report.failures_by_rule {
            say!("  {rule:<6} {n}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    for (k, p) in report.plans.iter().enumerate() {
        let e = p.positions[0].entry.to_array();
        say!(
            "#{}{} score {:.3}: {} position(s), entry ({:.1}, {:.1}, {:.1}), depth {:.1} mm, margin {:.1} mm, clearance {:.1} mm{}, {:.0} deg to axial",
            k + 1,
            if p.high_risk { " HIGH RISK" } else { "" },
            p.score,
            p.positions.len(),
            e[0],
            e[1],
            e[2],
            p.positions[0].depth_mm,
            p.margin_mm,
            p.clearance_mm,
            p.nearest_structure.map(|c| format!(" ({c:?})")).unwrap_or_default(),
            p.angle_to_axial_deg
        );
        for c in p.checks.iter().filter(|c| c.status != Status::Pass) {
            say!("      {:<6} {:<12} {}", c.rule, format!("{:?}", c.status), c.detail);
        }
    }
    if let Some(p) = &args.png {
        say!("picture: {}", p.display());
    }
    if let (Some(p), Some(w)) = (&args.dicom_seg, &seg) {
        say!("DICOM Segmentation: {} ({} frames: the tumour and plan #1's zone)", p.display(), w["frames"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// The tumour and `best`'s ablation zone(s) as a SEG on the planning CT (`series`).
fn write_plan_seg(
    path: &std::path::Path,
    ct: &Volume,
    series: &stylet_imaging::SeriesReport,
    report: &stylet_planning::PlanReport,
    best: &Plan,
    placed_tumour: bool,
) -> anyhow::Result<stylet_imaging::seg::SegWritten> {
    use stylet_imaging::derived::DerivedSeries;
    use stylet_imaging::seg::{derived_uid, write_seg, Algorithm, Code, SegSource, SegmentSpec};
    let mut tumour = vec![false; ct.voxels.len()];
    for &i in &report.tumour_voxel_indices {
        if let Some(t) = tumour.get_mut(i) {
            *t = true;
        }
    }
    let zone = best.zone_mask(ct);
    let meta = series.meta();
    let now = stylet_suite::ct::dicom_datetime(stylet_suite::ct::unix_now());
    let seg_series = derived_uid(&[&series.series_uid, "stylet plan SEG", &now]);
    let seg = DerivedSeries {
        sop_instance_uid: format!("{seg_series}.1"),
        series_uid: seg_series,
        description: "Stylet plan: tumour and planned ablation zone".into(),
        series_number: 901,
        content_date_time: (now[..8].to_string(), now[8..14].to_string()),
        software_version: format!("stylet {}", env!("CARGO_PKG_VERSION")),
    };
    let category = Code::new("49755003", "SCT", "Morphologically Altered Structure");
    let segments = [
        SegmentSpec {
            label: "Tumour",
            category: category.clone(),
            property: Code::new("108369006", "SCT", "Neoplasm"),
            // Placed by `--target`, or taken from the label map (drawn outside Stylet).
            algorithm: if placed_tumour { Algorithm::Automatic } else { Algorithm::Manual },
            mask: &tumour,
        },
        SegmentSpec {
            label: "Planned ablation zone",
            category,
            property: stylet_imaging::seg::ablation_zone(),
            algorithm: Algorithm::Automatic,
            mask: &zone,
        },
    ];
    let source = SegSource { grid: ct, meta: &meta, instances: &series.instances };
    Ok(write_seg(path, source, &seg, &segments)?)
}

fn colour(c: Class) -> Option<[u8; 3]> {
    Some(match c {
        Class::Liver => [170, 110, 60],
        Class::Tumour => [250, 220, 40],
        Class::Vessel => [220, 40, 40],
        Class::BileDuct => [40, 200, 80],
        Class::Gallbladder => [20, 120, 40],
        Class::Bowel => [240, 140, 30],
        Class::Lung => [60, 200, 230],
        Class::Heart => [200, 40, 200],
        Class::Bone | Class::Spine => [240, 240, 240],
        Class::Organ => [120, 80, 200],
        Class::Body | Class::SoftTissue | Class::Background => return None,
    })
}

/// Two panels, 0.5 mm per pixel: left, the plane through the needle axis (and the in-axial-plane
/// perpendicular); right, the plane across the axis at the zone centre. CT in a soft-tissue
/// window, structures tinted, the needle blue, the zone outline green.
fn draw(
    path: &std::path::Path,
    ct: &Volume,
    labels: &Volume,
    table: &LabelTable,
    plan: &Plan,
    inserted: Option<(Vector3<f64>, f64)>,
) -> anyhow::Result<()> {
    let pos = &plan.positions[0];
    let axis = pos.axis.to_nalgebra();
    let centre = pos.zone_centre.to_nalgebra().coords;
    let w = Vector3::z().cross(&axis).try_normalize(1e-6).unwrap_or_else(Vector3::x);
    let v = axis.cross(&w);
    let (size, mm_px) = (500usize, 0.5);
    let mut img = crate::plot::Image::new(2 * size + 10, size);
    let half = size as f64 / 2.0;
    let panels = [(0usize, axis, w), (size + 10, w, v)];
    for (x0, du, dv) in panels {
        for py in 0..size {
            for px in 0..size {
                let p = centre + du * ((px as f64 - half) * mm_px) + dv * ((half - py as f64) * mm_px);
                let pt = stylet_core::frame::Point::new(p.x, p.y, p.z);
                let hu = ct.sample_nearest(pt).unwrap_or(-1000.0);
                let g = ((f64::from(hu) + 160.0) / 400.0 * 255.0).clamp(0.0, 255.0) as u8;
                let mut c = [g, g, g];
                let mut class = labels.sample_nearest(pt).and_then(|l| table.class(l.round().max(0.0) as u32));
                if inserted.is_some_and(|(t, r)| (p - t).norm() <= r) {
                    class = Some(Class::Tumour);
                }
                if let Some(tint) = class.and_then(colour) {
                    for k in 0..3 {
                        c[k] = ((u16::from(c[k]) * 3 + u16::from(tint[k]) * 2) / 5) as u8;
                    }
                }
                img.set((x0 + px) as i64, py as i64, c);
            }
        }
        let to_px = |p: Vector3<f64>| {
            let d = p - centre;
            (x0 as f64 + half + d.dot(&du) / mm_px, half - d.dot(&dv) / mm_px)
        };
        for q in &plan.positions {
            img.line(to_px(q.entry.to_nalgebra().coords), to_px(q.tip.to_nalgebra().coords), [40, 90, 255]);
        }
        // Zone outlines: the section of each spheroid by this plane, traced by sampling.
        let (a, b) = (plan.zone_long_mm / 2.0, plan.zone_short_mm / 2.0);
        for q in &plan.positions {
            let zc = q.zone_centre.to_nalgebra().coords;
            let zaxis = q.axis.to_nalgebra();
            for px in 0..size {
                for py in 0..size {
                    let inside = |x: f64, y: f64| {
                        let p = centre + du * ((x - half) * mm_px) + dv * ((half - y) * mm_px) - zc;
                        let u = p.dot(&zaxis);
                        let r2 = p.norm_squared() - u * u;
                        (u / a).powi(2) + r2 / (b * b) <= 1.0
                    };
                    let (x, y) = (px as f64, py as f64);
                    if inside(x, y)
                        && !(inside(x + 1.0, y) && inside(x - 1.0, y) && inside(x, y + 1.0) && inside(x, y - 1.0))
                    {
                        img.set((x0 + px) as i64, py as i64, [30, 230, 90]);
                    }
                }
            }
        }
    }
    img.write(path)
}

/// Options of `stylet bench edt`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchEdtArgs {
    /// A label map (NIfTI or NRRD).
    #[arg(long)]
    labels: PathBuf,
    /// The label whose distance map is computed.
    #[arg(long)]
    label: u32,
    /// Runs (the best is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn bench_edt(args: &BenchEdtArgs) -> anyhow::Result<ExitCode> {
    let v = crate::ctcmd::load_file(&args.labels)?;
    let mask: Vec<bool> = v.voxels.iter().map(|x| x.round() as i64 == i64::from(args.label)).collect();
    anyhow::ensure!(mask.iter().any(|m| *m), "label {} has no voxels in {}", args.label, args.labels.display());
    let mut best = f64::INFINITY;
    let mut d = Vec::new();
    for _ in 0..args.runs.max(1) {
        let t = std::time::Instant::now();
        d = stylet_planning::edt::edt(&mask, v.dims, v.spacing_mm);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let sum: f64 = d.iter().map(|x| f64::from(*x)).sum();
    let max = d.iter().copied().fold(0.0f32, f32::max);
    let out = json!({
        "dims": v.dims, "spacing_mm": v.spacing_mm, "label": args.label,
        "voxels": mask.len(), "feature_voxels": mask.iter().filter(|m| **m).count(),
        "best_s": best, "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "sum_mm": sum, "max_mm": max,
    });
    if args.json {
        say!("{out}");
    } else {
        say!(
            "EDT of label {} on {:?} at {:?} mm: best of {} runs {:.3} s (sum {:.6e} mm, max {:.2} mm)",
            args.label,
            v.dims,
            v.spacing_mm,
            args.runs,
            best,
            sum,
            max
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Keeps the plans whose every needle position the arm reaches (IK on the entry -> tip line in
/// the robot frame), re-ranked with a manipulability bonus (+0.3 x manipulability / the best one);
/// returns a JSON summary with each checked plan's outcome.
fn reachability(
    registration: &std::path::Path,
    config: &std::path::Path,
    plans: &mut Vec<Plan>,
    keep: usize,
) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(registration).with_context(|| format!("reading {}", registration.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", registration.display()))?;
    let rows = v["robot_from_ct"].as_array().filter(|r| r.len() == 4);
    let m: Vec<Vec<f64>> = rows
        .map(|r| {
            r.iter()
                .map(|row| {
                    row.as_array().map(|x| x.iter().filter_map(serde_json::Value::as_f64).collect()).unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(
        m.len() == 4 && m.iter().all(|r: &Vec<f64>| r.len() == 4),
        "{}: no 4x4 \"robot_from_ct\" matrix (write it with `stylet register --json`)",
        registration.display()
    );
    let rows: [[f64; 4]; 4] = std::array::from_fn(|r| std::array::from_fn(|c| m[r][c]));
    let robot_from_ct =
        stylet_core::frame::Transform::<stylet_core::frame::Robot, stylet_core::frame::Ct>::try_from_rows(rows)
            .with_context(|| format!("{}: \"robot_from_ct\"", registration.display()))?;
    let crate::kincmd::Chain { arm, ik: opts, keepouts, home: seed } =
        crate::kincmd::ChainArgs::reference(config).load()?;
    let mut outcomes = Vec::new();
    let mut reachable: Vec<(Plan, f64)> = Vec::new();
    for p in plans.drain(..) {
        let mut worst = f64::INFINITY;
        let mut why = None;
        for pos in &p.positions {
            let line =
                stylet_kinematics::NeedleLine { entry: robot_from_ct * pos.entry, target: robot_from_ct * pos.tip };
            match stylet_kinematics::ik::solve_first(&arm, &line, &seed, &keepouts, &opts) {
                Ok(s) => worst = worst.min(s.manipulability),
                Err(e) => {
                    why = Some(e.to_string());
                    break;
                }
            }
        }
        outcomes.push(json!({ "entry_lps_mm": p.positions[0].entry, "reachable": why.is_none(), "manipulability": why.is_none().then_some(worst), "ik_failure": why }));
        if why.is_none() {
            reachable.push((p, worst));
        }
    }
    let best = reachable.iter().map(|(_, w)| *w).fold(0.0, f64::max).max(1e-12);
    for (p, w) in &mut reachable {
        p.score += 0.3 * *w / best;
    }
    // Safe plans first (high-risk ones need the operator's override), each group best first.
    reachable.sort_by(|a, b| a.0.high_risk.cmp(&b.0.high_risk).then(b.0.score.total_cmp(&a.0.score)));
    let n = reachable.len();
    plans.extend(reachable.into_iter().take(keep).map(|(p, _)| p));
    Ok(
        json!({ "arm": arm.joints.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join(","), "checked": outcomes.len(), "reachable": n, "plans": outcomes }),
    )
}
