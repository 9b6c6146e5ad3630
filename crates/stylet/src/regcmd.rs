//! `stylet register`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;
use stylet_core::frame::{Ct, Point, Robot};
use stylet_registration::{match_markers, read_points, register, RegistrationConfig};

/// Options of `stylet register`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Marker positions in the CT (LPS, mm), one per line (see docs/registration.md).
    #[arg(long, required_unless_present = "ct", conflicts_with = "ct")]
    ct_points: Option<PathBuf>,
    /// The same markers in the robot base frame (mm). Row i corresponds to row i of --ct-points,
    /// unless --unordered.
    #[arg(long, required_unless_present = "robot_fiducials")]
    robot_points: Option<PathBuf>,
    /// A CT (DICOM series folder or NIfTI): the markers are detected in it and matched to
    /// --robot-fiducials without labels.
    #[arg(long, requires = "robot_fiducials")]
    ct: Option<PathBuf>,
    /// The registration frame's markers in the robot base frame (a point file), for --ct.
    #[arg(long, conflicts_with = "robot_points")]
    robot_fiducials: Option<PathBuf>,
    /// SeriesInstanceUID, when the --ct folder holds several series.
    #[arg(long)]
    series: Option<String>,
    /// The rows do not correspond: find the correspondence from the geometry (the robot points are
    /// the registration frame's markers; CT points may miss some and include extra detections).
    #[arg(long)]
    unordered: bool,
    /// The planned target in the CT (LPS, mm): X,Y,Z. Enables the predicted-TRE gate.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    target: Option<Vec<f64>>,
    /// The config folder (registration.toml).
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cfg = RegistrationConfig::load(&args.config.join("registration.toml"))?;
    let mut detections = serde_json::Value::Null;
    let (mut ct, mut robot, unordered) = match (&args.ct, &args.ct_points, &args.robot_fiducials, &args.robot_points) {
        (Some(ct_path), _, Some(model), _) => {
            let (found, _) = crate::ctcmd::detect_fiducials(ct_path, args.series.as_deref(), &cfg.fiducials)?;
            detections = json!(found);
            (found.iter().map(|f| f.center).collect(), read_points::<Robot>(model)?, true)
        }
        (None, Some(c), _, Some(r)) => (read_points::<Ct>(c)?, read_points::<Robot>(r)?, args.unordered),
        _ => anyhow::bail!("give --ct-points and --robot-points, or --ct and --robot-fiducials"),
    };
    let mut pairs_json = serde_json::Value::Null;
    if unordered {
        let pairs = match_markers(&ct, &robot, cfg.matching_tolerance_mm, cfg.gates.min_markers);
        let pairs = match pairs {
            Ok(p) => p,
            Err(e) => return refuse(args.json, &e.to_string()),
        };
        pairs_json = json!(pairs.iter().map(|(i, k)| json!({ "ct_row": i, "robot_row": k })).collect::<Vec<_>>());
        let (c, r): (Vec<_>, Vec<_>) = pairs.iter().map(|(i, k)| (ct[*i], robot[*k])).unzip();
        ct = c;
        robot = r;
    }
    let target = match &args.target {
        Some(t) => {
            anyhow::ensure!(t.len() == 3 && t.iter().all(|x| x.is_finite()), "--target takes X,Y,Z in mm, got {t:?}");
            Some(Point::<Ct>::new(t[0], t[1], t[2]))
        }
        None => None,
    };
    let reg = match register(&ct, &robot, target, &cfg.gates) {
        Ok(r) => r,
        Err(e) => return refuse(args.json, &e.to_string()),
    };
    let m = reg.robot_from_ct.to_matrix_rows();
    let out = json!({
        "ok": true,
        "robot_from_ct": m,
        "markers_used": reg.n,
        "correspondence": pairs_json,
        "detected_fiducials": detections,
        "fre_rms_mm": reg.fre_rms_mm,
        "fle_mm": reg.fle_mm,
        "predicted_tre_mm": reg.predicted_tre_mm,
        "coplanar": reg.coplanar,
        "markers": reg.markers,
        "note": "FRE is not a measure of accuracy; predicted_tre_mm is, at the target given",
    });
    if args.json {
        say!("{out}");
    } else {
        say!("robot_from_ct (mm):");
        for row in m {
            say!("  [{:>10.5} {:>10.5} {:>10.5} {:>10.3}]", row[0], row[1], row[2], row[3]);
        }
        say!(
            "{} markers, FRE RMS {:.3} mm (not accuracy), FLE {:.3} mm{}",
            reg.n,
            reg.fre_rms_mm,
            reg.fle_mm,
            if reg.coplanar { ", coplanar" } else { "" }
        );
        match reg.predicted_tre_mm {
            Some(t) => say!("predicted TRE at the target: {t:.3} mm"),
            None => say!("no --target: TRE not predicted"),
        }
        for k in &reg.markers {
            say!("  marker {:>2}: FRE {:.3} mm, leave-one-out {:.3} mm", k.index, k.fre_mm, k.leave_one_out_mm);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn refuse(as_json: bool, reason: &str) -> anyhow::Result<ExitCode> {
    if as_json {
        say!("{}", json!({ "ok": false, "reason": reason }));
    } else {
        say!("registration refused: {reason}");
    }
    Ok(ExitCode::from(2))
}
