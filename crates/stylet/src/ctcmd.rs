//! `stylet ct info`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;
use stylet_imaging::{load_nifti, load_series, Volume};

/// Options of `stylet ct info`.
#[derive(Debug, clap::Args)]
pub(crate) struct InfoArgs {
    /// A folder with a DICOM series, or a NIfTI file (.nii, .nii.gz).
    path: PathBuf,
    /// SeriesInstanceUID, when the folder holds several series.
    #[arg(long)]
    series: Option<String>,
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
        "origin_lps_mm": [v.origin.x, v.origin.y, v.origin.z],
        "direction_columns_lps": (0..3).map(|c| [d[(0, c)], d[(1, c)], d[(2, c)]]).collect::<Vec<_>>(),
        "bounds_lps_mm": { "min": [lo.x, lo.y, lo.z], "max": [hi.x, hi.y, hi.z] },
        "value_range": [min, max],
        "tilt_deg": v.tilt_deg(),
    })
}

pub(crate) fn info(args: &InfoArgs) -> anyhow::Result<ExitCode> {
    let out = if args.path.is_dir() {
        let (v, r) = load_series(&args.path, args.series.as_deref())?;
        json!({ "kind": "dicom_series", "path": args.path, "series": r, "geometry": geometry(&v), "value_unit": "HU" })
    } else {
        let v = load_nifti(&args.path)?;
        json!({ "kind": "nifti", "path": args.path, "geometry": geometry(&v), "frame": "LPS (converted from the file's RAS)" })
    };
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
    }
    Ok(ExitCode::SUCCESS)
}
