//! `stylet verify`: verification from a post-ablation CT for CTs from elsewhere (issue 18, item
//! 4): the planning CT, the post-ablation contrast CT and the label map on the planning CT in;
//! the zone, the 3-D margin map and VER-1's verdict out (text or JSON), with a picture of the
//! margin map. The method is `stylet_verification` (docs/verification.md); this file loads,
//! finds the markers, and draws.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use nalgebra::Vector3;
use serde_json::json;
use stylet_core::frame::{Ct, Point, Transform};
use stylet_imaging::Volume;
use stylet_planning::Class;
use stylet_verification::{body_motion, verify, Verification, VerifyInput, VerifySettings};

/// Options of `stylet verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The planning CT: a DICOM series folder, NIfTI or NRRD (the frame the result is in).
    #[arg(long)]
    pre: PathBuf,
    /// The post-ablation contrast CT of the same patient (a DICOM series folder, NIfTI or NRRD;
    /// any grid).
    #[arg(long)]
    post: PathBuf,
    /// The label map on the planning CT's grid with the tumour and the liver (NIfTI, NRRD or 3D
    /// Slicer's .seg.nrrd).
    #[arg(long)]
    tumour: PathBuf,
    /// The tumour's label value [default: every voxel the label table calls a tumour].
    #[arg(long)]
    tumour_label: Option<u32>,
    /// What the label values mean: a table of CONFIG/labels.toml, or `auto`.
    #[arg(long, default_value = "auto")]
    label_table: String,
    /// Where the zone is expected, X,Y,Z in LPS mm (the ablated position) [default: the tumour's
    /// centre].
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    seed: Option<Vec<f64>>,
    /// Do not look for the marker frame's beads (then the patient is taken not to have moved on
    /// the table between the CTs; the liver's own motion is measured either way).
    #[arg(long)]
    no_markers: bool,
    /// Draw the margin map: axial, coronal and sagittal slices of the post CT in the planning
    /// frame through the smallest margin (PNG).
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
    /// The margin map as a rerun recording (`rerun FILE` opens it): the tumour's surface points
    /// by their margin (`/verify/tumour/held`, `/under`, `/outside`), the zone's surface
    /// (`/verify/zone`), the smallest margin (`/verify/min_margin`), VER-1's verdict.
    #[arg(long, value_name = "FILE")]
    rrd: Option<PathBuf>,
    /// The config folder (clinical rules for VER-1, labels, the markers' detection).
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Exit status 0 when VER-1 holds, 2 when it does not (a supplementary ablation is called for).
pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let pre =
        crate::ctcmd::load_ct(&args.pre, None).with_context(|| format!("the planning CT {}", args.pre.display()))?;
    let post = crate::ctcmd::load_ct(&args.post, None)
        .with_context(|| format!("the post-ablation CT {}", args.post.display()))?;
    let (labels, segments) = stylet_suite::planning::load_labels(&args.tumour)
        .map_err(|e| anyhow::anyhow!("the label map {}: {e}", args.tumour.display()))?;
    labels.check_same_grid(&pre, 0.5).map_err(|e| {
        anyhow::anyhow!("the label map {} is not on the planning CT's grid: {e}", args.tumour.display())
    })?;
    let (table, table_name) =
        stylet_suite::planning::label_table(&args.label_table, &labels, &segments, &args.config.join("labels.toml"))
            .map_err(|e| anyhow::anyhow!(e))?;
    let rules = stylet_planning::Rules::load(&args.config.join("clinical-rules.toml"))?;
    let class = |v: f32| table.class(v.round().max(0.0) as u32);
    let tumour: Vec<usize> = labels
        .voxels
        .iter()
        .enumerate()
        .filter(|(_, v)| match args.tumour_label {
            Some(t) => v.round() as i64 == i64::from(t),
            None => class(**v) == Some(Class::Tumour),
        })
        .map(|(i, _)| i)
        .collect();
    anyhow::ensure!(
        !tumour.is_empty(),
        "the label map {} has no tumour voxels ({}; table {table_name})",
        args.tumour.display(),
        args.tumour_label.map_or("no label the table calls a tumour".to_string(), |t| format!("label {t}"))
    );
    let centre = tumour.iter().fold(Vector3::zeros(), |a, &i| {
        let [nx, ny, _] = pre.dims;
        a + pre.ct_from_index((i % nx) as f64, ((i / nx) % ny) as f64, (i / (nx * ny)) as f64).to_nalgebra().coords
    }) / tumour.len() as f64;
    let seed = match &args.seed {
        Some(s) => {
            anyhow::ensure!(s.len() == 3 && s.iter().all(|x| x.is_finite()), "--seed takes X,Y,Z in LPS mm, got {s:?}");
            Point::new(s[0], s[1], s[2])
        }
        None => Point::from_coords(centre),
    };
    let settings = VerifySettings { min_margin_mm: rules.ver1_min_margin_mm, ..VerifySettings::default() };
    let loaded_s = started.elapsed().as_secs_f64();
    // The patient's motion on the table, from the marker frame in both CTs.
    let (pre_from_post, markers) = if args.no_markers {
        (Transform::identity(), json!({ "used": false, "why": "--no-markers" }))
    } else {
        let reg = stylet_registration::RegistrationConfig::load(&args.config.join("registration.toml"))?;
        let beads = stylet_procedure::driver::fiducial_settings(&reg.fiducials);
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| stylet_imaging::detect(&pre, &beads).0);
            let b = stylet_imaging::detect(&post, &beads).0;
            (a.join(), b)
        });
        let a = a.map_err(|_| anyhow::anyhow!("the marker detection's thread failed"))?;
        let (pa, pb): (Vec<Point<Ct>>, Vec<Point<Ct>>) =
            (a.iter().map(|m| m.center).collect(), b.iter().map(|m| m.center).collect());
        match body_motion(&pa, &pb, settings.marker_pairing_mm) {
            Some((t, rms)) => {
                let moved = t.to_nalgebra().translation.vector.norm();
                (t, json!({ "used": true, "pre": pa.len(), "post": pb.len(), "rms_mm": rms, "translation_mm": moved }))
            }
            None => (
                Transform::identity(),
                json!({ "used": false, "pre": pa.len(), "post": pb.len(),
                        "why": "fewer than 3 beads paired: the patient is taken not to have moved on the table" }),
            ),
        }
    };
    let markers_s = started.elapsed().as_secs_f64() - loaded_s;
    let is_liver = |v: f32| matches!(class(v), Some(Class::Liver | Class::Tumour | Class::Vessel));
    let input = VerifyInput {
        pre: &pre,
        post: &post,
        labels: &labels,
        is_liver: &is_liver,
        tumour: &tumour,
        seed,
        pre_from_post,
    };
    let t0 = Instant::now();
    let v = verify(&input, &settings).context("verification")?;
    let verify_s = t0.elapsed().as_secs_f64();
    if let Some(png) = &args.png {
        draw(png, &pre, &post, &labels, &is_liver, &v, pre_from_post.inverse())
            .with_context(|| format!("writing {}", png.display()))?;
    }
    if let Some(rrd) = &args.rrd {
        record(rrd, &pre, &v).with_context(|| format!("writing {}", rrd.display()))?;
    }
    let out = json!({
        "pre": args.pre, "post": args.post, "labels": args.tumour, "label_table": table_name,
        "tumour_voxels": tumour.len(),
        "seed_lps_mm": seed.to_array(),
        "markers": markers,
        "liver_shift_mm": v.liver_shift.to_array(),
        "liver_match": { "voxels": v.liver_match.0, "rms_before_hu": v.liver_match.1, "rms_after_hu": v.liver_match.2 },
        "levels_hu": { "liver": v.levels_hu.0, "zone": v.levels_hu.1, "threshold": v.levels_hu.2 },
        "zone_ml": v.zone_ml,
        "surface_points": v.surface.len(),
        "min_margin_mm": v.min_margin.margin_mm,
        "min_margin_at_lps_mm": v.min_margin.at.to_array(),
        "under_treated_fraction": v.under_treated_fraction,
        "under_treated_where": v.where_under_treated(),
        "ver1": { "rule": "VER-1", "min_margin_mm": v.min_margin_mm, "pass": v.passes() },
        "png": args.png, "rrd": args.rrd,
        "seconds": { "load": loaded_s, "markers": markers_s, "verify": verify_s },
    });
    if args.json {
        say!("{out}");
    } else {
        say!(
            "zone {:.1} ml (liver {:.0} HU, zone {:.0} HU); liver moved {:.1} mm between the CTs",
            v.zone_ml,
            v.levels_hu.0,
            v.levels_hu.1,
            v.liver_shift.norm_mm()
        );
        let at = v.min_margin.at.to_array();
        say!(
            "smallest margin {:.1} mm at ({:.1}, {:.1}, {:.1}) LPS; {:.1} % of the tumour surface under {:.1} mm{}",
            v.min_margin.margin_mm,
            at[0],
            at[1],
            at[2],
            100.0 * v.under_treated_fraction,
            v.min_margin_mm,
            v.where_under_treated().map(|w| format!(" ({w})")).unwrap_or_default()
        );
        say!(
            "VER-1 {}: {}",
            if v.passes() { "PASS" } else { "FAIL" },
            if v.passes() {
                "the zone covers the tumour with the margin".to_string()
            } else {
                "a supplementary ablation is called for".to_string()
            }
        );
        if let Some(p) = &args.png {
            say!("margin map: {}", p.display());
        }
    }
    Ok(if v.passes() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// The margin map as a rerun recording, in the planning CT's frame (LPS mm).
fn record(path: &std::path::Path, pre: &Volume, v: &Verification) -> anyhow::Result<()> {
    use stylet_telemetry::{Item, Level, Sink, Telemetry};
    let tel = Telemetry::start("stylet_verify", &Sink::File(path.to_path_buf()), 64)?;
    let point = |p: Point<Ct>| p.to_array().map(|x| x as f32);
    // Each group only when it has points.
    let group = |name: &str, keep: &dyn Fn(f64) -> bool, color: [u8; 4]| {
        let points: Vec<[f32; 3]> = v.surface.iter().filter(|s| keep(s.margin_mm)).map(|s| point(s.at)).collect();
        if !points.is_empty() {
            tel.log(Item::Points { path: format!("/verify/tumour/{name}"), t_s: None, points, radius_mm: 0.4, color });
        }
    };
    let t = v.min_margin_mm;
    group("held", &|m| m >= t, [40, 220, 90, 255]);
    group("under", &|m| (0.0..t).contains(&m), [255, 150, 30, 255]);
    group("outside", &|m| m < 0.0, [230, 30, 30, 255]);
    // The zone's surface: its voxels with a face neighbour outside it.
    let (z, lo, n) = (&v.zone, v.zone.lo.map(|x| x as i64), v.zone.dims.map(|x| x as i64));
    let face = [(-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)];
    let mut surface = Vec::new();
    for k in lo[2]..lo[2] + n[2] {
        for j in lo[1]..lo[1] + n[1] {
            for i in lo[0]..lo[0] + n[0] {
                if z.contains([i, j, k]) && face.iter().any(|(a, b, c)| !z.contains([i + a, j + b, k + c])) {
                    surface.push(point(pre.ct_from_index(i as f64, j as f64, k as f64)));
                }
            }
        }
    }
    tel.log(Item::Points {
        path: "/verify/zone".into(),
        t_s: None,
        points: surface,
        radius_mm: 0.25,
        color: [250, 220, 40, 120],
    });
    tel.log(Item::Points {
        path: "/verify/min_margin".into(),
        t_s: None,
        points: vec![point(v.min_margin.at)],
        radius_mm: 1.5,
        color: [230, 30, 230, 255],
    });
    let verdict = format!(
        "VER-1 {}: smallest margin {:.1} mm (at least {:.1} mm), {:.1} % of the surface under it",
        if v.passes() { "PASS" } else { "FAIL" },
        v.min_margin.margin_mm,
        t,
        100.0 * v.under_treated_fraction
    );
    tel.log(Item::Text {
        path: "/verify/verdict".into(),
        t_s: 0.0,
        text: verdict,
        level: if v.passes() { Level::Info } else { Level::Warn },
    });
    tel.finish()?;
    Ok(())
}

/// Three panels, 0.5 mm per pixel, through the smallest margin: axial, coronal, sagittal. The
/// post CT in the planning frame (soft-tissue window), the zone's outline yellow, the tumour's
/// surface coloured by its margin (green at VER-1's margin and more, orange under it, red
/// outside the zone), a cross at the smallest margin.
fn draw(
    path: &std::path::Path,
    pre: &Volume,
    post: &Volume,
    labels: &Volume,
    is_liver: &dyn Fn(f32) -> bool,
    v: &Verification,
    post_from_pre: Transform<Ct, Ct>,
) -> anyhow::Result<()> {
    let (size, mm_px) = (300usize, 0.5);
    let half = size as f64 / 2.0;
    let centre = v.min_margin.at.to_nalgebra().coords;
    let shift = v.liver_shift.to_nalgebra();
    let zone = |p: Vector3<f64>| {
        pre.index_from_ct(Point::from_coords(p))
            .is_some_and(|f| v.zone.contains([0, 1, 2].map(|d| f[d].round() as i64)))
    };
    let panels = [(Vector3::x(), -Vector3::y()), (Vector3::x(), Vector3::z()), (-Vector3::y(), Vector3::z())];
    let mut img = crate::plot::Image::new(3 * size + 20, size);
    for (n, (du, dv)) in panels.iter().enumerate() {
        let x0 = n * (size + 10);
        let normal = du.cross(dv);
        let at = |px: f64, py: f64| centre + du * ((px - half) * mm_px) + dv * ((half - py) * mm_px);
        for py in 0..size {
            for px in 0..size {
                let p = at(px as f64, py as f64);
                let liver = labels.sample_nearest(Point::from_coords(p)).is_some_and(is_liver);
                let q = if liver { p + shift } else { p };
                let hu = post.sample_linear(post_from_pre * Point::from_coords(q)).unwrap_or(-1000.0);
                let g = ((hu + 160.0) / 400.0 * 255.0).clamp(0.0, 255.0) as u8;
                let mut c = [g, g, g];
                let edge = zone(p)
                    && !(zone(at(px as f64 + 1.0, py as f64))
                        && zone(at(px as f64 - 1.0, py as f64))
                        && zone(at(px as f64, py as f64 + 1.0))
                        && zone(at(px as f64, py as f64 - 1.0)));
                if edge {
                    c = [250, 220, 40];
                }
                img.set((x0 + px) as i64, py as i64, c);
            }
        }
        let slab = pre.spacing_mm.iter().copied().fold(0.0, f64::max) * 0.6;
        for s in &v.surface {
            let d = s.at.to_nalgebra().coords - centre;
            if d.dot(&normal).abs() > slab {
                continue;
            }
            let (px, py) = (half + d.dot(du) / mm_px, half - d.dot(dv) / mm_px);
            let colour = if s.margin_mm >= v.min_margin_mm {
                [40, 220, 90]
            } else if s.margin_mm >= 0.0 {
                [255, 150, 30]
            } else {
                [230, 30, 30]
            };
            for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                img.set(x0 as i64 + px as i64 + ox, py as i64 + oy, colour);
            }
        }
        let (cx, cy) = (x0 as f64 + half, half);
        img.line((cx - 6.0, cy), (cx + 6.0, cy), [230, 30, 230]);
        img.line((cx, cy - 6.0), (cx, cy + 6.0), [230, 30, 230]);
    }
    img.write(path)
}

/// Options of `stylet bench verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchVerifyArgs {
    /// The simulated CTs' size: columns,rows,slices.
    #[arg(long, value_delimiter = ',', default_value = "512,512,300")]
    dims: Vec<usize>,
    /// Voxel size, mm: x,y,z.
    #[arg(long, value_delimiter = ',', default_value = "0.7,0.7,1.0")]
    spacing_mm: Vec<f64>,
    /// Runs (the best and the median are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The config folder.
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `stylet bench verify`: verification (the liver's shift, the zone, the margin map) on a
/// simulated planning CT and its post-ablation CT of the given size, and the marker detection
/// in both, timed apart.
pub(crate) fn bench_verify(args: &BenchVerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.dims.len() == 3 && args.spacing_mm.len() == 3,
        "--dims and --spacing-mm take three values each"
    );
    let dcfg = crate::demo::driver_config(&args.config)?;
    let ph = stylet_sim::phantom::generate(&stylet_sim::phantom::PhantomSpec {
        seed: 31,
        dims: [args.dims[0], args.dims[1], args.dims[2]],
        spacing_mm: [args.spacing_mm[0], args.spacing_mm[1], args.spacing_mm[2]],
        markers_in_robot: dcfg.marker_frame.clone(),
        marker_diameter_mm: dcfg.registration.fiducials.diameter_mm,
        noise_hu: 15.0,
        missing_beads: Vec::new(),
        extra_beads: 0,
        tumours: vec![stylet_sim::phantom::TumourSpec {
            offset_from_liver_centre_mm: [5.0, -5.0, 3.0],
            diameter_mm: 20.0,
        }],
        metal_wire: true,
    });
    let centre = ph.tumour_in_ct;
    let axis = Vector3::new(0.3, -0.9, 0.3).normalize();
    let is_liver = |l: f32| [2.0, 3.0, 4.0].contains(&l);
    let tissue: Vec<bool> = ph.labels.voxels.iter().map(|l| is_liver(*l)).collect();
    let shape = stylet_planning::heat_sink::ZoneShape::ellipsoid(centre, axis, 52.2, 33.3);
    let zone: Vec<bool> = shape.mask(&ph.volume).iter().zip(&tissue).map(|(z, t)| *z && *t).collect();
    let tip = Point::from_coords(centre.to_nalgebra().coords + axis * 5.0);
    let entry = Point::from_coords(centre.to_nalgebra().coords + axis * 120.0);
    let post = stylet_sim::post_ablation::render_post_ablation(
        &ph.volume,
        &ph.labels,
        &[stylet_sim::post_ablation::Ablated { zone, tip, entry }],
        stylet_core::frame::Vector::new(1.0, -1.5, 6.0),
        &stylet_sim::post_ablation::Look::default(),
        1.0,
        31,
    );
    let tumour: Vec<usize> = (0..ph.labels.voxels.len()).filter(|&i| ph.labels.voxels[i] == 3.0).collect();
    let input = VerifyInput {
        pre: &ph.volume,
        post: &post,
        labels: &ph.labels,
        is_liver: &is_liver,
        tumour: &tumour,
        seed: centre,
        pre_from_post: Transform::identity(),
    };
    let settings = VerifySettings::default();
    let fiducials = stylet_procedure::driver::fiducial_settings(&dcfg.registration.fiducials);
    let (mut verify_s, mut markers_s) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        last = Some(verify(&input, &settings).context("verification")?);
        verify_s.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let found = std::thread::scope(|s| {
            let a = s.spawn(|| stylet_imaging::detect(&ph.volume, &fiducials).0.len());
            let b = stylet_imaging::detect(&post, &fiducials).0.len();
            (a.join().unwrap_or(0), b)
        });
        markers_s.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(found.0 >= 3 && found.1 >= 3, "the markers were not found: {found:?}");
    }
    let v = last.context("no run")?;
    let stats = |mut x: Vec<f64>| {
        x.sort_by(f64::total_cmp);
        json!({ "best_s": x[0], "median_s": x[x.len() / 2] })
    };
    let out = json!({
        "dims": args.dims, "spacing_mm": args.spacing_mm, "voxels": ph.volume.voxels.len(), "runs": args.runs,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "verify": stats(verify_s), "markers_both_cts": stats(markers_s),
        "min_margin_mm": v.min_margin.margin_mm, "zone_ml": v.zone_ml, "liver_shift_mm": v.liver_shift.to_array(),
    });
    if args.json {
        say!("{out}");
    } else {
        say!(
            "{:?} voxels of {:?} mm: verification best {:.3} s (median {:.3}), marker detection in both CTs best {:.3} s (median {:.3}); margin {:.1} mm, zone {:.1} ml",
            args.dims,
            args.spacing_mm,
            out["verify"]["best_s"].as_f64().unwrap_or(f64::NAN),
            out["verify"]["median_s"].as_f64().unwrap_or(f64::NAN),
            out["markers_both_cts"]["best_s"].as_f64().unwrap_or(f64::NAN),
            out["markers_both_cts"]["median_s"].as_f64().unwrap_or(f64::NAN),
            v.min_margin.margin_mm,
            v.zone_ml
        );
    }
    Ok(ExitCode::SUCCESS)
}
