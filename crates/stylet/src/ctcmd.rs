//! `stylet ct info`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;
use stylet_imaging::{detect, load_nifti, load_series, Fiducial, Volume};
use stylet_registration::RegistrationConfig;
use stylet_suite::planning::is_nrrd;

/// Options of `stylet ct info`.
#[derive(Debug, clap::Args)]
pub(crate) struct InfoArgs {
    /// A folder with a DICOM series, or a NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .seg.nrrd, .nhdr) file.
    path: PathBuf,
    /// SeriesInstanceUID, when the folder holds several series.
    #[arg(long)]
    series: Option<String>,
    /// A label map (NIfTI or NRRD) to check against the CT's grid; prints the voxel count of each label.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn geometry(v: &Volume) -> serde_json::Value {
    let (lo, hi) = v.bounds();
    let (min, max) = v.value_range();
    let d = v.direction;
    json!({
        "dimensions": v.dims,
        "spacing_mm": v.spacing_mm,
        "origin_lps_mm": v.origin,
        "direction_columns_lps": (0..3).map(|c| [d[(0, c)], d[(1, c)], d[(2, c)]]).collect::<Vec<_>>(),
        "bounds_lps_mm": { "min": lo, "max": hi },
        "value_range": [min, max],
        "tilt_deg": v.tilt_deg(),
    })
}

pub(crate) fn info(args: &InfoArgs) -> anyhow::Result<ExitCode> {
    let (v, mut out) = if args.path.is_dir() {
        let (v, r) = load_series(&args.path, args.series.as_deref())?;
        let j = json!({ "kind": "dicom_series", "path": args.path, "series": r, "geometry": geometry(&v), "value_unit": "HU" });
        (v, j)
    } else {
        let v = load_file(&args.path)?;
        let (kind, frame) = if is_nrrd(&args.path) {
            ("nrrd", "LPS (converted from the file's space when RAS)")
        } else {
            ("nifti", "LPS (converted from the file's RAS)")
        };
        let j = json!({ "kind": kind, "path": args.path, "geometry": geometry(&v), "frame": frame });
        (v, j)
    };
    if let Some(lp) = &args.labels {
        let labels = load_file(lp)?;
        if let Err(why) = v.check_same_grid(&labels, 0.01) {
            anyhow::bail!("label map {} does not match the CT grid of {}: {why}", lp.display(), args.path.display());
        }
        let mut counts = std::collections::BTreeMap::<i64, usize>::new();
        for l in &labels.voxels {
            *counts.entry(l.round() as i64).or_default() += 1;
        }
        out["labels"] = json!({ "path": lp, "matches_ct_grid": true, "voxels_per_label": counts });
    }
    if args.json {
        say!("{out}");
    } else {
        let g = &out["geometry"];
        say!("{} ({})", args.path.display(), out["kind"].as_str().unwrap_or(""));
        if let Some(s) = out.get("series") {
            say!(
                "  series {} \"{}\", {} slices, {}",
                s["series_uid"],
                s["description"].as_str().unwrap_or(""),
                s["slices"],
                s["transfer_syntax"].as_str().unwrap_or("")
            );
            say!(
                "  slice spacing {} mm from positions (SliceThickness tag {})",
                s["slice_spacing_mm"],
                s["slice_thickness_tag_mm"]
            );
        }
        say!("  dimensions {}  spacing {} mm", g["dimensions"], g["spacing_mm"]);
        say!("  LPS bounds {} .. {} mm", g["bounds_lps_mm"]["min"], g["bounds_lps_mm"]["max"]);
        say!("  values {}  tilt {} deg", g["value_range"], g["tilt_deg"]);
        if out.get("labels").is_some() {
            say!("  label map matches the CT grid; voxels per label: {}", out["labels"]["voxels_per_label"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads a volume file: NRRD (`.nrrd`, `.seg.nrrd`, `.nhdr`) or NIfTI (anything else).
pub(crate) fn load_file(path: &std::path::Path) -> anyhow::Result<Volume> {
    Ok(if is_nrrd(path) { stylet_imaging::load_nrrd(path)? } else { load_nifti(path)? })
}

/// Loads a CT from a DICOM folder or a NIfTI or NRRD file.
pub(crate) fn load_ct(path: &std::path::Path, series: Option<&str>) -> anyhow::Result<Volume> {
    Ok(if path.is_dir() { load_series(path, series)?.0 } else { load_file(path)? })
}

/// Detects the registration markers in a CT with the config's `[fiducials]` settings; returns the
/// markers and the rejected components.
pub(crate) fn detect_fiducials(
    path: &std::path::Path,
    series: Option<&str>,
    f: &stylet_registration::FiducialConfig,
) -> anyhow::Result<(Vec<Fiducial>, Vec<stylet_imaging::Rejected>)> {
    let v = load_ct(path, series)?;
    Ok(detect(&v, &stylet_procedure::driver::fiducial_settings(f)))
}

/// Options of `stylet fiducials`.
#[derive(Debug, clap::Args)]
pub(crate) struct FiducialArgs {
    /// A CT: DICOM series folder, NIfTI or NRRD file.
    #[arg(long)]
    ct: PathBuf,
    /// SeriesInstanceUID, when the folder holds several series.
    #[arg(long)]
    series: Option<String>,
    /// The config folder (registration.toml `[fiducials]`).
    #[arg(long, env = "STYLET_CONFIG", default_value = crate::configdir::DEFAULT, value_parser = crate::configdir::resolve)]
    config: PathBuf,
    /// A marker config file (a `[fiducials]` table: threshold_hu, diameter_mm, volume
    /// fractions, max_elongation) used instead of registration.toml's.
    #[arg(long)]
    marker_config: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn fiducials(args: &FiducialArgs) -> anyhow::Result<ExitCode> {
    let markers = match &args.marker_config {
        Some(path) => stylet_registration::FiducialConfig::load(path)?,
        None => RegistrationConfig::load(&args.config.join("registration.toml"))?.fiducials,
    };
    let (found, rejected) = detect_fiducials(&args.ct, args.series.as_deref(), &markers)?;
    if args.json {
        say!("{}", json!({ "markers": found, "rejected": rejected }));
    } else {
        say!("{} marker(s) in {}", found.len(), args.ct.display());
        for m in &found {
            say!(
                "  ({:>9.3}, {:>9.3}, {:>9.3}) mm LPS  {:>6.1} mm3  peak {:>6.0} HU  +-{:.3} mm",
                m.center.to_array()[0],
                m.center.to_array()[1],
                m.center.to_array()[2],
                m.volume_mm3,
                m.peak_hu,
                m.uncertainty_mm
            );
        }
        say!("{} bright component(s) rejected (bone, contrast, metal, noise)", rejected.len());
    }
    Ok(ExitCode::SUCCESS)
}
